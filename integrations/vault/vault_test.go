package vault_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/rekey-dev/rekey/config"
	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/integrations"
	"github.com/rekey-dev/rekey/integrations/vault"
	"github.com/rekey-dev/rekey/internal/faultproxy"
	"github.com/rekey-dev/rekey/internal/leakcheck"
	"github.com/rekey-dev/rekey/internal/vaulttest"
	"github.com/rekey-dev/rekey/secret"
)

const (
	key1  = "an-0f1e2d3c4b5a69788796a5b4c3d2e1f0"
	key2  = "an-ffeeddccbbaa99887766554433221100"
	path  = "reporting/config"
	field = "ACTION_NETWORK_KEY"
)

type fixture struct {
	vault *vaulttest.Env
	proxy *faultproxy.Proxy
	env   map[string]string
	cfg   config.Vault
	logs  bytes.Buffer
}

func newFixture(t *testing.T) *fixture {
	v := vaulttest.New(t)
	p := faultproxy.New(t, v.Addr)
	p.Secret = []string{"X-Vault-Token"}
	p.Redact = redactField
	return &fixture{vault: v, proxy: p, env: map[string]string{"VAULT_ADDR": p.URL, "VAULT_TOKEN": v.Token}}
}

// redactField takes the one slot meant to carry the key out of a KV v2
// write, so the proxy log shows anything else that carries it.
func redactField(body []byte) []byte {
	var m map[string]any
	if json.Unmarshal(body, &m) != nil {
		return body
	}
	if d, ok := m["data"].(map[string]any); ok {
		if _, ok := d[field]; ok {
			d[field] = "<key>"
		}
	}
	b, _ := json.Marshal(m)
	return b
}

func (f *fixture) settings(change map[string]any) map[string]any {
	s := map[string]any{"mount": f.vault.Mount, "path": path, "field": field}
	for k, v := range change {
		if v == nil {
			delete(s, k)
		} else {
			s[k] = v
		}
	}
	return s
}

