package vaultstore

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync/atomic"
	"testing"

	"github.com/rekey-dev/rekey/internal/vaulttest"
	"github.com/rekey-dev/rekey/records"
	"github.com/rekey-dev/rekey/state"
)

// What serve said of several keys with many integrations each, saved by
// a store that has not read it (another instance, after a restart), reads
// the head once to learn which slots its pages are in, not once a key.
func TestSaveSaidReadsTheHeadOnce(t *testing.T) {
	env := vaulttest.New(t)
	target, _ := url.Parse(env.Addr)
	next := httputil.NewSingleHostReverseProxy(target)
	var headReads atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && r.URL.Path == "/v1/"+env.Mount+"/data/rekey/"+saidPath {
			headReads.Add(1)
		}
		next.ServeHTTP(w, r)
	}))
	defer srv.Close()
	ctx := context.Background()

	const keys, each = 3, 1200 // over a page in all, each key slotted
	said := &records.Said{By: "one", Keys: map[string]*records.KeySaid{}}
	for k := range keys {
		ks := &records.KeySaid{Version: 1, Integrations: map[string]records.IntegrationSaid{}}
		for i := range each {
			ks.Integrations[fmt.Sprintf("integration-%04d", i)] = records.IntegrationSaid{Alerted: state.Current, Seen: state.Current}
		}
		said.Keys[fmt.Sprintf("key-%d", k)] = ks
	}
	v, err := New(env.Client, env.Mount, "rekey").SaveSaid(ctx, said, 0)
	if err != nil {
		t.Fatal(err)
	}
	said.By = "two"
	said.Keys["key-1"].Integrations["integration-0007"] = records.IntegrationSaid{Alerted: state.Current, Seen: state.Stale}
	headReads.Store(0)
	if _, err := New(vaulttest.NewClient(t, srv.URL, env.Token), env.Mount, "rekey").SaveSaid(ctx, said, v); err != nil {
		t.Fatal(err)
	}
	if n := headReads.Load(); n != 1 {
		t.Fatalf("saving what serve said of %d slotted keys read its head %d times, want once", keys, n)
	}
	got, _, err := New(env.Client, env.Mount, "rekey").Said(ctx)
	if err != nil || got.By != "two" || len(got.Keys) != keys || len(got.Keys["key-2"].Integrations) != each ||
		got.Keys["key-1"].Integrations["integration-0007"].Seen != state.Stale {
		t.Fatalf("read back: %v", err)
	}
}
