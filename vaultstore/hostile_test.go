package vaultstore

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/internal/hostile"
	"github.com/rekey-dev/rekey/internal/leakcheck"
	"github.com/rekey-dev/rekey/internal/vaulttest"
	"github.com/rekey-dev/rekey/records"
	"github.com/rekey-dev/rekey/secret"
)

var vaultWords = map[hostile.Mode]string{
	hostile.BadStatus:        "malformed response",
	hostile.BadHeader:        "malformed response",
	hostile.BadLocation:      "malformed redirect",
	hostile.RedirectToSecret: "DNS",
}

// A proxy at VAULT_ADDR that answers with bytes quoting the request: the
// write of a new key (key and token in the request), a read and a record
// write fail with errors that hold neither, nor any byte the proxy chose.
func TestHostileVaultAddrQuotesNothingBack(t *testing.T) {
	env := vaulttest.New(t)
	key := secret.New("new-key-7d3f9a1c5e2b4d6f8a0c1e3f")
	for _, mode := range hostile.Transport {
		t.Run(string(mode), func(t *testing.T) {
			onWrite := hostile.New(t, mode, hostile.Options{Upstream: env.Addr, Hostile: func(r *http.Request) bool {
				return r.Method == http.MethodPut || r.Method == http.MethodPost
			}})
			everything := hostile.New(t, mode, hostile.Options{})
			ctx := context.Background()
			s := New(vaulttest.NewClient(t, onWrite.URL, env.Token), env.Mount, "rekey")
			_, writeErr := s.WriteKey(ctx, "an/main", key, 0, map[string]string{"managed-by": "rekey"})
			recErr := s.SaveRotation(ctx, &records.Rotation{ID: "r1", KeyID: "k"})
			all := New(vaulttest.NewClient(t, everything.URL, env.Token), env.Mount, "rekey")
			_, readErr := all.ReadKey(ctx, "an/main")
			_, _, versionsErr := all.Versions(ctx, "an/main")
			_, listErr := all.ListRecords(ctx, "keys")
			for name, err := range map[string]error{"write key": writeErr, "write record": recErr, "read": readErr, "versions": versionsErr, "list": listErr} {
				if err == nil || !strings.Contains(err.Error(), vaultWords[mode]) {
					t.Errorf("%s: %v, want an error saying %q", name, err, vaultWords[mode])
				}
				if failure.Class(err) == "unclassified" {
					t.Errorf("%s: %v is not classified", name, err)
				}
				if err != nil {
					leakcheck.Assert(t, name+" error", []byte(err.Error()), key.Reveal(), env.Token, hostile.Canary)
				}
			}
		})
	}
}

// A proxy at VAULT_ADDR answering the key's write in Vault's own JSON
// shape, its "errors" quoting the request: the classifier keeps Vault's
// messages (it cannot tell this answer from Vault's), and the second wall,
// the redactor every text passes before it is printed, posted or
// recorded, takes the key and the token out of them.
func TestVaultShapedEchoIsCaughtByTheRedactor(t *testing.T) {
	env := vaulttest.New(t)
	key := secret.New("new-key-7d3f9a1c5e2b4d6f8a0c1e3f")
	srv := hostile.New(t, hostile.VaultJSON, hostile.Options{Upstream: env.Addr, Hostile: func(r *http.Request) bool {
		return r.Method == http.MethodPut
	}})
	s := New(vaulttest.NewClient(t, srv.URL, env.Token), env.Mount, "rekey")
	_, err := s.WriteKey(context.Background(), "an/main", key, 0, nil)
	if !errors.Is(err, failure.ErrTransient) || !strings.Contains(err.Error(), "status 500: "+hostile.Canary) {
		t.Fatalf("WriteKey: %v; want a transient status 500 with Vault's (here the proxy's) message", err)
	}
	red := secret.NewRedactor()
	red.Add(env.Token)
	red.AddKey(key)
	got := red.Redact(err.Error())
	leakcheck.Assert(t, "redacted error", []byte(got), key.Reveal(), env.Token)
	if !strings.Contains(got, "X-Vault-Token: "+secret.Marker) {
		t.Fatalf("redacted error %q", got)
	}
}
