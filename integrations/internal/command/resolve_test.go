//go:build unix

package command

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rekey-dev/rekey/failure"
)

func TestResolve(t *testing.T) {
	dir := t.TempDir()
	for name, mode := range map[string]os.FileMode{"run.sh": 0o755, "plain.txt": 0o644} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"), mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(filepath.Join(dir, name), mode)
	}
	os.Mkdir(filepath.Join(dir, "sub"), 0o755)
	for _, tc := range []struct {
		name, argv0, dir string
		class            error // nil: found
		says             string
	}{
		{"in PATH", "sh", "", nil, ""},
		{"absolute", filepath.Join(dir, "run.sh"), "", nil, ""},
		{"relative to dir", "./run.sh", dir, nil, ""},
		{"not in PATH", "rekey-no-such-command", "", failure.ErrInvalid, `command "rekey-no-such-command" not found in PATH`},
		{"missing path", filepath.Join(dir, "gone"), "", failure.ErrInvalid, "not found"},
		{"relative, missing in dir", "./gone", dir, failure.ErrInvalid, "./gone not found"},
		{"not executable", filepath.Join(dir, "plain.txt"), "", failure.ErrUnauthorized, "is not executable"},
		{"a directory", filepath.Join(dir, "sub"), "", failure.ErrInvalid, "not a regular file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Resolve("file: /srv/.env: reload", tc.argv0, tc.dir)
			if tc.class == nil {
				if err != nil {
					t.Fatalf("Resolve: %v", err)
				}
				return
			}
			if !errors.Is(err, tc.class) || !strings.Contains(err.Error(), tc.says) || !strings.HasPrefix(err.Error(), "file: /srv/.env: reload: ") {
				t.Fatalf("error %v, want %v saying %q", err, tc.class, tc.says)
			}
		})
	}
}
