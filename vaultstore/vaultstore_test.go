package vaultstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/internal/leakcheck"
	"github.com/rekey-dev/rekey/internal/vaulttest"
	"github.com/rekey-dev/rekey/records"
	"github.com/rekey-dev/rekey/secret"
	"github.com/rekey-dev/rekey/store"
)

func TestKeyVersionsAndCAS(t *testing.T) {
	env := vaulttest.New(t)
	s := New(env.Client, env.Mount, "rekey")
	ctx := context.Background()
	k1, k2 := secret.New("first-key-0123456789"), secret.New("second-key-0123456789")

	if _, err := s.ReadKey(ctx, "an/main"); !errors.Is(err, failure.ErrNotFound) {
		t.Fatalf("ReadKey of a missing path: %v, want failure.ErrNotFound", err)
	}
	v, err := s.WriteKey(ctx, "an/main", k1, 0, map[string]string{"managed-by": "rekey"})
	if err != nil || v != 1 {
		t.Fatalf("first write: version %d, %v", v, err)
	}
	if _, err := s.WriteKey(ctx, "an/main", k2, 0, nil); !errors.Is(err, failure.ErrConflict) {
		t.Fatalf("stale CAS: %v, want failure.ErrConflict", err)
	}
	if v, err = s.WriteKey(ctx, "an/main", k2, 1, map[string]string{"reason": "manual"}); err != nil || v != 2 {
		t.Fatalf("second write: version %d, %v", v, err)
	}
	cur, err := s.ReadKey(ctx, "an/main")
	if err != nil || !cur.Key.Equal(k2) || cur.Version != 2 {
		t.Fatalf("current = %v v%d, %v", cur.Key, cur.Version, err)
	}
	if cur.Metadata["managed-by"] != "rekey" || cur.Metadata["reason"] != "manual" {
		t.Fatalf("metadata not merged: %v", cur.Metadata)
	}
	vs, n, err := s.Versions(ctx, "an/main")
	if err != nil || n != 2 || len(vs) != 2 || !vs[0].Key.Equal(k1) || !vs[1].Key.Equal(k2) {
		t.Fatalf("Versions = %v (current %d), %v", vs, n, err)
	}
}

func TestWriteRefusedWithoutPermission(t *testing.T) {
	env := vaulttest.New(t)
	ro := vaulttest.NewClient(t, env.Addr, env.TokenWithPolicy(t, env.ReadOnlyPolicy()))
	s := New(ro, env.Mount, "rekey")
	_, err := s.WriteKey(context.Background(), "an/main", secret.New("some-key-value-123"), 0, nil)
	if !errors.Is(err, failure.ErrUnauthorized) {
		t.Fatalf("write with a read-only token: %v, want failure.ErrUnauthorized", err)
	}
	leakcheck.Assert(t, "error", []byte(err.Error()), "some-key-value-123")
}

