//go:build unix

package exec

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rekey-dev/rekey/config"
	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/integrations"
	"github.com/rekey-dev/rekey/internal/leakcheck"
	"github.com/rekey-dev/rekey/secret"
	"github.com/rekey-dev/rekey/state"
)

func randomKey(t *testing.T) string {
	t.Helper()
	b := make([]byte, 16)
	rand.Read(b)
	return "ak_" + hex.EncodeToString(b)
}

// env is rekey's environment as the tests give it: tokens that must never
// reach a child, variables holding keys, and PATH.
func env(t *testing.T, keys ...string) func(string) string {
	vals := map[string]string{
		"PATH":            os.Getenv("PATH"),
		"HOME":            "/home/rekey",
		"LANG":            "C.UTF-8",
		"VAULT_TOKEN":     "hvs.vault-token-for-tests",
		"SLACK_BOT_TOKEN": "xoxb-slack-token-for-tests",
		"GITHUB_TOKEN":    "ghp_github-token-for-tests",
		"WP_TOKEN":        "wp-token-for-the-command",
	}
	for i, k := range keys {
		vals[fmt.Sprintf("REKEY_TEST_KEY_%d", i)] = k
	}
	return func(n string) string { return vals[n] }
}

// script writes an executable shell script into dir.
func script(t *testing.T, dir, name, body string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func build(t *testing.T, getenv func(string) string, settings map[string]any) integrations.Integration {
	t.Helper()
	in := config.Integration{ID: "wp-widget", Key: "actionnetwork-main", Type: Type, Settings: settings}
	cfg := &config.Config{File: "/etc/rekey/rekey.yaml", Integrations: []config.Integration{in}}
	integ, err := New(integrations.Host{Config: cfg, Getenv: getenv}, in)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return integ
}

func leakFree(t *testing.T, what string, err error, keys ...string) {
	t.Helper()
	if err != nil {
		leakcheck.Assert(t, what, []byte(err.Error()), keys...)
	}
}

// target is a fake deployment target: apply stores stdin in dir/held and
// dumps its argv and environment to dir/dump; read prints dir/held; each
// run is counted in dir/<role>.count.
func target(t *testing.T, dir string) (apply, read string) {
	apply = script(t, dir, "apply.sh", fmt.Sprintf(`
echo run >> %[1]s/apply.count
{ echo "argv: $0 $*"; env; } >> %[1]s/dump
cat > %[1]s/held
`, dir))
	read = script(t, dir, "read.sh", fmt.Sprintf(`
echo run >> %[1]s/read.count
cat %[1]s/held 2>/dev/null
exit 0
`, dir))
	return apply, read
}

func count(t *testing.T, dir, role string) int {
	b, _ := os.ReadFile(filepath.Join(dir, role+".count"))
	return strings.Count(string(b), "run\n")
}

func TestApplyGivesTheKeyOnStdinOnly(t *testing.T) {
	oldKey, newKey := randomKey(t), randomKey(t)
	dir := t.TempDir()
	apply, read := target(t, dir)
	os.WriteFile(filepath.Join(dir, "held"), []byte(oldKey+"\n"), 0o600)
	integ := build(t, env(t, oldKey, newKey), map[string]any{
		"apply": []string{apply, "--site", "greens"},
		"read":  []string{read},
		"env":   []string{"WP_CLI_TOKEN=${WP_TOKEN}", "SITE=greens", "PATH=/usr/bin:/bin"},
		"dir":   dir,
	})
	ctx := context.Background()

	res, err := integ.Apply(ctx, integrations.ApplyRequest{Key: secret.New(newKey)})
	leakFree(t, "Apply error", err, oldKey, newKey)
	if err != nil || !res.Changed {
		t.Fatalf("Apply: %+v, %v", res, err)
	}
	held, _ := os.ReadFile(filepath.Join(dir, "held"))
	if string(held) != newKey+"\n" {
		t.Errorf("apply's stdin was %q, want the key and a newline", held)
	}

	dump, _ := os.ReadFile(filepath.Join(dir, "dump"))
	leakcheck.Assert(t, "apply argv and environment", dump, oldKey, newKey)
	for _, want := range []string{"argv: " + apply + " --site greens", "WP_CLI_TOKEN=wp-token-for-the-command", "SITE=greens", "PATH=/usr/bin:/bin", "HOME=/home/rekey", "LANG=C.UTF-8"} {
		if !strings.Contains(string(dump), want+"\n") {
			t.Errorf("apply's argv and environment lack %q:\n%s", want, dump)
		}
	}
	for _, token := range []string{"VAULT_TOKEN", "SLACK_BOT_TOKEN", "GITHUB_TOKEN", "REKEY_TEST_KEY", "vault-token", "slack-token", "github-token"} {
		if strings.Contains(string(dump), token) {
			t.Errorf("apply's environment holds %s", token)
		}
	}

	// read now prints the key: apply is not run again.
	res, err = integ.Apply(ctx, integrations.ApplyRequest{Key: secret.New(newKey)})
	if err != nil || res.Changed {
		t.Fatalf("second Apply: %+v, %v; want unchanged", res, err)
	}
	if n := count(t, dir, "apply"); n != 1 {
		t.Errorf("apply ran %d times, want 1", n)
	}
	if n := count(t, dir, "read"); n != 2 {
		t.Errorf("read ran %d times, want 2", n)
	}
	k, err := integ.(integrations.Reader).Read(ctx)
	if err != nil || !k.Equal(secret.New(newKey)) {
		t.Errorf("Read: %v, %v", k, err)
	}
}

func TestApplyWithoutReadRunsEveryTime(t *testing.T) {
	key := randomKey(t)
	dir := t.TempDir()
	apply, _ := target(t, dir)
	integ := build(t, env(t), map[string]any{"apply": []string{apply}})
	for i := 0; i < 2; i++ {
		res, err := integ.Apply(context.Background(), integrations.ApplyRequest{Key: secret.New(key)})
		if err != nil || !res.Changed {
			t.Fatalf("Apply %d: %+v, %v", i, res, err)
		}
	}
	if n := count(t, dir, "apply"); n != 2 {
		t.Errorf("apply ran %d times, want 2", n)
	}
}

func TestApplyRefusesKeyInEnvironment(t *testing.T) {
	key := randomKey(t)
	dir := t.TempDir()
	apply, _ := target(t, dir)
	integ := build(t, env(t, key), map[string]any{"apply": []string{apply}, "env": []string{"API_KEY=${REKEY_TEST_KEY_0}"}})
	_, err := integ.Apply(context.Background(), integrations.ApplyRequest{Key: secret.New(key)})
	if !errors.Is(err, failure.ErrInvalid) || !strings.Contains(err.Error(), "API_KEY") {
		t.Fatalf("error %v, want invalid naming API_KEY", err)
	}
	leakFree(t, "Apply error", err, key)
	if count(t, dir, "apply") != 0 {
		t.Error("apply ran")
	}
}

func TestExitStatuses(t *testing.T) {
	for _, tc := range []struct {
		code      int
		class     error
		transient bool
	}{
		{1, failure.ErrInvalid, false},
		{2, failure.ErrInvalid, false},
		{75, failure.ErrTransient, true},
		{77, failure.ErrUnauthorized, false},
	} {
		t.Run(strconv.Itoa(tc.code), func(t *testing.T) {
			key := randomKey(t)
			dir := t.TempDir()
			// The command prints the key on stderr and stdout before failing:
			// neither may reach the error.
			fail := script(t, dir, "fail.sh", fmt.Sprintf("k=$(cat); echo \"bad key $k\" >&2; echo \"$k\"; exit %d\n", tc.code))
			probe := script(t, dir, "probe.sh", fmt.Sprintf("exit %d\n", tc.code))
			integ := build(t, env(t), map[string]any{"apply": []string{fail}, "read": []string{probe}, "verify": []string{probe}})
			ctx := context.Background()

			_, err := integ.Apply(ctx, integrations.ApplyRequest{Key: secret.New(key)})
			if !errors.Is(err, tc.class) || failure.IsTransient(err) != tc.transient {
				t.Errorf("Apply error %v, want %v", err, tc.class)
			}
			leakFree(t, "Apply error", err, key)
			if err != nil && !strings.Contains(err.Error(), fmt.Sprintf("fail.sh exited with status %d", tc.code)) {
				t.Errorf("error %q does not name the command and status", err)
			}
			_, err = integ.(integrations.Reader).Read(ctx)
			if !errors.Is(err, tc.class) {
				t.Errorf("Read error %v, want %v", err, tc.class)
			}
			err = integ.(integrations.Verifier).Verify(ctx)
			if !errors.Is(err, tc.class) {
				t.Errorf("Verify error %v, want %v", err, tc.class)
			}
		})
	}
}

func TestRead(t *testing.T) {
	key := randomKey(t)
	for _, tc := range []struct {
		name, body string
		want       string
		class      error
	}{
		{"trimmed", "printf '  %s \\r\\n\\n' " + key, key, nil},
		{"nothing", "exit 0", "", failure.ErrNotFound},
		{"white space only", "echo '   '", "", failure.ErrNotFound},
		{"too much", "head -c 70000 /dev/zero | tr '\\0' a", "", failure.ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			read := script(t, t.TempDir(), "read.sh", tc.body+"\n")
			integ := build(t, env(t), map[string]any{"apply": []string{"true"}, "read": []string{read}})
			got, err := integ.(integrations.Reader).Read(context.Background())
			leakFree(t, "Read error", err, key)
			if tc.class != nil {
				if !errors.Is(err, tc.class) {
					t.Fatalf("error %v, want %v", err, tc.class)
				}
				return
			}
			if err != nil || !got.Equal(secret.New(tc.want)) {
				t.Fatalf("Read %v, %v", got, err)
			}
		})
	}
}

