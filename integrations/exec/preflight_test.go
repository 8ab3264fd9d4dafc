//go:build unix

package exec

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rekey-dev/rekey/config"
	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/integrations"
	"github.com/rekey-dev/rekey/internal/leakcheck"
	"github.com/rekey-dev/rekey/internal/sshpool"
	"github.com/rekey-dev/rekey/internal/sshtest"
	"github.com/rekey-dev/rekey/secret"
)

// preflightCase is one configuration and what its preflight must say.
type preflightCase struct {
	name     string
	settings map[string]any // APPLY, READ, EMPTY, FAILREAD, NOEXEC and DIR stand for the test's files
	class    error          // nil: ready
	says     []string
}

var preflightCases = []preflightCase{
	{name: "apply only", settings: map[string]any{"apply": []string{"APPLY", "--site", "greens"}}},
	{name: "apply, read and verify", settings: map[string]any{"apply": []string{"APPLY"}, "read": []string{"READ"}, "verify": []string{"true"}}},
	{name: "read prints nothing yet", settings: map[string]any{"apply": []string{"APPLY"}, "read": []string{"EMPTY"}}},
	{name: "relative to dir", settings: map[string]any{"apply": []string{"./apply.sh"}, "dir": "DIR"}},
	{name: "apply not found", settings: map[string]any{"apply": []string{"/opt/wp/bin/set-key", "--site", "greens"}},
		class: failure.ErrInvalid, says: []string{"apply", "set-key not found"}},
	{name: "apply not in PATH", settings: map[string]any{"apply": []string{"rekey-no-such-command"}},
		class: failure.ErrInvalid, says: []string{"apply", "rekey-no-such-command", "not found"}},
	{name: "read not found", settings: map[string]any{"apply": []string{"APPLY"}, "read": []string{"DIR/gone.sh"}},
		class: failure.ErrInvalid, says: []string{"read", "gone.sh not found"}},
	{name: "read fails", settings: map[string]any{"apply": []string{"APPLY"}, "read": []string{"FAILREAD"}},
		class: failure.ErrUnauthorized, says: []string{"read", "failread.sh exited with status 77"}},
	{name: "argument quoted, not run", settings: map[string]any{"apply": []string{"true; touch DIR/ran"}},
		class: failure.ErrInvalid, says: []string{"apply", "not found"}},
}

// setup writes the test's commands into dir and fills the placeholders.
func (tc preflightCase) setup(t *testing.T, dir, key string) map[string]any {
	t.Helper()
	script(t, dir, "apply.sh", "cat > /dev/null\n")
	script(t, dir, "read.sh", "echo "+key+"\n")
	script(t, dir, "empty.sh", "exit 0\n")
	script(t, dir, "failread.sh", "exit 77\n")
	os.WriteFile(filepath.Join(dir, "noexec.sh"), []byte("#!/bin/sh\n"), 0o644)
	os.Chmod(filepath.Join(dir, "noexec.sh"), 0o644)
	r := strings.NewReplacer("APPLY", filepath.Join(dir, "apply.sh"), "FAILREAD", filepath.Join(dir, "failread.sh"), "READ", filepath.Join(dir, "read.sh"),
		"EMPTY", filepath.Join(dir, "empty.sh"), "NOEXEC", filepath.Join(dir, "noexec.sh"), "DIR", dir)
	out := map[string]any{}
	for k, v := range tc.settings {
		switch v := v.(type) {
		case []string:
			argv := make([]string, len(v))
			for i, a := range v {
				argv[i] = r.Replace(a)
			}
			out[k] = argv
		case string:
			out[k] = r.Replace(v)
		}
	}
	return out
}

