package vaultstore

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/internal/vaulttest"
	"github.com/rekey-dev/rekey/records"
	"github.com/rekey-dev/rekey/secret"
)

// On a mount with cas_required=true every write needs check-and-set.
// Every record rekey writes (a rotation with journal parts, saved again
// and again, the key's state, the lock taken, renewed, released and taken
// again) and the key itself must work there.
func TestEveryWriteWorksOnCASRequiredMount(t *testing.T) {
	env := vaulttest.New(t)
	env.Configure(t, map[string]any{"cas_required": true})
	s := New(env.Client, env.Mount, "rekey")
	ctx := context.Background()

	if _, err := s.WriteKey(ctx, "an/main", secret.New("first-key-0123456789"), 0, map[string]string{"managed-by": "rekey"}); err != nil {
		t.Fatalf("first key version: %v", err)
	}
	if _, err := s.WriteKey(ctx, "an/main", secret.New("second-key-0123456789"), 1, nil); err != nil {
		t.Fatalf("second key version: %v", err)
	}

	r := &records.Rotation{ID: "r1", KeyID: "an", Integrations: map[string]*records.Integration{}}
	for i := range JournalPart + 10 {
		r.Journal = append(r.Journal, records.Transition{Integration: fmt.Sprintf("i%05d", i), From: "waiting", To: "applying"})
		if i%400 == 0 {
			if err := s.SaveRotation(ctx, r); err != nil {
				t.Fatalf("save rotation at %d transitions: %v", i+1, err)
			}
		}
	}
	if err := s.SaveRotation(ctx, r); err != nil {
		t.Fatalf("save rotation: %v", err)
	}
	// Another process (resume, confirm) reads it and saves it again.
	other := New(env.Client, env.Mount, "rekey")
	got, err := other.Rotation(ctx, "an", "r1")
	if err != nil || len(got.Journal) != len(r.Journal) {
		t.Fatalf("read back: %v, %v", got, err)
	}
	got.Phase = records.PhaseDone
	if err := other.SaveRotation(ctx, got); err != nil {
		t.Fatalf("save a rotation read back: %v", err)
	}

	for i := range 2 {
		if err := s.UpdateKeyState(ctx, "an", func(st *records.KeyState) { st.LatestRotation = fmt.Sprint("r", i) }); err != nil {
			t.Fatalf("key state update %d: %v", i, err)
		}
	}
	host, _ := os.Hostname()
	l, err := s.Lock(ctx, "an", records.Lock{User: "alice", Host: host, PID: os.Getpid()}, time.Minute)
	if err != nil {
		t.Fatalf("lock: %v", err)
	}
	if err := l.Renew(ctx); err != nil {
		t.Fatalf("renew: %v", err)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatalf("release: %v", err)
	}
	if _, err := s.Lock(ctx, "an", records.Lock{User: "bob", Host: host, PID: os.Getpid()}, time.Minute); err != nil {
		t.Fatalf("lock again: %v", err)
	}
}

// A record whose latest version was deleted (by hand, or by the mount's
// delete_version_after) reads as missing, but check-and-set still counts
// that version: rekey writes over it instead of failing for ever.
func TestRecordWithDeletedVersionIsWrittenAgain(t *testing.T) {
	env := vaulttest.New(t)
	env.Configure(t, map[string]any{"cas_required": true})
	s := New(env.Client, env.Mount, "rekey")
	ctx := context.Background()
	if err := s.UpdateKeyState(ctx, "an", func(st *records.KeyState) { st.LatestRotation = "r1" }); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.KVv2(env.Mount).Delete(ctx, "rekey/keys/an/state"); err != nil {
		t.Fatal(err)
	}
	if err := s.UpdateKeyState(ctx, "an", func(st *records.KeyState) { st.LatestRotation = "r2" }); err != nil {
		t.Fatalf("update over a deleted version: %v", err)
	}
	st, _, err := s.KeyState(ctx, "an")
	if err != nil || st.LatestRotation != "r2" {
		t.Fatalf("state = %+v, %v", st, err)
	}
	// The lock, too.
	if err := env.Client.KVv2(env.Mount).Delete(ctx, "rekey/keys/an/state"); err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	l, err := s.Lock(ctx, "an", records.Lock{User: "alice", Host: host, PID: os.Getpid()}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	l.Release(ctx)
	if err := env.Client.KVv2(env.Mount).Delete(ctx, "rekey/keys/an/lock"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Lock(ctx, "an", records.Lock{User: "alice", Host: host, PID: os.Getpid()}, time.Minute); err != nil {
		t.Fatalf("lock over a deleted version: %v", err)
	}
}

// lossyProxy forwards requests to Vault and, while lose > 0, drops the
// answer of each (the connection is closed after Vault acted on it).
type lossyProxy struct {
	next http.Handler
	lose atomic.Int32
}

func (p *lossyProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if p.lose.Add(-1) < 0 {
		p.lose.Store(0)
		p.next.ServeHTTP(w, r)
		return
	}
	p.next.ServeHTTP(httptest.NewRecorder(), r) // Vault acts; the answer is lost
	conn, _, err := http.NewResponseController(w).Hijack()
	if err == nil {
		conn.Close()
	}
}

// A write whose answer is lost but that landed is not taken for someone
// else's: the save reports the loss, and the next save of that record goes
// through. Someone else's write in between is a conflict, not overwritten.
func TestSaveAfterLostAnswer(t *testing.T) {
	env := vaulttest.New(t)
	target, _ := url.Parse(env.Addr)
	proxy := &lossyProxy{next: httputil.NewSingleHostReverseProxy(target)}
	srv := httptest.NewServer(proxy)
	defer srv.Close()
	s := New(vaulttest.NewClient(t, srv.URL, env.Token), env.Mount, "rekey")
	ctx := context.Background()

	r := &records.Rotation{ID: "r1", KeyID: "an", Phase: records.PhasePlanned}
	if err := s.SaveRotation(ctx, r); err != nil {
		t.Fatal(err)
	}
	// The answer is lost, and so is the read-back that would tell.
	r.Phase = records.PhaseStored
	proxy.lose.Store(2)
	if err := s.SaveRotation(ctx, r); err == nil {
		t.Fatal("a save whose answer was lost reported success")
	}
	r.Phase = records.PhaseDone
	if err := s.SaveRotation(ctx, r); err != nil {
		t.Fatalf("save after a lost answer: %v", err)
	}
	// The answer is lost once more; the read-back tells it landed.
	r.Error = "x"
	proxy.lose.Store(1)
	if err := s.SaveRotation(ctx, r); err != nil {
		t.Fatalf("a save whose answer was lost, then read back: %v", err)
	}
	other := New(env.Client, env.Mount, "rekey")
	got, err := other.Rotation(ctx, "an", "r1")
	if err != nil || got.Phase != records.PhaseDone || got.Error != "x" {
		t.Fatalf("record = %+v, %v", got, err)
	}

	// Someone else writes it: this store's next save is a conflict.
	got.Phase = records.PhaseAborted
	if err := other.SaveRotation(ctx, got); err != nil {
		t.Fatal(err)
	}
	r.Error = "mine"
	if err := s.SaveRotation(ctx, r); !errors.Is(err, failure.ErrConflict) {
		t.Fatalf("save over someone else's write: %v, want failure.ErrConflict", err)
	}
}
