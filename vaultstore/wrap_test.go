package vaultstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"

	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/internal/vaulttest"
	"github.com/rekey-dev/rekey/records"
)

// A code opens once, with no other token; Vault says the same of a used
// code, an expired one and one never issued; the accessor follows the
// code without opening it.
func TestWrapOpensOnce(t *testing.T) {
	env := vaulttest.New(t)
	s := New(env.Client, env.Mount, "rekey")
	ctx := context.Background()
	data := map[string]string{"api_key": "the-key-to-hand-off-0123456789", "integration": "callhub"}

	token, accessor, created, err := s.Wrap(ctx, data, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(token, "hvs.") || accessor == "" || time.Since(created) > time.Minute || time.Until(created) > time.Minute {
		t.Fatalf("Wrap = token %d bytes, accessor %q, created %v", len(token), accessor, created)
	}
	at, ttl, err := s.LookupToken(ctx, token)
	if err != nil || ttl != time.Minute || !at.Equal(created) {
		t.Fatalf("LookupToken = %v, %v, %v; want %v, 1m", at, ttl, err, created)
	}
	exp, err := s.LookupAccessor(ctx, accessor)
	if err != nil || exp.Sub(created) < 59*time.Second || exp.Sub(created) > 61*time.Second {
		t.Fatalf("LookupAccessor = %v, %v; want about %v", exp, err, created.Add(time.Minute))
	}
	// Looking it up opened nothing.
	got, err := s.Unwrap(ctx, token)
	if err != nil || got["api_key"] != data["api_key"] || got["integration"] != "callhub" {
		t.Fatalf("Unwrap = %v, %v", len(got), err)
	}
	for what, err := range map[string]error{
		"a second Unwrap":          second(s.Unwrap(ctx, token)),
		"LookupToken once used":    third(s.LookupToken(ctx, token)),
		"LookupAccessor once used": second(s.LookupAccessor(ctx, accessor)),
		"Unwrap of a made-up code": second(s.Unwrap(ctx, "hvs.CAESIMadeUpMadeUpMadeUpMadeUpMadeUpMadeUp")),
		"Unwrap of white space":    second(s.Unwrap(ctx, " \t")),
		"Unwrap of a control byte": second(s.Unwrap(ctx, "hvs.\x01")),
	} {
		if !errors.Is(err, failure.ErrNotFound) {
			t.Errorf("%s: %v, want failure.ErrNotFound", what, err)
		}
		if err != nil && strings.Contains(err.Error(), token) {
			t.Errorf("%s: the error holds the code", what)
		}
	}
}

func second[T any](_ T, err error) error        { return err }
func third[T, U any](_ T, _ U, err error) error { return err }

// A code's TTL is Vault's: past it, the code opens nothing.
func TestWrapExpires(t *testing.T) {
	env := vaulttest.New(t)
	s := New(env.Client, env.Mount, "rekey")
	ctx := context.Background()
	token, accessor, _, err := s.Wrap(ctx, map[string]string{"api_key": "short-lived-key-0123456789"}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	if _, err := s.Unwrap(ctx, token); !errors.Is(err, failure.ErrNotFound) {
		t.Fatalf("Unwrap after the ttl: %v, want failure.ErrNotFound", err)
	}
	if _, err := s.LookupAccessor(ctx, accessor); !errors.Is(err, failure.ErrNotFound) {
		t.Fatalf("LookupAccessor after the ttl: %v, want failure.ErrNotFound", err)
	}
	if _, _, _, err := s.Wrap(ctx, nil, 500*time.Millisecond); !errors.Is(err, failure.ErrInvalid) {
		t.Fatalf("Wrap with a ttl under a second: %v, want failure.ErrInvalid", err)
	}
}

// The Opener sends no token but the code: a client whose own token may do
// nothing at all still opens a code, and cannot make one.
func TestOpenerNeedsNoToken(t *testing.T) {
	env := vaulttest.New(t)
	s := New(env.Client, env.Mount, "rekey")
	ctx := context.Background()
	token, _, _, err := s.Wrap(ctx, map[string]string{"api_key": "opened-without-a-token-0123"}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	// A token with no policy at all, not even Vault's default (which
	// allows sys/wrapping/unwrap).
	sec, err := env.Client.Auth().Token().Create(&vault.TokenCreateRequest{NoDefaultPolicy: true, Policies: []string{"nothing-" + env.Mount}, TTL: "1h"})
	if err != nil {
		t.Fatal(err)
	}
	powerless := vaulttest.NewClient(t, env.Addr, sec.Auth.ClientToken)
	o := NewOpener(powerless)
	if _, _, err := o.LookupToken(ctx, token); err != nil {
		t.Fatalf("LookupToken without a token: %v", err)
	}
	got, err := o.Unwrap(ctx, token)
	if err != nil || got["api_key"] != "opened-without-a-token-0123" {
		t.Fatalf("Unwrap without a token: %v", err)
	}
	if powerless.Token() != sec.Auth.ClientToken {
		t.Fatal("the Opener changed its base client's token")
	}
	if _, _, _, err := o.Wrap(ctx, nil, time.Minute); !errors.Is(err, failure.ErrUnauthorized) {
		t.Fatalf("Opener.Wrap: %v, want failure.ErrUnauthorized", err)
	}
}

// The hand-off records: one salt, made once even by racing stores; one
// record per code, created once and updated with check-and-set.
func TestHandoffRecords(t *testing.T) {
	env := vaulttest.New(t)
	env.Configure(t, map[string]any{"cas_required": true})
	ctx := context.Background()
	salts := make([][]byte, 4)
	var wg sync.WaitGroup
	for i := range salts {
		wg.Go(func() {
			s := New(env.Client, env.Mount, "rekey")
			var err error
			if salts[i], err = s.HandoffSalt(ctx); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	for i := range salts {
		if len(salts[i]) != records.SaltLen || !bytes.Equal(salts[i], salts[0]) {
			t.Fatalf("salt %d differs or is short (%d bytes)", i, len(salts[i]))
		}
	}

	s := New(env.Client, env.Mount, "rekey")
	hash := strings.Repeat("ab", 32)
	h := &records.Handoff{CodeHash: hash, Accessor: "acc", KeyID: "an", Integration: "callhub", Created: time.Now().UTC()}
	if err := s.CreateHandoff(ctx, h); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateHandoff(ctx, h); !errors.Is(err, failure.ErrConflict) {
		t.Fatalf("second CreateHandoff: %v, want failure.ErrConflict", err)
	}
	var wg2 sync.WaitGroup
	for i := range 5 {
		wg2.Go(func() {
			other := New(env.Client, env.Mount, "rekey")
			_, err := other.UpdateHandoff(ctx, hash, func(r *records.Handoff) bool {
				r.Tries = append(r.Tries, records.HandoffTry{Via: fmt.Sprint(i)})
				return true
			})
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg2.Wait()
	got, err := s.Handoff(ctx, hash)
	if err != nil || len(got.Tries) != 5 || got.Integration != "callhub" {
		t.Fatalf("after 5 racing updates: %+v, %v", got, err)
	}
	if _, err := s.Handoff(ctx, strings.Repeat("cd", 32)); !errors.Is(err, failure.ErrNotFound) {
		t.Fatalf("a record never made: %v, want failure.ErrNotFound", err)
	}
	if _, err := s.Handoff(ctx, "../keys/an/state"); !errors.Is(err, failure.ErrNotFound) {
		t.Fatalf("a path that is no hash: %v, want failure.ErrNotFound", err)
	}
}

// The preflight proves the hand-off writes from what Vault says the token
// may do: a token without sys/wrapping/wrap (here without Vault's default
// policy, which grants it) is told so, and cannot wrap.
func TestHandoffWrites(t *testing.T) {
	env := vaulttest.New(t)
	m := env.Mount
	base := fmt.Sprintf(`
path "%[1]s/data/rekey/*" { capabilities = ["create", "read", "update"] }
path "sys/capabilities-self" { capabilities = ["update"] }
`, m)
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		extra  string
		lacks  string
		wrapOK bool
	}{
		{"no wrap", "", "sys/wrapping/wrap: update", false},
		{"wrap", `path "sys/wrapping/wrap" { capabilities = ["update"] }`, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := "handoff-" + m + "-" + strings.ReplaceAll(tc.name, " ", "-")
			if err := env.Client.Sys().PutPolicy(name, base+tc.extra); err != nil {
				t.Fatal(err)
			}
			sec, err := env.Client.Auth().Token().Create(&vault.TokenCreateRequest{NoDefaultPolicy: true, Policies: []string{name}, TTL: "1h"})
			if err != nil {
				t.Fatal(err)
			}
			s := New(vaulttest.NewClient(t, env.Addr, sec.Auth.ClientToken), m, "rekey")
			writes := s.HandoffWrites()
			if err := s.CheckWrites(ctx, writes); err != nil {
				t.Fatal(err)
			}
			var denied []string
			for _, w := range writes {
				if !w.OK() {
					denied = append(denied, w.Path+": "+strings.Join(w.Lacks, ","))
				}
			}
			if strings.Join(denied, ";") != tc.lacks {
				t.Fatalf("denied = %v, want %q", denied, tc.lacks)
			}
			_, _, _, err = s.Wrap(ctx, map[string]string{"x": "y"}, time.Minute)
			if (err == nil) != tc.wrapOK {
				t.Fatalf("Wrap: %v, want success %v", err, tc.wrapOK)
			}
			if err != nil && !errors.Is(err, failure.ErrUnauthorized) {
				t.Fatalf("Wrap refused: %v, want failure.ErrUnauthorized", err)
			}
		})
	}
}
