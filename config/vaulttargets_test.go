package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rekey-dev/rekey/config"
)

// A vault integration that would write into rekey's own records, or over a
// key rekey manages, in the same Vault and mount, is a configuration error
// naming the file, the item and the field.
func TestVaultIntegrationOverRekeysOwnPaths(t *testing.T) {
	t.Setenv("VAULT_ADDR", "https://vault.greens.example:8200")
	t.Setenv("VAULT_NAMESPACE", "")
	head := `vault: {mount: secret, state_path: rekey}
keys:
  - {id: an-main, provider: none, vault_path: actionnetwork/main}
  - {id: an-group, provider: none, vault_path: /actionnetwork/group/}
integrations:
`
	cases := []struct {
		name, item, says string // says "" when the configuration is fine
	}{
		{"{mount: secret, path: rekey/keys/an-main/state, field: k}", "path", "rekey's own records"},
		{"{mount: secret, path: rekey, field: k}", "path", "rekey's own records"},
		{"{mount: /secret/, path: /rekey/serve/lease/, field: k}", "path", "rekey's own records"},
		{"{mount: secret, path: actionnetwork/group, field: api_key}", "path", "key an-group"},
		{"{mount: secret, path: actionnetwork/main, field: other}", "path", "key an-main"},
		{"{mount: secret, path: actionnetwork/main, field: k, address: 'https://VAULT.greens.example:8200/'}", "path", "key an-main"},
		{"{mount: secret, path: rekeyed/app, field: k}", "", ""},
		{"{mount: apps, path: rekey/x, field: k}", "", ""},
		{"{mount: apps, path: actionnetwork/main, field: k}", "", ""},
		{"{mount: secret, path: actionnetwork/main, field: k, address: 'https://other.example:8200', token_env: OTHER}", "", ""},
		{"{mount: secret, path: actionnetwork/main, field: k, namespace: team-b}", "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "rekey.yaml")
			body := head + "  - {id: app, key: an-main, type: vault, " + strings.TrimSuffix(strings.TrimPrefix(c.name, "{"), "}") + "}\n"
			if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := config.Load(path)
			if c.says == "" {
				if err != nil {
					t.Fatalf("Load: %v", err)
				}
				return
			}
			var es config.Errors
			if !errors.As(err, &es) || len(es) != 1 {
				t.Fatalf("Load: %v, want one error", err)
			}
			e := es[0]
			if e.File != path || e.Item != "integrations[0] (app)" || e.Field != c.item || !strings.Contains(e.Msg, c.says) {
				t.Fatalf("error %q: want item integrations[0] (app), field %s, saying %q", e, c.item, c.says)
			}
		})
	}
}

// rekey's own Vault address may come from the configuration, and the
// integration's namespace defaults to rekey's when it names no address.
func TestVaultIntegrationSameVaultByConfiguration(t *testing.T) {
	t.Setenv("VAULT_ADDR", "")
	t.Setenv("VAULT_NAMESPACE", "")
	path := filepath.Join(t.TempDir(), "rekey.yaml")
	body := `vault: {address: "http://127.0.0.1:8200", namespace: team-a, mount: kv, state_path: ops/rekey}
keys:
  - {id: an, provider: none, vault_path: an}
integrations:
  - {id: app, key: an, type: vault, mount: kv, path: ops/rekey/locks/an, field: k, address: "http://127.0.0.1:8200", namespace: team-a}
  - {id: app2, key: an, type: vault, mount: kv, path: an, field: k, namespace: team-a}
  - {id: app3, key: an, type: vault, mount: kv, path: an, field: k, namespace: team-b}
`
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := config.Load(path)
	var es config.Errors
	if !errors.As(err, &es) || len(es) != 2 || es[0].Item != "integrations[0] (app)" || es[1].Item != "integrations[1] (app2)" {
		t.Fatalf("Load: %v, want errors for app and app2", err)
	}
}
