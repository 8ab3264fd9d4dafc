package all_test

import (
	"testing"

	"github.com/rekey-dev/rekey/config"
	"github.com/rekey-dev/rekey/integrations"
	"github.com/rekey-dev/rekey/integrations/all"
	"github.com/rekey-dev/rekey/internal/sshpool"
)

// TestExampleConfiguration builds every integration of
// configs/example.yaml: each example is a valid configuration of its type,
// and every type has one.
func TestExampleConfiguration(t *testing.T) {
	cfg, err := config.Load("../../configs/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"VAULT_ADDR": "https://vault.greens.example:8200"}
	h := integrations.Host{Config: cfg, Getenv: func(k string) string { return env[k] },
		SSH: sshpool.New(sshpool.Options{Home: t.TempDir()})} // for integrations with host; connects to nothing
	seen := map[string]bool{}
	for _, in := range cfg.Integrations {
		if _, err := all.New(h, in); err != nil {
			t.Errorf("%s: %v", in.ID, err)
		}
		seen[in.Type] = true
	}
	for _, name := range all.Names() {
		if !seen[name] {
			t.Errorf("configs/example.yaml has no example of type %s", name)
		}
	}
}
