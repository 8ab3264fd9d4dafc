package vault_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/integrations"
	"github.com/rekey-dev/rekey/internal/hostile"
	"github.com/rekey-dev/rekey/internal/leakcheck"
	"github.com/rekey-dev/rekey/internal/vaulttest"
	"github.com/rekey-dev/rekey/secret"
)

// vaultWords is what each transport failure is called when Vault (or a
// proxy in its place) answers it. The Vault client follows one redirect
// by itself, to any host: the 307 to <secret>.invalid ends in a DNS
// failure, which must not name the host either.
var vaultWords = map[hostile.Mode]string{
	hostile.BadStatus:        "malformed response",
	hostile.BadHeader:        "malformed response",
	hostile.BadLocation:      "malformed redirect",
	hostile.RedirectToSecret: "DNS",
}

// A proxy in front of the target Vault that answers the write (which
// carries the key and the token) with bytes quoting it: the error and
// the log hold neither, nor any byte the proxy chose.
func TestHostileProxyQuotesNothingBack(t *testing.T) {
	v := vaulttest.New(t)
	for _, mode := range hostile.Transport {
		t.Run(string(mode), func(t *testing.T) {
			onWrite := hostile.New(t, mode, hostile.Options{Upstream: v.Addr, Hostile: func(r *http.Request) bool {
				return r.Method == http.MethodPut || r.Method == http.MethodPost
			}})
			everything := hostile.New(t, mode, hostile.Options{})
			f := &fixture{vault: v, env: map[string]string{"VAULT_ADDR": onWrite.URL, "VAULT_TOKEN": v.Token}}
			in := f.build(t, nil)
			_, applyErr := in.Apply(context.Background(), integrations.ApplyRequest{Key: secret.New(key1), RotationID: "r1"})
			if onWrite.Hostile() == 0 {
				t.Fatalf("the write never reached the proxy: %v", applyErr)
			}
			f.env["VAULT_ADDR"] = everything.URL
			_, readErr := f.build(t, nil).(integrations.Reader).Read(context.Background())
			for name, err := range map[string]error{"apply": applyErr, "read": readErr} {
				if err == nil || !strings.Contains(err.Error(), vaultWords[mode]) {
					t.Errorf("%s: %v, want an error saying %q", name, err, vaultWords[mode])
				}
				if failure.Class(err) == "unclassified" {
					t.Errorf("%s: %v is not classified", name, err)
				}
				if err != nil {
					leakcheck.Assert(t, name+" error", []byte(err.Error()), key1, v.Token, hostile.Canary)
				}
			}
			leakcheck.Assert(t, "log", f.logs.Bytes(), key1, v.Token, hostile.Canary)
		})
	}
}

// The target Vault (or a proxy) answers the write in Vault's JSON shape,
// its "errors" quoting the request: the message is kept, as Vault's are
// (package vaulterr), and the redactor at every exit takes the key and the
// token out of it.
func TestVaultShapedEchoIsCaughtByTheRedactor(t *testing.T) {
	v := vaulttest.New(t)
	srv := hostile.New(t, hostile.VaultJSON, hostile.Options{Upstream: v.Addr, Hostile: func(r *http.Request) bool {
		return r.Method == http.MethodPut
	}})
	f := &fixture{vault: v, env: map[string]string{"VAULT_ADDR": srv.URL, "VAULT_TOKEN": v.Token}}
	_, err := f.build(t, nil).Apply(context.Background(), integrations.ApplyRequest{Key: secret.New(key1), RotationID: "r1"})
	if !errors.Is(err, failure.ErrTransient) || !strings.Contains(err.Error(), "status 500: "+hostile.Canary) {
		t.Fatalf("Apply: %v; want a transient status 500 with the answer's message", err)
	}
	red := secret.NewRedactor()
	red.Add(v.Token, key1)
	leakcheck.Assert(t, "redacted error", []byte(red.Redact(err.Error())), key1, v.Token)
}