func (f *fixture) try(settings map[string]any) (integrations.Integration, error) {
	item := config.Integration{ID: "reporting", Key: "actionnetwork-main", Type: vault.Type, Settings: settings}
	cfg := &config.Config{File: "rekey.yaml", Vault: f.cfg, Integrations: []config.Integration{item}}
	return vault.New(integrations.Host{
		Config: cfg,
		Logger: slog.New(slog.NewTextHandler(&f.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Getenv: func(k string) string { return f.env[k] },
	}, item)
}

func (f *fixture) build(t *testing.T, change map[string]any) integrations.Integration {
	t.Helper()
	in, err := f.try(f.settings(change))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return in
}

func (f *fixture) put(t *testing.T, data map[string]any) {
	t.Helper()
	if _, err := f.vault.Client.KVv2(f.vault.Mount).Put(context.Background(), path, data); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) get(t *testing.T) *vaultapi.KVSecret {
	t.Helper()
	s, err := f.vault.Client.KVv2(f.vault.Mount).Get(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (f *fixture) noLeaks(t *testing.T, errs ...error) {
	t.Helper()
	var b bytes.Buffer
	b.Write(f.proxy.Log())
	b.Write(f.logs.Bytes())
	for _, err := range errs {
		if err != nil {
			fmt.Fprintf(&b, "%v\n", err)
		}
	}
	leakcheck.Assert(t, "proxy log, rekey log and errors", b.Bytes(), key1, key2)
}

func apply(in integrations.Integration, k string) (integrations.ApplyResult, error) {
	return in.Apply(context.Background(), integrations.ApplyRequest{Key: secret.New(k), RotationID: "r1"})
}

func (f *fixture) dataPath() string { return "/v1/" + f.vault.Mount + "/data/" + path }

func TestConfigErrors(t *testing.T) {
	f := &fixture{env: map[string]string{"VAULT_ADDR": "http://127.0.0.1:8200"}}
	cases := []struct {
		name   string
		change map[string]any
		env    map[string]string
		field  string
	}{
		{"no mount", map[string]any{"mount": nil}, nil, "mount"},
		{"no path", map[string]any{"path": nil}, nil, "path"},
		{"data in path", map[string]any{"path": "data/reporting"}, nil, "path"},
		{"dot segment", map[string]any{"path": "a/../b"}, nil, "path"},
		{"no field", map[string]any{"field": nil}, nil, "field"},
		{"no address anywhere", nil, map[string]string{}, "address"},
		{"bad address", map[string]any{"address": "vault.example:8200"}, nil, "address"},
		{"another Vault without its own token", map[string]any{"address": "https://vault.reporting.example:8200"}, nil, "token_env"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.env != nil {
				f.env = c.env
			}
			s := map[string]any{"mount": "apps", "path": path, "field": field}
			for k, v := range c.change {
				if v == nil {
					delete(s, k)
				} else {
					s[k] = v
				}
			}
			_, err := f.try(s)
			var ce *config.Error
			if !errors.As(err, &ce) || ce.Field != c.field {
				t.Fatalf("New: %v, want a *config.Error about %s", err, c.field)
			}
		})
	}
}

func TestApplyChangesOnlyItsField(t *testing.T) {
	f := newFixture(t)
	f.put(t, map[string]any{field: key2, "DATABASE_URL": "postgres://reporting", "workers": json.Number("4")})
	in := f.build(t, nil)

	res, err := apply(in, key1)
	if err != nil || !res.Changed {
		t.Fatalf("Apply = %+v, %v", res, err)
	}
	s := f.get(t)
	if s.Data[field] != key1 || s.Data["DATABASE_URL"] != "postgres://reporting" || fmt.Sprint(s.Data["workers"]) != "4" || len(s.Data) != 3 {
		t.Fatalf("after Apply the secret has fields %v (version %d)", keys(s.Data), s.VersionMetadata.Version)
	}
	if s.VersionMetadata.Version != 2 || !res.At.Equal(s.VersionMetadata.CreatedTime) {
		t.Fatalf("version %d created %v; Apply said %v", s.VersionMetadata.Version, s.VersionMetadata.CreatedTime, res.At)
	}

	res, err = apply(in, key1)
	if err != nil || res.Changed || f.get(t).VersionMetadata.Version != 2 {
		t.Fatalf("second Apply = %+v, %v; version %d: want nothing written", res, err, f.get(t).VersionMetadata.Version)
	}
	got, err := in.(integrations.Reader).Read(context.Background())
	if err != nil || !got.Equal(secret.New(key1)) {
		t.Fatalf("Read = %v, %v", got, err)
	}
	f.noLeaks(t, err)
}

func keys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestApplyCreatesAndRecreates(t *testing.T) {
	f := newFixture(t)
	in := f.build(t, nil)
	if _, err := in.(integrations.Reader).Read(context.Background()); !errors.Is(err, failure.ErrNotFound) {
		t.Fatalf("Read of a missing secret: %v, want ErrNotFound", err)
	}
	if _, err := apply(in, key1); err != nil {
		t.Fatalf("Apply to a missing secret: %v", err)
	}
	if s := f.get(t); s.Data[field] != key1 || s.VersionMetadata.Version != 1 {
		t.Fatalf("created version %d with fields %v", s.VersionMetadata.Version, keys(s.Data))
	}
	// Soft-delete the latest version: the next write must check-and-set
	// on that version number.
	if err := f.vault.Client.KVv2(f.vault.Mount).Delete(context.Background(), path); err != nil {
		t.Fatal(err)
	}
	if _, err := in.(integrations.Reader).Read(context.Background()); !errors.Is(err, failure.ErrNotFound) {
		t.Fatalf("Read of a deleted version: %v, want ErrNotFound", err)
	}
	if _, err := apply(in, key2); err != nil {
		t.Fatalf("Apply over a deleted version: %v", err)
	}
	if s := f.get(t); s.Data[field] != key2 || s.VersionMetadata.Version != 2 {
		t.Fatalf("after delete: version %d", s.VersionMetadata.Version)
	}
}

func TestCheckAndSetRace(t *testing.T) {
	cases := []struct {
		name      string
		intruders int
		wantErr   error
	}{
		{"one intruder is outlasted", 1, nil},
		{"two intruders are outlasted", vault.Attempts - 1, nil},
		{"an intruder at every attempt is a conflict", vault.Attempts, failure.ErrConflict},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			f.put(t, map[string]any{field: key2})
			in := f.build(t, nil)
			writes := func(r *http.Request) bool {
				return (r.Method == http.MethodPut || r.Method == http.MethodPost) && r.URL.Path == f.dataPath()
			}
			f.proxy.Only(writes)
			for i := range c.intruders {
				// Someone else writes between our read and our write.
				f.proxy.Before(func(*http.Request) {
					f.put(t, map[string]any{field: key2, "intruder": fmt.Sprint(i)})
				})
			}
			_, err := apply(in, key1)
			if !errors.Is(err, c.wantErr) || (c.wantErr != nil && failure.IsTransient(err)) {
				t.Fatalf("Apply: %v, want %v", err, c.wantErr)
			}
			attempts := bytes.Count(f.proxy.Log(), []byte("PUT "+f.dataPath()+" "))
			if want := min(c.intruders+1, vault.Attempts); attempts != want {
				t.Fatalf("%d writes sent, want %d", attempts, want)
			}
			s := f.get(t)
			if s.Data["intruder"] != fmt.Sprint(c.intruders-1) {
				t.Fatalf("the intruder's last write was lost: %v", keys(s.Data))
			}
			if (s.Data[field] == key1) != (c.wantErr == nil) {
				t.Fatalf("field holds %v", secret.New(fmt.Sprint(s.Data[field])))
			}
			f.noLeaks(t, err)
		})
	}
}

func TestFailuresAreClassified(t *testing.T) {
	cases := []struct {
		name      string
		prepare   func(t *testing.T, f *fixture) map[string]any
		class     error
		transient bool
		says      string
	}{
		{"read-only token", func(t *testing.T, f *fixture) map[string]any {
			f.env["VAULT_TOKEN"] = f.vault.TokenWithPolicy(t, f.vault.ReadOnlyPolicy())
			return nil
		}, failure.ErrUnauthorized, false, "permission denied"},
		{"token for another path", func(t *testing.T, f *fixture) map[string]any {
			f.env["APP_TOKEN"] = f.vault.TokenWithPolicy(t, `path "elsewhere/*" { capabilities = ["read"] }`)
			return map[string]any{"token_env": "APP_TOKEN"}
		}, failure.ErrUnauthorized, false, "$APP_TOKEN"},
		{"token unset", func(t *testing.T, f *fixture) map[string]any {
			delete(f.env, "VAULT_TOKEN")
			return nil
		}, failure.ErrUnauthorized, false, "$VAULT_TOKEN is empty or not set"},
		{"sealed", func(t *testing.T, f *fixture) map[string]any {
			f.proxy.FailNext(faultproxy.Failure{Status: 503, Body: `{"errors":["Vault is sealed"]}`})
			return nil
		}, failure.ErrTransient, true, "status 503: Vault is sealed"},
		{"standby not caught up", func(t *testing.T, f *fixture) map[string]any {
			f.proxy.FailNext(faultproxy.Failure{Status: 412, Body: `{"errors":["required index state not present"]}`})
			return nil
		}, failure.ErrTransient, true, "status 412: required index state not present"},
		{"a proxy's error page", func(t *testing.T, f *fixture) map[string]any {
			f.proxy.FailNext(faultproxy.Failure{Status: 502, Header: http.Header{"Content-Type": {"text/html"}},
				Body: "<html>bad gateway: proxy-page-quote</html>"})
			return nil
		}, failure.ErrTransient, true, "status 502: an answer that is not Vault's"},
		{"not a KV v2 mount", func(t *testing.T, f *fixture) map[string]any {
			if err := f.vault.Client.Sys().Mount(f.vault.Mount+"-v1", &vaultapi.MountInput{Type: "kv", Options: map[string]string{"version": "1"}}); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { f.vault.Client.Sys().Unmount(f.vault.Mount + "-v1") })
			return map[string]any{"mount": f.vault.Mount + "-v1"}
		}, failure.ErrInvalid, false, "is not a KV version 2 mount"},
		{"nothing listening", func(t *testing.T, f *fixture) map[string]any {
			return map[string]any{"address": "http://127.0.0.1:1", "token_env": "VAULT_TOKEN"}
		}, failure.ErrTransient, true, "connection refused"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			f.put(t, map[string]any{field: key2})
			in := f.build(t, c.prepare(t, f))
			_, err := apply(in, key1)
			if !errors.Is(err, c.class) || failure.IsTransient(err) != c.transient || !strings.Contains(err.Error(), c.says) {
				t.Fatalf("Apply: %v; want %v (transient %v) saying %q", err, c.class, c.transient, c.says)
			}
			// Vault's own JSON messages are kept (one classifier, package
			// vaulterr, for this type and rekey's store); a body that is not
			// Vault's JSON never is.
			if strings.Contains(err.Error(), "proxy-page-quote") {
				t.Fatalf("error %q carries a body that is not Vault's", err)
			}
			if s := f.get(t); s.Data[field] != key2 {
				t.Fatal("a failed Apply changed the field")
			}
			f.noLeaks(t, err)
		})
	}
}