func (tc preflightCase) check(t *testing.T, in integrations.Integration, dir, key string) {
	t.Helper()
	pf, ok := in.(integrations.Preflighter)
	if !ok {
		t.Fatalf("%T is not an integrations.Preflighter", in)
	}
	err := pf.Preflight(context.Background())
	if _, serr := os.Stat(filepath.Join(dir, "ran")); serr == nil {
		t.Fatal("an argument was run as a command")
	}
	if tc.class == nil {
		if err != nil {
			t.Fatalf("Preflight: %v", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("Preflight passed, want %v", tc.class)
	}
	leakcheck.Assert(t, "Preflight error", []byte(err.Error()), key)
	if !errors.Is(err, tc.class) || !strings.Contains(err.Error(), "exec: wp-widget: ") {
		t.Errorf("error %q: want %v, naming the integration", err, tc.class)
	}
	for _, s := range tc.says {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not say %q", err, s)
		}
	}
}

// Preflight finds every command as it will be started and runs read,
// here and on a host over SSH, running neither apply nor verify.
func TestPreflight(t *testing.T) {
	key := randomKey(t)
	local := append([]preflightCase{
		{name: "variable not set", settings: map[string]any{"apply": []string{"APPLY"}, "env": []string{"T=${NO_SUCH_VARIABLE}"}},
			class: failure.ErrInvalid, says: []string{"NO_SUCH_VARIABLE"}},
		{name: "dir missing", settings: map[string]any{"apply": []string{"APPLY"}, "dir": "DIR/missing"},
			class: failure.ErrInvalid, says: []string{"dir", "missing"}},
		{name: "verify not executable", settings: map[string]any{"apply": []string{"APPLY"}, "verify": []string{"NOEXEC"}},
			class: failure.ErrUnauthorized, says: []string{"verify", "noexec.sh is not executable"}},
	}, preflightCases...)
	for _, tc := range local {
		t.Run("local/"+tc.name, func(t *testing.T) {
			dir := t.TempDir()
			in := build(t, env(t), tc.setup(t, dir, key))
			tc.check(t, in, dir, key)
			if count(t, dir, "apply") != 0 {
				t.Error("apply ran")
			}
		})
	}
	srv := sshtest.Start(t, sshtest.Options{})
	remote := append([]preflightCase{
		{name: "dir missing", settings: map[string]any{"apply": []string{"APPLY"}, "dir": "DIR/missing"},
			class: failure.ErrInvalid, says: []string{"apply", "in directory", "missing"}},
		{name: "verify not executable", settings: map[string]any{"apply": []string{"APPLY"}, "verify": []string{"NOEXEC"}},
			class: failure.ErrInvalid, says: []string{"verify", "noexec.sh not found on", "or not executable"}},
	}, preflightCases...)
	for _, tc := range remote {
		t.Run("ssh/"+tc.name, func(t *testing.T) {
			dir := t.TempDir()
			settings := tc.setup(t, dir, key)
			settings["host"] = srv.Target(0)
			item := config.Integration{ID: "wp-widget", Key: "actionnetwork-main", Type: Type, Settings: settings}
			p := sshpool.New(sshpool.Options{KnownHosts: srv.KnownHosts, IdentityFile: srv.Identity, ConnectTimeout: 5 * time.Second, Home: t.TempDir(), Getenv: func(string) string { return "" }})
			t.Cleanup(func() { p.Close() })
			in, err := New(integrations.Host{Config: &config.Config{File: "rekey.yaml", Integrations: []config.Integration{item}}, Logger: slog.New(slog.DiscardHandler), Getenv: env(t), SSH: p}, item)
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, in, dir, key)
		})
	}
}

// A key with a line break would reach apply's stdin as two lines: Accepts
// refuses it before the click, and Apply refuses it too, in the same
// words, running nothing.
func TestAcceptsAgreesWithApply(t *testing.T) {
	dir := t.TempDir()
	apply, _ := target(t, dir)
	in := build(t, env(t), map[string]any{"apply": []string{apply}})
	a, ok := in.(integrations.Acceptor)
	if !ok {
		t.Fatalf("%T is not an integrations.Acceptor", in)
	}
	for _, tc := range []struct {
		key, says string
	}{
		{"0123456789abcdef0123456789abcdef", ""},
		{`a'b"c$d\e f`, ""},
		{"ab\ncd", "line break"},
		{"abcd\r", "line break"},
		{"ab\x00cd", "NUL"},
	} {
		acc := a.Accepts(secret.New(tc.key))
		_, applied := in.Apply(context.Background(), integrations.ApplyRequest{Key: secret.New(tc.key)})
		if tc.says == "" {
			if acc != nil || applied != nil {
				t.Errorf("%q: Accepts %v, Apply %v; want both to take it", tc.key, acc, applied)
			}
			continue
		}
		for what, err := range map[string]error{"Accepts": acc, "Apply": applied} {
			if !errors.Is(err, failure.ErrInvalid) || !strings.Contains(err.Error(), tc.says) || !strings.Contains(err.Error(), "wp-widget") {
				t.Errorf("%q: %s: %v; want invalid, naming the integration, saying %q", tc.key, what, err, tc.says)
			}
			if err != nil {
				leakcheck.Assert(t, what+" error", []byte(err.Error()), tc.key)
			}
		}
	}
	if n := count(t, dir, "apply"); n != 2 {
		t.Errorf("apply ran %d times, want 2 (the refused keys never)", n)
	}
}