func TestVerify(t *testing.T) {
	dir := t.TempDir()
	// verify gets no key: not on stdin, not in its environment.
	verify := script(t, dir, "verify.sh", fmt.Sprintf("{ env; cat; } > %s/dump\n", dir))
	key := randomKey(t)
	integ := build(t, env(t, key), map[string]any{"apply": []string{"true"}, "verify": []string{verify}})
	if err := integ.(integrations.Verifier).Verify(context.Background()); err != nil {
		t.Fatal(err)
	}
	dump, _ := os.ReadFile(filepath.Join(dir, "dump"))
	leakcheck.Assert(t, "verify environment and stdin", dump, key)
	if s := integrations.Observe(context.Background(), integ, integrations.Expect{}); s.State != state.Current {
		t.Errorf("Observe: %+v, want current", s)
	}
}

func TestHonestTypes(t *testing.T) {
	for _, tc := range []struct {
		name             string
		settings         map[string]any
		reader, verifier bool
		state            state.State
	}{
		{"apply only", map[string]any{"apply": []string{"true"}}, false, false, state.Unknown},
		{"read", map[string]any{"apply": []string{"true"}, "read": []string{"echo", "x"}}, true, false, state.Failing},
		{"verify", map[string]any{"apply": []string{"true"}, "verify": []string{"true"}}, false, true, state.Current},
		{"both", map[string]any{"apply": []string{"true"}, "read": []string{"echo", "x"}, "verify": []string{"true"}}, true, true, state.Failing},
	} {
		t.Run(tc.name, func(t *testing.T) {
			integ := build(t, env(t), tc.settings)
			if _, ok := integ.(integrations.Reader); ok != tc.reader {
				t.Errorf("Reader: %v, want %v", ok, tc.reader)
			}
			if _, ok := integ.(integrations.Verifier); ok != tc.verifier {
				t.Errorf("Verifier: %v, want %v", ok, tc.verifier)
			}
			if _, ok := integ.(integrations.Manual); ok {
				t.Error("an exec integration is Manual")
			}
			if integ.ID() != "wp-widget" {
				t.Errorf("ID %q", integ.ID())
			}
			// "x" is no version rekey knows: failing, when it can be read.
			if s := integrations.Observe(context.Background(), integ, integrations.Expect{}); s.State != tc.state {
				t.Errorf("Observe: %+v, want %s", s, tc.state)
			}
		})
	}
}

