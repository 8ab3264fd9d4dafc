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

	"github.com/rekey-dev/rekey/config"
	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/integrations"
	"github.com/rekey-dev/rekey/internal/leakcheck"
	"github.com/rekey-dev/rekey/providers"
	"github.com/rekey-dev/rekey/records"
	"github.com/rekey-dev/rekey/secret"
	"github.com/rekey-dev/rekey/state"
	"github.com/rekey-dev/rekey/store/memstore"
)

// memTarget is an in-memory integration whose failures are scripted.
type memTarget struct {
	id       string
	mu       sync.Mutex
	held     secret.Key
	writes   int
	attempts int
	failures []error       // returned by successive Apply calls before success
	delay    time.Duration // each Apply takes this long
	inFlight *atomic.Int32
	maxSeen  *atomic.Int32
}

var (
	_ integrations.Integration = (*memTarget)(nil)
	_ integrations.Reader      = (*memTarget)(nil)
)

func (m *memTarget) ID() string { return m.id }

func (m *memTarget) Apply(ctx context.Context, req integrations.ApplyRequest) (integrations.ApplyResult, error) {
	if m.inFlight != nil {
		n := m.inFlight.Add(1)
		defer m.inFlight.Add(-1)
		for {
			old := m.maxSeen.Load()
			if n <= old || m.maxSeen.CompareAndSwap(old, n) {
				break
			}
		}
	}
	if m.delay > 0 {
		select {
		case <-time.After(m.delay):
		case <-ctx.Done():
			return integrations.ApplyResult{}, ctx.Err()
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.attempts++
	if len(m.failures) > 0 {
		err := m.failures[0]
		m.failures = m.failures[1:]
		return integrations.ApplyResult{}, err
	}
	if m.held.Equal(req.Key) {
		return integrations.ApplyResult{At: time.Now()}, nil
	}
	m.held = req.Key
	m.writes++
	return integrations.ApplyResult{Changed: true, At: time.Now()}, nil
}

func (m *memTarget) Read(ctx context.Context) (secret.Key, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.held, nil
}

type validChecker struct{}

func (validChecker) Check(context.Context, secret.Key) providers.Result {
	return providers.Result{Validity: providers.Valid, Reason: "test"}
}

type fixedChecker providers.Result

func (c fixedChecker) Check(context.Context, secret.Key) providers.Result { return providers.Result(c) }

// setup gives a test a store holding old as the first version of the key
// at an/main. The store is in memory: it passes the same conformance
// suite as the Vault one (store/storetest), so what these tests show of
// the engine holds on Vault; internal/e2e runs whole rotations there.
func setup(t *testing.T, old secret.Key) (*memstore.Store, memEnv) {
	s := memstore.New(memstore.Options{})
	if _, err := s.WriteKey(context.Background(), "an/main", old, 0, nil); err != nil {
		t.Fatal(err)
	}
	return s, memEnv{s}
}

// memEnv is what tests ask of the store's world: its records, to search
// for keys, and its settings.
type memEnv struct{ s *memstore.Store }

// Dump returns every record (prefix is ignored: the memory store keeps
// only rekey's records and the keys' metadata).
func (e memEnv) Dump(t *testing.T, prefix string) []byte { return e.s.Dump() }

// Configure sets the store's settings as Vault's <mount>/config would.
func (e memEnv) Configure(t *testing.T, settings map[string]any) {
	if n, ok := settings["max_versions"].(int); ok {
		e.s.SetMaxVersions(n)
	}
}

func job(targets ...*memTarget) Job {
	j := Job{Key: config.Key{ID: "an", VaultPath: "an/main", Provider: "none"}, Checker: validChecker{}, Reason: "manual"}
	for _, m := range targets {
		j.Targets = append(j.Targets, Target{Config: config.Integration{ID: m.id, Key: "an", Type: "mem"}, Integration: m})
	}
	return j
}

func TestRotateRetriesTransientOnly(t *testing.T) {
	old, key := secret.New("old-key-aaaaaaaaaaaa"), secret.New("new-key-bbbbbbbbbbbb")
	store, env := setup(t, old)
	flaky := &memTarget{id: "flaky", held: old, failures: []error{
		fmt.Errorf("mem: status 503: %w", failure.ErrTransient),
		&failure.RetryAfterError{After: 10 * time.Millisecond, Err: errors.New("mem: 429")},
	}}
	broken := &memTarget{id: "broken", held: old, failures: []error{fmt.Errorf("mem: status 401: %w", failure.ErrUnauthorized)}}
	fine := &memTarget{id: "fine", held: old}
	e := &Engine{Store: store, Retries: 3, Backoff: time.Millisecond}
	out, err := e.Rotate(context.Background(), job(flaky, broken, fine), key)
	if err != nil {
		t.Fatal(err)
	}
	states := map[string]state.State{}
	for _, r := range out.Results {
		states[r.ID] = r.State
	}
	if states["flaky"] != state.Current || states["fine"] != state.Current || states["broken"] != state.Failing {
		t.Fatalf("states = %v", states)
	}
	if flaky.attempts != 3 {
		t.Errorf("flaky attempts = %d, want 3 (two transient failures retried)", flaky.attempts)
	}
	if broken.attempts != 1 {
		t.Errorf("broken attempts = %d, want 1 (permanent failures are not retried)", broken.attempts)
	}
	if out.AllCurrent() {
		t.Error("AllCurrent with a failing integration")
	}
	// The journal records every transition, with fingerprints only.
	rec, err := store.LatestRotation(context.Background(), "an")
	if err != nil {
		t.Fatal(err)
	}
	if rec.Phase != records.PhaseDone || rec.NewVersion != 2 || rec.Integrations["broken"].State != "failing" {
		t.Fatalf("record = %+v", rec)
	}
	var moves []string
	for _, tr := range rec.Journal {
		if tr.Integration == "fine" {
			moves = append(moves, string(tr.From)+">"+string(tr.To))
		}
	}
	if got := strings.Join(moves, " "); got != "waiting>applying applying>verifying verifying>current" {
		t.Errorf("journal of fine: %s", got)
	}
	leakcheck.Assert(t, "vault records", env.Dump(t, "rekey/"), old.Reveal(), key.Reveal())
}

func TestRotateHonoursConcurrency(t *testing.T) {
	old := secret.New("old-key-aaaaaaaaaaaa")
	store, _ := setup(t, old)
	var inFlight, maxSeen atomic.Int32
	var ts []*memTarget
	for i := range 12 {
		ts = append(ts, &memTarget{id: fmt.Sprintf("t%02d", i), held: old, delay: 20 * time.Millisecond, inFlight: &inFlight, maxSeen: &maxSeen})
	}
	e := &Engine{Store: store, Concurrency: 3}
	out, err := e.Rotate(context.Background(), job(ts...), secret.New("new-key-bbbbbbbbbbbb"))
	if err != nil || !out.AllCurrent() {
		t.Fatalf("rotate: %v %+v", err, out)
	}
	if m := maxSeen.Load(); m > 3 || m < 2 {
		t.Fatalf("at most %d applies ran at once, want 3 (2 at the least)", m)
	}
}

func TestRefusedKeysChangeNothing(t *testing.T) {
	old := secret.New("old-key-aaaaaaaaaaaa")
	cases := []struct {
		name    string
		key     secret.Key
		checker providers.Checker
		want    string
	}{
		{"empty", secret.New(""), validChecker{}, "empty"},
		{"too short", secret.New("abc123"), validChecker{}, "6 bytes long"},
		{"current", old, validChecker{}, "current version"},
		{"invalid", secret.New("bad-key-cccccccccccc"), fixedChecker{Validity: providers.Invalid, Reason: "401"}, "rejected"},
		{"unknown", secret.New("new-key-dddddddddddd"), fixedChecker{Validity: providers.Unknown, Reason: "429"}, "could not check"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			store, _ := setup(t, old)
			m := &memTarget{id: "m", held: old}
			j := job(m)
			j.Checker = c.checker
			_, err := (&Engine{Store: store}).Rotate(context.Background(), j, c.key)
			var re *RefusedError
			if !errors.As(err, &re) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want RefusedError saying %q", err, c.want)
			}
			if m.attempts != 0 {
				t.Fatal("an integration was touched")
			}
			cur, _ := store.ReadKey(context.Background(), "an/main")
			if cur.Version != 1 {
				t.Fatalf("Vault version %d after a refused key", cur.Version)
			}
			leakcheck.Assert(t, "error", []byte(err.Error()), old.Reveal(), c.key.Reveal())
		})
	}
}

