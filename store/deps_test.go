package store_test

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// deps lists the packages pkg depends on, as `go list -deps` does.
func deps(t *testing.T, pkg string) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", pkg).Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v", pkg, err)
	}
	return strings.Fields(string(out))
}

// Which way the arrows go (docs/ARCHITECTURE.md): the engine and the
// storage contract know nothing of Vault's client; plug-in packages do
// not import the engine; the demo binary does not link testing.
func TestDependencies(t *testing.T) {
	const root = "github.com/rekey-dev/rekey/"
	for _, c := range []struct {
		pkg, not string
	}{
		{"../rotation", "github.com/hashicorp/vault/api"},
		{"../store/...", "github.com/hashicorp/vault/api"},
		{"../serve", "github.com/hashicorp/vault/api"},
		{"../integrations/...", root + "rotation"},
		{"../providers/...", root + "rotation"},
		{"../notifiers/...", root + "rotation"},
		{"../records", root + "integrations"},
		{"../records", root + "config"},
		{"../failure", root + "state"},
		{"../state", root + "failure"},
		{"../cmd/rekey-demo", "testing"},
		{"../cmd/rekey", "testing"},
	} {
		if slices.Contains(deps(t, c.pkg), c.not) {
			t.Errorf("%s depends on %s", strings.TrimPrefix(c.pkg, "../"), c.not)
		}
	}
}