// TestCancelKillsTheProcessGroup cancels an apply whose script waits on a
// background child; both must be killed, and Apply must return the
// context's error.
func TestCancelKillsTheProcessGroup(t *testing.T) {
	key := randomKey(t)
	dir := t.TempDir()
	hang := script(t, dir, "hang.sh", fmt.Sprintf("sleep 30 &\necho $! > %[1]s/child.pid\necho started > %[1]s/started\nwait\n", dir))
	integ := build(t, env(t), map[string]any{"apply": []string{hang}})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := integ.Apply(ctx, integrations.ApplyRequest{Key: secret.New(key)})
		done <- err
	}()
	waitFor(t, func() bool { _, err := os.Stat(filepath.Join(dir, "started")); return err == nil })
	cancel()
	var err error
	select {
	case err = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Apply did not return after cancel")
	}
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want cancelled", err)
	}
	leakFree(t, "Apply error", err, key)
	pidText, _ := os.ReadFile(filepath.Join(dir, "child.pid"))
	pid, _ := strconv.Atoi(strings.TrimSpace(string(pidText)))
	if pid <= 0 {
		t.Fatalf("no child pid: %q", pidText)
	}
	waitFor(t, func() bool { return gone(pid) })
}

func TestDeadlineIsTransient(t *testing.T) {
	key := randomKey(t)
	integ := build(t, env(t), map[string]any{"apply": []string{"sleep", "30"}})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := integ.Apply(ctx, integrations.ApplyRequest{Key: secret.New(key)})
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, failure.ErrTransient) {
		t.Fatalf("error %v, want a transient deadline", err)
	}
}

