package vault_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/integrations"
)

// Preflight proves against a real Vault, writing nothing, that Apply's
// write can be made: each case a token and a mount that Apply would
// write with (nil), or one it would fail on, and what the failure says.
func TestPreflight(t *testing.T) {
	policy := func(f *fixture, caps ...string) string {
		return fmt.Sprintf("path %q { capabilities = [%s] }\n", f.vault.Mount+"/data/"+path, `"`+strings.Join(caps, `", "`)+`"`)
	}
	cases := []struct {
		name    string
		exists  bool
		prepare func(t *testing.T, f *fixture) map[string]any // settings to change
		class   error                                         // nil: ready
		says    []string
	}{
		{"root token, secret there", true, nil, nil, nil},
		{"read and update, secret there", true, func(t *testing.T, f *fixture) map[string]any {
			f.env["VAULT_TOKEN"] = f.vault.TokenWithPolicy(t, policy(f, "read", "update"))
			return nil
		}, nil, nil},
		{"read and create, no secret yet", false, func(t *testing.T, f *fixture) map[string]any {
			f.env["VAULT_TOKEN"] = f.vault.TokenWithPolicy(t, policy(f, "read", "create"))
			return nil
		}, nil, nil},
		{"cas_required on the mount", true, func(t *testing.T, f *fixture) map[string]any {
			f.vault.Configure(t, map[string]any{"cas_required": true})
			return nil
		}, nil, nil},
		{"a token of its own", true, func(t *testing.T, f *fixture) map[string]any {
			f.env["REPORTING_VAULT_TOKEN"] = f.vault.TokenWithPolicy(t, policy(f, "read", "update"))
			f.env["VAULT_TOKEN"] = "hvs.not-this-one"
			return map[string]any{"token_env": "REPORTING_VAULT_TOKEN"}
		}, nil, nil},

		{"read only", true, func(t *testing.T, f *fixture) map[string]any {
			f.env["VAULT_TOKEN"] = f.vault.TokenWithPolicy(t, f.vault.ReadOnlyPolicy())
			return nil
		}, failure.ErrUnauthorized, []string{"$VAULT_TOKEN", "update"}},
		{"create only, secret there", true, func(t *testing.T, f *fixture) map[string]any {
			f.env["VAULT_TOKEN"] = f.vault.TokenWithPolicy(t, policy(f, "read", "create"))
			return nil
		}, failure.ErrUnauthorized, []string{"update", "the secret exists"}},
		{"update only, no secret yet", false, func(t *testing.T, f *fixture) map[string]any {
			f.env["VAULT_TOKEN"] = f.vault.TokenWithPolicy(t, policy(f, "read", "update"))
			return nil
		}, failure.ErrUnauthorized, []string{"create", "does not exist yet"}},
		{"no read", true, func(t *testing.T, f *fixture) map[string]any {
			f.env["VAULT_TOKEN"] = f.vault.TokenWithPolicy(t, policy(f, "update"))
			return nil
		}, failure.ErrUnauthorized, []string{"read"}},
		{"token not set", true, func(t *testing.T, f *fixture) map[string]any {
			return map[string]any{"token_env": "REPORTING_VAULT_TOKEN"}
		}, failure.ErrUnauthorized, []string{"$REPORTING_VAULT_TOKEN is empty or not set"}},
		{"token refused", true, func(t *testing.T, f *fixture) map[string]any {
			f.env["VAULT_TOKEN"] = "hvs.CAESIJunkjunkjunkjunkjunkjunkjunkjunkjunk"
			return nil
		}, failure.ErrUnauthorized, []string{"$VAULT_TOKEN"}},
		{"KV version 1", false, func(t *testing.T, f *fixture) map[string]any {
			if err := f.vault.Client.Sys().Mount(f.vault.Mount+"-v1", &vaultapi.MountInput{Type: "kv", Options: map[string]string{"version": "1"}}); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { f.vault.Client.Sys().Unmount(f.vault.Mount + "-v1") })
			return map[string]any{"mount": f.vault.Mount + "-v1"}
		}, failure.ErrInvalid, []string{"not a KV version 2 mount"}},
		{"no such mount", false, func(t *testing.T, f *fixture) map[string]any {
			return map[string]any{"mount": f.vault.Mount + "-gone"}
		}, failure.ErrNotFound, []string{f0mount, "no KV version 2 mount"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			if c.exists {
				f.put(t, map[string]any{field: key2, "OTHER": "kept"})
			}
			var change map[string]any
			if c.prepare != nil {
				change = c.prepare(t, f)
			}
			in := f.build(t, change)
			pf, ok := in.(integrations.Preflighter)
			if !ok {
				t.Fatalf("%T is not an integrations.Preflighter", in)
			}
			before := f.proxy.Log()
			err := pf.Preflight(context.Background())
			for _, line := range strings.Split(string(f.proxy.Log()[len(before):]), "\n") {
				if strings.HasPrefix(line, "PUT ") || strings.HasPrefix(line, "PATCH ") || strings.HasPrefix(line, "DELETE ") ||
					(strings.HasPrefix(line, "POST ") && !strings.Contains(line, "/v1/sys/capabilities-self")) {
					t.Errorf("the preflight sent a write: %s", line)
				}
			}
			f.noLeaks(t, err)
			if c.class == nil {
				if err != nil {
					t.Fatalf("Preflight: %v", err)
				}
				// What the preflight passed, Apply does.
				if _, err := apply(in, key1); err != nil {
					t.Fatalf("Apply after a passing preflight: %v", err)
				}
				return
			}
			if !errors.Is(err, c.class) || !strings.Contains(err.Error(), "vault: ") || !strings.Contains(err.Error(), path) {
				t.Fatalf("Preflight: %v; want %v naming the secret", err, c.class)
			}
			for _, s := range c.says {
				if s == f0mount {
					s = f.vault.Mount
				}
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not say %q", err, s)
				}
			}
			// What the preflight failed, Apply fails.
			if _, aerr := apply(in, key1); aerr == nil {
				t.Errorf("Apply succeeded where the preflight failed (%v)", err)
			}
		})
	}
}

// f0mount in a case's says stands for the fixture's mount.
const f0mount = "<mount>"
