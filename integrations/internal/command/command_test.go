package command

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/internal/leakcheck"
	"github.com/rekey-dev/rekey/secret"
)

func TestEnv(t *testing.T) {
	rekeyEnv := map[string]string{
		"PATH":        "/opt/bin:/usr/bin",
		"LANG":        "C.UTF-8",
		"VAULT_TOKEN": "hvs.x",
		"CALLHUB":     "ch-token",
		"AWS_SECRET":  "s",
	}
	getenv := func(n string) string { return rekeyEnv[n] }
	for _, tc := range []struct {
		name    string
		entries []string
		want    []string
		wantErr string
	}{
		{"inherited only", nil, []string{"PATH=/opt/bin:/usr/bin", "LANG=C.UTF-8"}, ""},
		{"entries added and replacing", []string{"LANG=en_GB.UTF-8", "TOKEN=${CALLHUB}", "MIX=a${CALLHUB}b${LANG}"},
			[]string{"PATH=/opt/bin:/usr/bin", "LANG=en_GB.UTF-8", "TOKEN=ch-token", "MIX=ach-tokenbC.UTF-8"}, ""},
		{"unset variable", []string{"T=${NOPE}"}, nil, "NOPE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Env(getenv, tc.entries)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, failure.ErrInvalid) {
					t.Fatalf("error %v, want one naming %s", err, tc.wantErr)
				}
				return
			}
			if err != nil || !slices.Equal(got, tc.want) {
				t.Fatalf("Env = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
	if got, _ := Env(func(string) string { return "" }, nil); !slices.Equal(got, []string{"PATH=" + defaultPath}) {
		t.Errorf("empty environment gives %q", got)
	}
}

func TestCheckEnv(t *testing.T) {
	for entries, ok := range map[string]bool{
		"A=1":           true,
		"A=":            true,
		"A=${B}x${C_D}": true,
		"A":             false,
		"=1":            false,
		"1A=1":          false,
		"A=${}":         false,
		"A=${B-C}":      false,
	} {
		if got := CheckEnv([]string{entries}) == ""; got != ok {
			t.Errorf("CheckEnv(%q) ok = %v, want %v", entries, got, ok)
		}
	}
	if CheckEnv([]string{"A=1", "A=2"}) == "" {
		t.Error("a name given twice passed")
	}
}

func TestRunKeyOnStdin(t *testing.T) {
	key := "ak_" + strings.Repeat("5e", 16)
	out, err := Run(context.Background(), Spec{
		What: "test", Argv: []string{"sh", "-c", "cat; echo \"$#\"; env"}, Env: []string{"PATH=/usr/bin:/bin", "A=1"},
		Key: secret.New(key), Stdin: true, StdoutLimit: 4096,
	})
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(out), "\n")
	if lines[0] != key || lines[1] != "0" {
		t.Errorf("stdin and argc: %q", lines[:2])
	}
	leakcheck.Assert(t, "environment", []byte(strings.Join(lines[1:], "\n")), key)
}

func TestRunRefusesKeyInArgvOrEnv(t *testing.T) {
	key := "ak_" + strings.Repeat("7f", 16)
	for _, s := range []Spec{
		{What: "argv", Argv: []string{"echo", "--key=" + key}},
		{What: "env", Argv: []string{"true"}, Env: []string{"K=x" + key}},
	} {
		s.Key = secret.New(key)
		_, err := Run(context.Background(), s)
		if !errors.Is(err, failure.ErrInvalid) {
			t.Errorf("%s: error %v, want invalid", s.What, err)
		}
		if err != nil {
			leakcheck.Assert(t, s.What+" error", []byte(err.Error()), key)
		}
	}
}