// gone reports whether pid has exited (or is a zombie waiting for its reaper).
func gone(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	if i := strings.LastIndexByte(string(stat), ')'); i > 0 && i+2 < len(stat) {
		return stat[i+2] == 'Z'
	}
	return false
}

// waitFor polls cond until it holds, failing the test after ten seconds.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestCommandProblems(t *testing.T) {
	key := randomKey(t)
	dir := t.TempDir()
	notExec := filepath.Join(dir, "not-executable")
	os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644)
	for _, tc := range []struct {
		name     string
		settings map[string]any
		class    error
	}{
		{"not found", map[string]any{"apply": []string{"/no/such/command"}}, failure.ErrInvalid},
		{"not on PATH", map[string]any{"apply": []string{"no-such-command-rekey"}}, failure.ErrInvalid},
		{"unset variable", map[string]any{"apply": []string{"true"}, "env": []string{"T=${NO_SUCH_VARIABLE}"}}, failure.ErrInvalid},
		{"bad directory", map[string]any{"apply": []string{"true"}, "dir": filepath.Join(dir, "missing")}, failure.ErrInvalid},
		{"key in argv", map[string]any{"apply": []string{"echo", key}}, failure.ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			integ := build(t, env(t), tc.settings)
			_, err := integ.Apply(context.Background(), integrations.ApplyRequest{Key: secret.New(key)})
			if !errors.Is(err, tc.class) {
				t.Fatalf("error %v, want %v", err, tc.class)
			}
			leakFree(t, "Apply error", err, key)
		})
	}
	if os.Geteuid() != 0 {
		integ := build(t, env(t), map[string]any{"apply": []string{notExec}})
		_, err := integ.Apply(context.Background(), integrations.ApplyRequest{Key: secret.New(key)})
		if !errors.Is(err, failure.ErrUnauthorized) {
			t.Errorf("not executable: %v, want unauthorized", err)
		}
	}
}

func TestNew(t *testing.T) {
	for _, tc := range []struct {
		name     string
		settings map[string]any
		field    string
	}{
		{"no apply", map[string]any{"read": []string{"x"}}, "apply"},
		{"empty apply", map[string]any{"apply": []string{}}, "apply"},
		{"apply as a string", map[string]any{"apply": "set-key --site x"}, "apply"},
		{"empty read", map[string]any{"apply": []string{"x"}, "read": []string{""}}, "read"},
		{"empty verify", map[string]any{"apply": []string{"x"}, "verify": []string{}}, "verify"},
		{"env without equals", map[string]any{"apply": []string{"x"}, "env": []string{"TOKEN"}}, "env"},
		{"env bad name", map[string]any{"apply": []string{"x"}, "env": []string{"A-B=1"}}, "env"},
		{"env twice", map[string]any{"apply": []string{"x"}, "env": []string{"A=1", "A=2"}}, "env"},
		{"env bad reference", map[string]any{"apply": []string{"x"}, "env": []string{"A=${1X}"}}, "env"},
		{"unknown field", map[string]any{"apply": []string{"x"}, "stdin": true}, "stdin"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := config.Integration{ID: "wp-widget", Key: "k", Type: Type, Settings: tc.settings}
			cfg := &config.Config{File: "/etc/rekey/rekey.yaml", Integrations: []config.Integration{in}}
			_, err := New(integrations.Host{Config: cfg}, in)
			var ce *config.Error
			if !errors.As(err, &ce) {
				t.Fatalf("error %v (%T), want a *config.Error", err, err)
			}
			if ce.Field != tc.field || !strings.Contains(ce.Item, "wp-widget") {
				t.Errorf("error %q names field %q, want %q", err, ce.Field, tc.field)
			}
		})
	}
}

func TestApplyHonoursContext(t *testing.T) {
	dir := t.TempDir()
	apply, read := target(t, dir)
	integ := build(t, env(t), map[string]any{"apply": []string{apply}, "read": []string{read}})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := integ.Apply(ctx, integrations.ApplyRequest{Key: secret.New(randomKey(t))}); !errors.Is(err, context.Canceled) {
		t.Errorf("Apply error %v, want cancelled", err)
	}
	if _, err := integ.(integrations.Reader).Read(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Read error %v, want cancelled", err)
	}
	if count(t, dir, "apply")+count(t, dir, "read") != 0 {
		t.Error("a command ran after cancel")
	}
}
