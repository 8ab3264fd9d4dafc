package rotation

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/internal/leakcheck"
	"github.com/rekey-dev/rekey/providers"
	"github.com/rekey-dev/rekey/records"
	"github.com/rekey-dev/rekey/secret"
)

// The preflight proves what a rotation will need, changing nothing: the
// store's capability proof names a record path its credentials may not
// write, a lock held elsewhere, an integration it cannot reach, and a
// provider that cannot say whether the current key works.
func TestPreflightFindsWhatWouldStopARotation(t *testing.T) {
	ctx := context.Background()
	old := secret.New("old-key-aaaaaaaaaaaa")
	store, env := setup(t, old)
	fine := &memTarget{id: "fine", held: old}
	j := job(fine)
	j.Targets = append(j.Targets, Target{Config: targetConfig("unreachable"), Integration: readFails{&memTarget{id: "unreachable"}, fmt.Errorf("mem: read: connection refused: %w", failure.ErrTransient)}})
	e := &Engine{Store: store}

	pf := e.Preflight(ctx, j, "20260101T000000Z-abcdef")
	if !pf.VaultOK || pf.CurrentVersion != 1 || !pf.Current.Key.Equal(old) || pf.WriteProblem() != nil || pf.Locked != "" {
		t.Fatalf("preflight of a ready key: %+v", pf)
	}
	if pf.Ready() || pf.IntegrationsReady() {
		t.Fatal("ready with an unreachable integration")
	}
	if r := pf.Integrations[1]; r.ID != "unreachable" || r.OK || !strings.Contains(r.Detail, "connection refused") {
		t.Fatalf("unreachable = %+v", r)
	}
	if r := pf.Integrations[0]; !r.OK || r.Detail != "reachable (read back)" || r.Proof != "exact" {
		t.Fatalf("fine = %+v", r)
	}

	store.Deny("mem/data/rekey/keys/an/journals/", "create", "update")
	if _, err := store.Lock(ctx, "an", records.Lock{User: "ana", Host: "elsewhere.example", PID: 42, Command: "rotate an"}, time.Hour); err != nil {
		t.Fatal(err)
	}
	unsure := job(fine)
	unsure.Checker = fixedChecker{Validity: providers.Unknown, Reason: "status 503"}
	pf = e.Preflight(ctx, unsure, "20260101T000000Z-abcdef")
	if pf.Provider.Validity != providers.Unknown || pf.Provider.Reason != "status 503" {
		t.Fatalf("provider = %+v, want what the checker said of the current key", pf.Provider)
	}
	err := pf.WriteProblem()
	if err == nil || !strings.Contains(err.Error(), "mem/data/rekey/keys/an/journals/20260101T000000Z-abcdef/000000 (the rotation's journal parts): token lacks create, update") {
		t.Fatalf("write problem = %v", err)
	}
	if !strings.Contains(pf.Locked, "is being rotated by ana@elsewhere.example (pid 42, rotate an)") {
		t.Fatalf("locked = %q", pf.Locked)
	}
	if pf.Ready() {
		t.Fatal("ready with a denied record, a held lock and an unknown provider")
	}
	if cur, _ := store.ReadKey(ctx, "an/main"); cur.Version != 1 {
		t.Fatal("the preflight changed the key")
	}
	leakcheck.Assert(t, "records", env.Dump(t, ""), old.Reveal())
}

// each runs at most limit at once, starts items in order, and skips
// those it could not start once the context ended.
func TestEachIsBoundedAndOrdered(t *testing.T) {
	var inFlight, most atomic.Int32
	var mu sync.Mutex
	var started []int
	each(context.Background(), 3, 12, func(i int) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			m := most.Load()
			if n <= m || most.CompareAndSwap(m, n) {
				break
			}
		}
		mu.Lock()
		started = append(started, i)
		mu.Unlock()
		time.Sleep(5 * time.Millisecond)
	}, nil)
	if m := most.Load(); m > 3 || m < 2 {
		t.Fatalf("%d ran at once, want at most 3", m)
	}
	if len(started) != 12 || started[0] > 2 {
		t.Fatalf("started %v", started)
	}

	ctx, cancel := context.WithCancel(context.Background())
	var ran, skipped atomic.Int32
	each(ctx, 1, 10, func(i int) {
		ran.Add(1)
		if i == 2 {
			cancel()
		}
	}, func(i int) { skipped.Add(1) })
	if ran.Load()+skipped.Load() != 10 || skipped.Load() < 6 {
		t.Fatalf("ran %d, skipped %d after the context ended at the third", ran.Load(), skipped.Load())
	}
	if err := ctx.Err(); !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
}

// formChecker is a provider that says what its keys look like.
type formChecker struct {
	validChecker
	form secret.Form
}

func (c formChecker) KeyForm() secret.Form { return c.form }

// noBackslash is a target that cannot hold a key with a backslash (as a
// dotenv file cannot quote one safely).
type noBackslash struct{ *memTarget }

func (n noBackslash) Accepts(k secret.Key) error {
	if strings.Contains(k.Reveal(), `\`) {
		return fmt.Errorf("%s: cannot hold a key with a backslash: %w", n.id, failure.ErrInvalid)
	}
	return nil
}

// A target that could not take some key of the provider's form fails
// the preflight, before the owner is told to click; with a form it can
// take, or a provider that says no form, it passes.
func TestPreflightAsksTargetsAboutTheProvidersKeyForm(t *testing.T) {
	ctx := context.Background()
	old := secret.New("old-key-aaaaaaaaaaaa")
	store, _ := setup(t, old)
	e := &Engine{Store: store}
	picky := &memTarget{id: "picky", held: old}
	j := job()
	j.Targets = []Target{{Config: targetConfig("picky"), Integration: noBackslash{picky}}}

	for _, c := range []struct {
		name    string
		checker providers.Checker
		ok      bool
	}{
		{"hex keys", formChecker{form: secret.Form{Alphabet: "0123456789abcdef", MinLen: 32, MaxLen: 32}}, true},
		{"keys that may hold a backslash", formChecker{form: secret.Form{Alphabet: `ab\`, MinLen: 8, MaxLen: 8}}, false},
		{"no form", validChecker{}, true},
	} {
		j.Checker = c.checker
		pf := e.Preflight(ctx, j, "20260101T000000Z-abcdef")
		r := pf.Integrations[0]
		if r.OK != c.ok || pf.Ready() != c.ok {
			t.Fatalf("%s: integration = %+v, ready = %v", c.name, r, pf.Ready())
		}
		if !c.ok && (!errors.Is(r.Err, failure.ErrInvalid) || !strings.Contains(r.Detail, "backslash") || !strings.Contains(r.Detail, "the provider's keys are 8 characters of")) {
			t.Fatalf("%s: detail = %q, err = %v", c.name, r.Detail, r.Err)
		}
	}
}
