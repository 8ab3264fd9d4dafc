package rotation

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/rekey-dev/rekey/internal/leakcheck"
	"github.com/rekey-dev/rekey/records"
	"github.com/rekey-dev/rekey/secret"
	"github.com/rekey-dev/rekey/state"
)

// With Vault keeping two versions, a leaked key is pruned two rotations
// later. It is still refused when pasted again, and so is a superseded
// version Vault pruned; an integration that holds the pruned leaked key is
// compromised, one that holds the pruned superseded key stale.
func TestPrunedVersionsAreRefusedAndKnown(t *testing.T) {
	v1, v2 := secret.New("first-key-aaaaaaaaaaaa"), secret.New("second-key-bbbbbbbbbbb")
	v3, v4 := secret.New("third-key-cccccccccccc"), secret.New("fourth-key-dddddddddd")
	store, env := setup(t, v1)
	env.Configure(t, map[string]any{"max_versions": 2})
	ctx := context.Background()
	m := &memTarget{id: "m", held: v1}
	e := &Engine{Store: store}

	if _, err := e.Rotate(ctx, job(m), v2); err != nil {
		t.Fatal(err)
	}
	leak := job(m)
	leak.Reason, leak.Leak = "leak", true
	if _, err := e.Rotate(ctx, leak, v3); err != nil { // v2 leaked
		t.Fatal(err)
	}
	if _, err := e.Rotate(ctx, job(m), v4); err != nil {
		t.Fatal(err)
	}
	if vs, _, err := store.Versions(ctx, "an/main"); err != nil || len(vs) != 2 {
		t.Fatalf("Vault holds %d versions (%v), want 2", len(vs), err)
	}

	for _, c := range []struct {
		key  secret.Key
		want string
	}{{v2, "version 2"}, {v1, "version 1"}} {
		_, err := e.Rotate(ctx, job(m), c.key)
		var re *RefusedError
		if !errors.As(err, &re) || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "earlier version") {
			t.Fatalf("pasting a pruned %s: err = %v, want a refusal naming it", c.want, err)
		}
		leakcheck.Assert(t, "error", []byte(err.Error()), c.key.Reveal())
	}
	if cur, _ := store.ReadKey(ctx, "an/main"); cur.Version != 4 || !cur.Key.Equal(v4) {
		t.Fatalf("Vault at version %d after refused keys, want 4", cur.Version)
	}

	leaked, superseded := &memTarget{id: "leaked", held: v2}, &memTarget{id: "superseded", held: v1}
	a := e.Audit(ctx, job(leaked, superseded, m))
	got := map[string]state.State{}
	for _, r := range a.Integrations {
		got[r.ID] = r.State
	}
	if got["leaked"] != state.Compromised || got["superseded"] != state.Stale || got["m"] != state.Current {
		t.Fatalf("audit = %+v, want leaked compromised, superseded stale, m current", a.Integrations)
	}
	h, _, err := store.History(ctx, "an")
	if err != nil || len(h.Versions) != 4 {
		t.Fatalf("history = %+v, %v; want 4 versions", h, err)
	}
	want := []records.Standing{records.StandingSuperseded, records.StandingCompromised, records.StandingSuperseded, records.StandingCurrent}
	for i, v := range h.Versions {
		if v.Version != i+1 || v.Standing != want[i] || v.Length != v1.Len() && i == 0 {
			t.Fatalf("history version %d = %+v, want version %d %s", i, v, i+1, want[i])
		}
	}
	leakcheck.Assert(t, "vault records", env.Dump(t, "rekey/"), v1.Reveal(), v2.Reveal(), v3.Reveal(), v4.Reveal())
}

// The leaked key written back to Vault by hand is never called current:
// the integrations holding it are compromised.
func TestLeakedKeyStoredAgainIsNotCurrent(t *testing.T) {
	v1, v2 := secret.New("first-key-aaaaaaaaaaaa"), secret.New("second-key-bbbbbbbbbbb")
	store, _ := setup(t, v1)
	ctx := context.Background()
	m := &memTarget{id: "m", held: v1}
	leak := job(m)
	leak.Reason, leak.Leak = "leak", true
	if _, err := (&Engine{Store: store}).Rotate(ctx, leak, v2); err != nil {
		t.Fatal(err)
	}
	// Someone puts the leaked key back with `vault kv put`.
	if _, err := store.WriteKey(ctx, "an/main", v1, 2, nil); err != nil {
		t.Fatal(err)
	}
	holder := &memTarget{id: "holder", held: v1}
	a := (&Engine{Store: store}).Audit(ctx, job(holder))
	if len(a.Integrations) != 1 || a.Integrations[0].State != state.Compromised {
		t.Fatalf("audit = %+v, want the leaked key compromised", a.Integrations)
	}
}

// A rekey that has never kept a history (an existing key) seeds it from
// the versions Vault holds, the first time it rotates.
func TestHistorySeededFromVault(t *testing.T) {
	v1, v2, v3 := secret.New("first-key-aaaaaaaaaaaa"), secret.New("second-key-bbbbbbbbbbb"), secret.New("third-key-cccccccccccc")
	store, _ := setup(t, v1)
	ctx := context.Background()
	if _, err := store.WriteKey(ctx, "an/main", v2, 1, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := store.History(ctx, "an"); err == nil {
		t.Fatal("a history before rekey rotated")
	}
	if _, err := (&Engine{Store: store}).Rotate(ctx, job(&memTarget{id: "m", held: v2}), v3); err != nil {
		t.Fatal(err)
	}
	h, _, err := store.History(ctx, "an")
	if err != nil || len(h.Versions) != 3 {
		t.Fatalf("history = %+v, %v; want 3 versions", h, err)
	}
	for i, k := range []secret.Key{v1, v2, v3} {
		if v, ok := h.Find(k); !ok || v.Version != i+1 || v.Fingerprint != k.Fingerprint() || v.Length != k.Len() {
			t.Fatalf("version %d in history: %+v %v", i+1, v, ok)
		}
	}
}
