package conformance_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/rekey-dev/rekey/config"
	"github.com/rekey-dev/rekey/integrations"
	"github.com/rekey-dev/rekey/integrations/conformance"
	"github.com/rekey-dev/rekey/integrations/vault"
	"github.com/rekey-dev/rekey/internal/faultproxy"
	"github.com/rekey-dev/rekey/internal/vaulttest"
	"github.com/rekey-dev/rekey/secret"
)

const vaultField = "ACTION_NETWORK_KEY"

// TestVault runs the suite against the real Vault dev server, through a
// proxy that can make it fail or hang.
func TestVault(t *testing.T) {
	env := vaulttest.New(t)
	var n atomic.Int64
	conformance.Run(t, conformance.TargetFunc(func(ct conformance.T, initial secret.Key) (integrations.Integration, conformance.Probe) {
		p := &vaultProbe{env: env, path: fmt.Sprintf("apps/reporting-%d", n.Add(1))}
		p.proxy = faultproxy.New(t, env.Addr)
		p.proxy.Secret = []string{"X-Vault-Token"}
		p.proxy.Redact = redactVaultField
		dataPath := "/v1/" + env.Mount + "/data/" + p.path
		p.proxy.Only(func(r *http.Request) bool { return r.URL.Path == dataPath })
		if !initial.IsZero() {
			p.put(ct, initial)
		}
		settings := map[string]any{"mount": env.Mount, "path": p.path, "field": vaultField}
		item := config.Integration{ID: "reporting", Key: "actionnetwork-main", Type: vault.Type, Settings: settings}
		h, logs := host(item, envOf(map[string]string{"VAULT_ADDR": p.proxy.URL, "VAULT_TOKEN": env.Token}))
		p.logs = logs
		in, err := vault.New(h, item)
		if err != nil {
			ct.Fatalf("vault.New: %v", err)
		}
		return in, p
	}))
}

type vaultProbe struct {
	env   *vaulttest.Env
	path  string
	proxy *faultproxy.Proxy
	logs  *syncBuffer
}

func (p *vaultProbe) put(t conformance.T, k secret.Key) {
	// The application's other settings live beside the key.
	_, err := p.env.Client.KVv2(p.env.Mount).Put(context.Background(), p.path, map[string]any{vaultField: k.Reveal(), "DATABASE_URL": "postgres://reporting"})
	if err != nil {
		t.Fatalf("seed %s: %v", p.path, err)
	}
}

func (p *vaultProbe) Writes() int {
	return p.proxy.Count(http.MethodPut, "/v1/"+p.env.Mount+"/data/"+p.path)
}

func (p *vaultProbe) Holds(t conformance.T) secret.Key {
	s, err := p.env.Client.KVv2(p.env.Mount).Get(context.Background(), p.path)
	if err != nil {
		return secret.Key{}
	}
	if s.Data["DATABASE_URL"] != nil && s.Data["DATABASE_URL"] != "postgres://reporting" {
		t.Errorf("the secret's other field was changed")
	}
	v, _ := s.Data[vaultField].(string)
	return secret.New(v)
}

func (p *vaultProbe) SetHolds(t conformance.T, k secret.Key) bool { p.put(t, k); return true }

func (p *vaultProbe) FailNext(f conformance.Failure) bool {
	if f == conformance.Transient {
		p.proxy.FailNext(faultproxy.Failure{Status: 503, Body: `{"errors":["Vault is sealed"]}`})
	} else {
		p.proxy.FailNext(faultproxy.Failure{Status: 403, Body: `{"errors":["1 error occurred:\n\t* permission denied\n\n"]}`})
	}
	return true
}

func (p *vaultProbe) HangNext() bool { p.proxy.HangNext(); return true }

func (p *vaultProbe) Logs() []byte { return append(p.proxy.Log(), p.logs.Bytes()...) }

// redactVaultField takes the key's slot out of a KV v2 write.
func redactVaultField(body []byte) []byte {
	var m map[string]any
	if json.Unmarshal(body, &m) != nil {
		return body
	}
	if d, ok := m["data"].(map[string]any); ok {
		if _, ok := d[vaultField]; ok {
			d[vaultField] = "<key>"
		}
	}
	b, _ := json.Marshal(m)
	return b
}