func TestLock(t *testing.T) {
	env := vaulttest.New(t)
	s := New(env.Client, env.Mount, "rekey")
	ctx := context.Background()
	host, _ := os.Hostname()
	me := records.Lock{User: "alice", Host: host, PID: os.Getpid(), Command: "rotate"}
	l, err := s.Lock(ctx, "an", me, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Lock(ctx, "an", records.Lock{User: "bob", Host: "other", PID: 1}, time.Minute)
	var le *LockedError
	if !errors.As(err, &le) || le.Holder.User != "alice" {
		t.Fatalf("second lock: %v, want LockedError naming alice", err)
	}
	if err := l.Renew(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	l2, err := s.Lock(ctx, "an", records.Lock{User: "bob", Host: "other", PID: 1}, time.Minute)
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	l2.Release(ctx)
}

func TestLockOfDeadProcessIsTakenOver(t *testing.T) {
	env := vaulttest.New(t)
	s := New(env.Client, env.Mount, "rekey")
	ctx := context.Background()
	host, _ := os.Hostname()
	// A pid that cannot exist (above the kernel's pid_max), of this boot
	// and PID namespace.
	id := store.Identity()
	if _, err := s.PutRecord(ctx, "keys/an/lock", records.Lock{Held: true, User: "ghost", Host: host, PID: 1 << 30, BootID: id.BootID, PIDNamespace: id.PIDNamespace, Expires: time.Now().Add(time.Hour)}, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Lock(ctx, "an", records.Lock{User: "alice", Host: host, PID: os.Getpid()}, time.Minute); err != nil {
		t.Fatalf("lock of a dead local process not taken over: %v", err)
	}
	// An expired lease from another host is taken over too.
	if _, err := s.PutRecord(ctx, "keys/b/lock", records.Lock{Held: true, User: "x", Host: "elsewhere", PID: 7, Expires: time.Now().Add(-time.Second)}, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Lock(ctx, "b", records.Lock{User: "alice", Host: host, PID: os.Getpid()}, time.Minute); err != nil {
		t.Fatalf("expired lock not taken over: %v", err)
	}
}

func TestKeyStateUpdatesConcurrently(t *testing.T) {
	env := vaulttest.New(t)
	s := New(env.Client, env.Mount, "rekey")
	ctx := context.Background()
	done := make(chan error)
	for i := 1; i <= 4; i++ {
		go func() {
			done <- s.UpdateKeyState(ctx, "an", func(st *records.KeyState) {
				if st.Compromised == nil {
					st.Compromised = map[int]records.CompromisedVersion{}
				}
				st.Compromised[i] = records.CompromisedVersion{Fingerprint: "sha256:x"}
			})
		}()
	}
	for range 4 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	st, _, err := s.KeyState(ctx, "an")
	if err != nil || len(st.Compromised) != 4 {
		t.Fatalf("state after 4 concurrent updates: %+v, %v", st, err)
	}
}

func TestTruncate(t *testing.T) {
	if got := Truncate("abcdef", 10); got != "abcdef" {
		t.Fatal(got)
	}
	if got := Truncate("ééééé", 6); got != "é…" {
		t.Fatalf("Truncate = %q", got)
	}
}

func TestListRecords(t *testing.T) {
	env := vaulttest.New(t)
	s := New(env.Client, env.Mount, "rekey")
	ctx := context.Background()
	if got, err := s.ListRecords(ctx, "keys/an/rotations"); err != nil || len(got) != 0 {
		t.Fatalf("empty folder: %v, %v", got, err)
	}
	for _, id := range []string{"r1", "r2"} {
		if err := s.SaveRotation(ctx, &records.Rotation{ID: id, KeyID: "an"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.PutRecord(ctx, "keys/an/rotations/sub/x", map[string]string{"a": "b"}, 0); err != nil {
		t.Fatal(err)
	}
	got, err := s.ListRecords(ctx, "keys/an/rotations")
	if err != nil || len(got) != 2 || got[0] != "r1" || got[1] != "r2" {
		t.Fatalf("ListRecords = %v, %v; want [r1 r2]", got, err)
	}
}

// TestProxyPagesStayOutOfErrors: something in front of Vault answers with
// an HTML page that quotes the request it got, key and token included.
// Nothing of that page may reach the error.
func TestProxyPagesStayOutOfErrors(t *testing.T) {
	const key, token = "proxied-key-0123456789abcdef", "hvs.proxiedtoken0123456789"
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusBadGateway)
		fmt.Fprintf(w, "<html>bad gateway for %s token=%s body=%s</html>", r.URL, r.Header.Get("X-Vault-Token"), body)
	}))
	defer proxy.Close()
	s := New(vaulttest.NewClient(t, proxy.URL, token), "secret", "rekey")
	_, err := s.WriteKey(context.Background(), "an/main", secret.New(key), 1, nil)
	if !errors.Is(err, failure.ErrTransient) {
		t.Fatalf("err = %v, want failure.ErrTransient", err)
	}
	leakcheck.Assert(t, "error", []byte(err.Error()), key, token)
	if strings.Contains(err.Error(), "html") {
		t.Fatalf("the proxy's page is in the error: %v", err)
	}
}

// TestLongJournalIsStoredInParts: a rotation of thousands of integrations
// has a journal too large for one Vault entry; it round-trips whole, and
// each full part is written once however often the record is saved.
func TestLongJournalIsStoredInParts(t *testing.T) {
	env := vaulttest.New(t)
	s := New(env.Client, env.Mount, "rekey")
	ctx := context.Background()
	r := &records.Rotation{ID: "r1", KeyID: "an", Integrations: map[string]*records.Integration{}}
	for i := range 2*JournalPart + 10 {
		r.Journal = append(r.Journal, records.Transition{Integration: fmt.Sprintf("i%05d", i), From: "waiting", To: "applying",
			Reason: "http: apply: POST https://campaign.example.org/wp-json/actionnetwork/v1/settings: status 503, retrying"})
		if i%700 == 0 {
			if err := s.SaveRotation(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := s.SaveRotation(ctx, r); err != nil {
		t.Fatal(err)
	}
	got, err := (New(env.Client, env.Mount, "rekey")).Rotation(ctx, "an", "r1")
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Journal) != len(r.Journal) || got.JournalParts != 0 {
		t.Fatalf("read back %d transitions (%d parts), want %d", len(got.Journal), got.JournalParts, len(r.Journal))
	}
	for i := range got.Journal {
		if got.Journal[i].Integration != r.Journal[i].Integration {
			t.Fatalf("transition %d is %s, want %s", i, got.Journal[i].Integration, r.Journal[i].Integration)
		}
	}
	for n := range 2 {
		md, err := env.Client.KVv2(env.Mount).GetMetadata(ctx, "rekey/keys/an/journals/r1/"+fmt.Sprintf("%06d", n))
		if err != nil {
			t.Fatalf("journal part %d: %v", n, err)
		}
		if md.CurrentVersion != 1 {
			t.Fatalf("journal part %d written %d times, want once", n, md.CurrentVersion)
		}
	}
	// The rotations folder lists rotations only.
	if ids, err := s.ListRecords(ctx, "keys/an/rotations"); err != nil || len(ids) != 1 {
		t.Fatalf("rotations listed: %v, %v", ids, err)
	}
}
