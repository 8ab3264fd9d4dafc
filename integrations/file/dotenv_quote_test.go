//go:build unix

package file

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rekey-dev/rekey/internal/leakcheck"
)

// A .env is often sourced by a shell (`. ./.env`, `set -a; . .env`) as well
// as read by a dotenv library. Whatever the key holds, the written value
// must be literal to sh: sourcing the file runs nothing and sets the
// variable to the key, byte for byte. A key that no quoting keeps literal
// for every common reader is refused for that file, leaving it as it was.
func TestDotenvValueIsLiteralToSh(t *testing.T) {
	const bq = "`"
	keys := []struct {
		key    string
		refuse bool
	}{
		{key: "ak_$(touch MARK)" + bq + "touch MARK" + bq},
		{key: "ak_it's_$(touch MARK)", refuse: true},
		{key: "ak_it's_" + bq + "touch MARK" + bq, refuse: true},
		{key: "ak_it's_$HOME", refuse: true},
		{key: "ak_it's_\\_x", refuse: true},
		{key: "ak_it's_\"x\"", refuse: true},
		{key: "ak_it's_plain"},
		{key: "ak_${HOME}_${X:-y}"},
		{key: "ak_a\\b"},
		{key: "ak_a\\"},
		{key: "ak_with \"quotes\" and $(touch MARK)"},
		{key: "ak_a b # not a comment"},
		{key: "#ak_hash_first"},
		{key: "ak_~/tilde:~"},
		{key: "ak_semi;touch MARK;&|<>*?[x]!"},
		{key: "ak_plain-key.42"},
	}
	lines := []string{"KEY=old\n", "KEY='old'\n", "KEY=\"old\"\n", "export KEY=old # c\n", "A=1\n"}
	for _, k := range keys {
		for _, line := range lines {
			dir := t.TempDir()
			key := k.key
			content := "# site\n" + line + "Z=last\n"
			out, err := rewriteDotenv([]byte(content), "KEY", key)
			// A backslash is an escape in double quotes to every reader,
			// and in single quotes to python-dotenv (\\ and \'): a key
			// holding one is refused.
			refuse := k.refuse || strings.Contains(key, "\\")
			if refuse {
				if !errors.Is(err, errBadValue) {
					t.Errorf("%q into %q: error %v, want the key refused for this file", key, line, err)
				}
				if err != nil {
					leakcheck.Assert(t, "error", []byte(err.Error()), key)
					if !strings.Contains(err.Error(), "quot") {
						t.Errorf("error %q does not say why (quoting)", err)
					}
					continue
				}
			}
			if err != nil {
				t.Errorf("%q into %q: %v", key, line, err)
				continue
			}
			appended := !strings.Contains(line, "KEY")
			if appended && !strings.HasPrefix(string(out), content) ||
				!appended && (!strings.HasPrefix(string(out), "# site\n") || !strings.HasSuffix(string(out), "Z=last\n")) {
				t.Errorf("%q into %q: other lines changed: %q", key, line, out)
			}
			if back, err := readDotenv(out, "KEY"); err != nil || back != key {
				t.Errorf("%q into %q: reads back %q, %v", key, line, back, err)
			}
			if err := os.WriteFile(filepath.Join(dir, ".env"), out, 0o600); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command("/bin/sh", "-c", `. ./.env && printf %s "$KEY"`)
			cmd.Dir = dir
			cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=/nonexistent"}
			got, err := cmd.Output()
			if err != nil {
				t.Errorf("%q into %q: sh could not source %q: %v", key, line, out, err)
				continue
			}
			if string(got) != key {
				t.Errorf("%q into %q: sh reads %q from %q", key, line, got, out)
			}
			if _, err := os.Stat(filepath.Join(dir, "MARK")); err == nil {
				t.Errorf("%q into %q: sourcing %q ran a command", key, line, out)
			}
		}
	}
}

// The quoting a line has is kept when it is safe for the new key.
func TestDotenvKeepsSafeQuoting(t *testing.T) {
	for _, tc := range []struct{ in, value, want string }{
		{"KEY=old\n", "plain.key-1", "KEY=plain.key-1\n"},
		{"KEY='old'\n", "plain.key-1", "KEY='plain.key-1'\n"},
		{"KEY=\"old\"\n", "plain.key-1", "KEY=\"plain.key-1\"\n"},
		{"KEY=\"old\"\n", "a b'c", "KEY=\"a b'c\"\n"},
		{"KEY='old'\n", "a b'c", "KEY=\"a b'c\"\n"},
		{"KEY=\"old\"\n", "a$b", "KEY='a$b'\n"},
		{"KEY=old\n", "a b", "KEY='a b'\n"},
	} {
		out, err := rewriteDotenv([]byte(tc.in), "KEY", tc.value)
		if err != nil || string(out) != tc.want {
			t.Errorf("%q with %q: got %q, %v; want %q", tc.in, tc.value, out, err, tc.want)
		}
	}
}
