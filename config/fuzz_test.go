package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rekey-dev/rekey/config"
	"github.com/rekey-dev/rekey/integrations"
	"github.com/rekey-dev/rekey/integrations/all"
	provall "github.com/rekey-dev/rekey/providers/all"
)

// FuzzLoad loads arbitrary bytes as a configuration file the way the CLI
// does: config.Load, then every key's provider settings and every
// integration's own fields. It never panics, and every problem is a
// *config.Error (or config.Errors of them) that names the file and says
// what is wrong; a file that loads keeps the promises the rest of rekey
// relies on. The seed corpus is in testdata/fuzz/FuzzLoad.
func FuzzLoad(f *testing.F) {
	for _, seed := range []string{
		"",
		"keys: [{id: an, provider: actionnetwork, vault_path: an/main}]\n",
		"keys: [{id: an, provider: none, vault_path: an/main, rotate_every: 90d}]\nintegrations:\n  - {id: e, key: an, type: file, path: /tmp/x, format: dotenv, field: K}\n",
	} {
		f.Add([]byte(seed))
	}
	dir := f.TempDir()
	host := integrations.Host{Getenv: func(string) string { return "" }}
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "rekey.yaml")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := config.Load(path)
		if err != nil {
			checkConfigError(t, path, err)
			return
		}
		if cfg.File != path {
			t.Fatalf("File = %q, want %q", cfg.File, path)
		}
		checkLoaded(t, cfg)
		for i, k := range cfg.Keys {
			if err := provall.Validate(k); err != nil && err.Error() == "" {
				t.Fatalf("keys[%d]: provider settings refused with an empty message", i)
			}
		}
		host.Config = cfg
		for _, in := range cfg.Integrations {
			integ, err := all.New(host, in)
			if err != nil {
				checkConfigError(t, path, err)
				continue
			}
			if integ.ID() != in.ID {
				t.Fatalf("integration %q built as %q", in.ID, integ.ID())
			}
		}
	})
}

// checkConfigError: a *config.Error or config.Errors, each naming the
// file and saying something.
func checkConfigError(t *testing.T, path string, err error) {
	t.Helper()
	var one *config.Error
	var many config.Errors
	switch {
	case errors.As(err, &many):
		if len(many) == 0 {
			t.Fatalf("empty config.Errors")
		}
		for _, e := range many {
			checkOne(t, path, e)
		}
	case errors.As(err, &one):
		checkOne(t, path, one)
	default:
		t.Fatalf("error %T is not a *config.Error: %v", err, err)
	}
}

func checkOne(t *testing.T, path string, e *config.Error) {
	t.Helper()
	if e == nil {
		t.Fatal("nil *config.Error")
	}
	if e.File != path {
		t.Fatalf("error names file %q, want %q: %v", e.File, path, e)
	}
	if strings.TrimSpace(e.Msg) == "" {
		t.Fatalf("error says nothing: %#v", e)
	}
	if !strings.HasPrefix(e.Error(), path+": ") {
		t.Fatalf("error does not start with the file: %v", e)
	}
	// Items and fields are named as the file names them, never after Go types.
	if strings.Contains(e.Item, "config.") || strings.Contains(e.Field, "config.") || strings.Contains(e.Item, "mapstructure") {
		t.Fatalf("error names a Go type: item %q field %q", e.Item, e.Field)
	}
}

// checkLoaded: what a configuration that loaded promises.
func checkLoaded(t *testing.T, c *config.Config) {
	t.Helper()
	if c.Vault.Mount == "" || c.Vault.StatePath == "" {
		t.Fatalf("vault mount %q, state path %q: defaults not applied", c.Vault.Mount, c.Vault.StatePath)
	}
	if c.Rotation.Concurrency < 1 || c.Rotation.Timeout <= 0 || c.Rotation.Retries == nil || *c.Rotation.Retries < 0 {
		t.Fatalf("rotation settings out of range: %+v", c.Rotation)
	}
	if c.Serve.AuditInterval <= 0 || c.Serve.LeaseTTL <= 0 {
		t.Fatalf("serve settings out of range: %+v", c.Serve)
	}
	keys := map[string]bool{}
	for _, k := range c.Keys {
		if k.ID == "" || keys[k.ID] || k.VaultPath == "" || k.Provider == "" {
			t.Fatalf("key %+v: missing or duplicate fields passed validation", k)
		}
		if k.RotateEvery < 0 {
			t.Fatalf("key %s: negative rotate_every", k.ID)
		}
		keys[k.ID] = true
	}
	ids := map[string]bool{}
	for _, in := range c.Integrations {
		if in.ID == "" || ids[in.ID] || in.Type == "" {
			t.Fatalf("integration %+v: missing or duplicate fields passed validation", in)
		}
		if !keys[in.Key] {
			t.Fatalf("integration %s names unknown key %q", in.ID, in.Key)
		}
		ids[in.ID] = true
		if got := c.IntegrationsOf(in.Key); len(got) == 0 {
			t.Fatalf("IntegrationsOf(%q) lost %s", in.Key, in.ID)
		}
	}
	for _, d := range c.Serve.RemindBefore {
		if d < 0 {
			t.Fatalf("negative remind_before %v", d)
		}
	}
}
