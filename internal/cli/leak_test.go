package cli

import (
	"os"
	"path/filepath"
	"testing"
)

func TestSamePath(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "site", ".env")
	if err := os.MkdirAll(filepath.Dir(real), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(real, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "site"), filepath.Join(dir, "www")); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{filepath.Join(dir, "www", ".env"), filepath.Join(dir, "site", "..", "site", ".env")} {
		if samePath(p) != samePath(real) {
			t.Errorf("samePath(%s) = %s, want %s", p, samePath(p), samePath(real))
		}
	}
	if samePath(filepath.Join(dir, "other")) == samePath(real) {
		t.Error("two files compare equal")
	}
}