func TestClientDoesNotRetry(t *testing.T) {
	f := newFixture(t)
	in := f.build(t, nil)
	f.proxy.FailNext(faultproxy.Failure{Status: 500, Body: `{"errors":["internal error"]}`})
	if _, err := apply(in, key1); !failure.IsTransient(err) {
		t.Fatalf("Apply: %v, want transient", err)
	}
	if n := bytes.Count(f.proxy.Log(), []byte("\n  X-Vault-Token")); n != 1 {
		t.Fatalf("the client sent %d requests, want 1 (no retries of its own):\n%s", n, f.proxy.Log())
	}
}

func TestAddressAndNamespaceDefaults(t *testing.T) {
	f := newFixture(t)
	f.cfg = config.Vault{Address: f.proxy.URL, Namespace: "team-a"}
	f.env["VAULT_ADDR"] = "http://127.0.0.1:1" // the configuration's address wins
	in := f.build(t, nil)
	_, err := in.(integrations.Reader).Read(context.Background())
	// Vault's open-source core has no namespaces: a request in team-a is
	// refused, which shows the header was sent to the configured address.
	if err == nil {
		t.Log("vaultdev accepted namespace team-a")
	}
	if !bytes.Contains(f.proxy.Log(), []byte("X-Vault-Namespace: team-a")) {
		t.Fatalf("namespace header not sent to the configured address:\n%s", f.proxy.Log())
	}

	// An explicit address does not inherit rekey's namespace.
	g := newFixture(t)
	g.cfg = config.Vault{Address: "http://127.0.0.1:1", Namespace: "team-a"}
	in = g.build(t, map[string]any{"address": g.proxy.URL, "token_env": "VAULT_TOKEN"})
	if _, err := in.(integrations.Reader).Read(context.Background()); !errors.Is(err, failure.ErrNotFound) {
		t.Fatalf("Read: %v", err)
	}
	if bytes.Contains(g.proxy.Log(), []byte("X-Vault-Namespace")) {
		t.Fatal("namespace sent to an explicitly addressed Vault")
	}
}

func TestCancelledWhileVaultHangs(t *testing.T) {
	f := newFixture(t)
	in := f.build(t, nil)
	f.proxy.HangNext()
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	done := make(chan error, 1)
	go func() { _, err := in.Apply(ctx, integrations.ApplyRequest{Key: secret.New(key1)}); done <- err }()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) || failure.IsTransient(err) {
			t.Fatalf("Apply: %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Apply did not return after its context was cancelled")
	}
}