func TestCancelledRotationLeavesResumableRecord(t *testing.T) {
	old, key := secret.New("old-key-aaaaaaaaaaaa"), secret.New("new-key-bbbbbbbbbbbb")
	store, _ := setup(t, old)
	hang := &memTarget{id: "hang", held: old, delay: time.Hour}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for {
			if cur, err := store.ReadKey(context.Background(), "an/main"); err == nil && cur.Version == 2 {
				time.Sleep(50 * time.Millisecond)
				cancel()
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	out, err := (&Engine{Store: store, Timeout: time.Hour}).Rotate(ctx, job(hang), key)
	if err != nil {
		t.Fatal(err)
	}
	if out.AllCurrent() {
		t.Fatal("a cancelled apply reported current")
	}
	hang.delay = 0
	out, err = (&Engine{Store: store}).Resume(context.Background(), job(hang))
	if err != nil || !out.AllCurrent() {
		t.Fatalf("resume: %v %+v", err, out)
	}
	if !hang.held.Equal(key) {
		t.Fatal("resume did not apply the stored key")
	}
}

func TestBackoffGrowsWithJitter(t *testing.T) {
	e := &Engine{Backoff: 100 * time.Millisecond, MaxBackoff: time.Second}
	for attempt, base := range []time.Duration{100, 200, 400, 800, 1000, 1000} {
		base *= time.Millisecond
		for range 50 {
			d := e.backoff(attempt)
			if d < base/2 || d >= base*3/2 {
				t.Fatalf("backoff(%d) = %v, want in [%v, %v)", attempt, d, base/2, base*3/2)
			}
		}
	}
}

func TestResumeReappliesWhatDriftedBack(t *testing.T) {
	old, key := secret.New("old-key-aaaaaaaaaaaa"), secret.New("new-key-bbbbbbbbbbbb")
	store, _ := setup(t, old)
	drifts, stays := &memTarget{id: "drifts", held: old}, &memTarget{id: "stays", held: old}
	out, err := (&Engine{Store: store}).Rotate(context.Background(), job(drifts, stays), key)
	if err != nil || !out.AllCurrent() {
		t.Fatalf("rotate: %v %+v", err, out)
	}
	// Someone restores an old copy of one target's configuration.
	drifts.mu.Lock()
	drifts.held = old
	drifts.mu.Unlock()
	writes := stays.writes
	out, err = (&Engine{Store: store}).Resume(context.Background(), job(drifts, stays))
	if err != nil || !out.AllCurrent() {
		t.Fatalf("resume: %v %+v", err, out)
	}
	if !drifts.held.Equal(key) {
		t.Fatal("resume left the drifted target on the old key")
	}
	if stays.writes != writes || stays.attempts != 1 {
		t.Fatalf("resume applied to a target that was still current (%d attempts)", stays.attempts)
	}
}

func TestEarlierVersionIsRefused(t *testing.T) {
	older, old := secret.New("older-key-cccccccccccc"), secret.New("old-key-aaaaaaaaaaaa")
	store, _ := setup(t, older)
	if _, err := store.WriteKey(context.Background(), "an/main", old, 1, nil); err != nil {
		t.Fatal(err)
	}
	m := &memTarget{id: "m", held: old}
	_, err := (&Engine{Store: store}).Rotate(context.Background(), job(m), older)
	var re *RefusedError
	if !errors.As(err, &re) || !strings.Contains(err.Error(), "version 1") || !strings.Contains(err.Error(), "earlier version") {
		t.Fatalf("err = %v, want a refusal naming version 1 as an earlier version", err)
	}
	if m.attempts != 0 {
		t.Fatal("an integration was touched")
	}
	if cur, _ := store.ReadKey(context.Background(), "an/main"); cur.Version != 2 {
		t.Fatalf("Vault version %d after a refused key", cur.Version)
	}
}
