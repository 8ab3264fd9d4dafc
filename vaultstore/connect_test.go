package vaultstore

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"

	"github.com/rekey-dev/rekey/config"
	"github.com/rekey-dev/rekey/internal/vaulttest"
)

// TestKeepLoggedInWithAppRole logs in with AppRole as rekey serve does,
// with tokens that live 2s and may be renewed up to 4s, and checks the
// client still holds a working token well after both have run out.
func TestKeepLoggedInWithAppRole(t *testing.T) {
	env := vaulttest.New(t)
	root := env.Client
	path := "approle-" + env.Mount
	if err := root.Sys().EnableAuthWithOptions(path, &vault.EnableAuthOptions{Type: "approle"}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { root.Sys().DisableAuth(path) })
	if _, err := root.Logical().Write("auth/"+path+"/role/rekey", map[string]any{
		"token_ttl": "2s", "token_max_ttl": "4s", "token_policies": "default",
	}); err != nil {
		t.Fatal(err)
	}
	rid, err := root.Logical().Read("auth/" + path + "/role/rekey/role-id")
	if err != nil {
		t.Fatal(err)
	}
	sid, err := root.Logical().Write("auth/"+path+"/role/rekey/secret-id", nil)
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{
		"VAULT_ADDR": env.Addr,
		"ROLE_ID":    rid.Data["role_id"].(string),
		"SECRET_ID":  sid.Data["secret_id"].(string),
	}
	cfg := config.Vault{Auth: &config.VaultAuth{Method: "approle", Mount: path, RoleIDEnv: "ROLE_ID", SecretIDEnv: "SECRET_ID"}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c, err := Connect(ctx, cfg, func(k string) string { return vars[k] })
	if err != nil {
		t.Fatal(err)
	}
	first := c.Token()
	var logs bytes.Buffer
	done := make(chan struct{})
	var mu sync.Mutex
	var told []string
	go func() {
		KeepLoggedIn(ctx, c, cfg, func(k string) string { return vars[k] }, slog.New(slog.NewTextHandler(&logs, nil)), func(tok string) {
			mu.Lock()
			defer mu.Unlock()
			told = append(told, tok)
		})
		close(done)
	}()

	// Past the first token's max TTL, the client must still be logged in.
	deadline := time.Now().Add(7 * time.Second)
	for time.Now().Before(deadline) {
		time.Sleep(500 * time.Millisecond)
		if _, err := c.Auth().Token().LookupSelf(); err != nil {
			t.Fatalf("token stopped working after %v: %v\nlogs:\n%s", 7*time.Second-time.Until(deadline), err, logs.String())
		}
	}
	if c.Token() == first {
		t.Fatal("still the first token after its max TTL: no new login happened")
	}
	mu.Lock()
	if len(told) == 0 || told[len(told)-1] != c.Token() {
		t.Errorf("the new token was not given to onToken (the redactor): told %d tokens", len(told))
	}
	mu.Unlock()
	if !strings.Contains(logs.String(), "logged in again") {
		t.Fatalf("no re-login logged:\n%s", logs.String())
	}
	for _, secret := range []string{vars["SECRET_ID"], first, c.Token()} {
		if strings.Contains(logs.String(), secret) {
			t.Fatalf("a secret is in the logs:\n%s", logs.String())
		}
	}
	cancel()
	<-done
}
