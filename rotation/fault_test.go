package rotation

// Faults at the engine's level: notifiers that
// are slow or fail, targets that hang or ask for long waits, a crash right
// after the key is stored, records that cannot be written. The same
// faults, seen from the command line, are the stories in
// cmd/rekey/testdata/fault-*.txtar; docs/RELIABILITY.md lists them all.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rekey-dev/rekey/config"
	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/integrations"
	"github.com/rekey-dev/rekey/internal/leakcheck"
	"github.com/rekey-dev/rekey/notifiers"
	"github.com/rekey-dev/rekey/records"
	"github.com/rekey-dev/rekey/secret"
	"github.com/rekey-dev/rekey/state"
	"github.com/rekey-dev/rekey/store/memstore"
)

// gateNotifier blocks the first event of kind until the gate opens, and
// records every event it was given, in order.
type gateNotifier struct {
	block notifiers.Kind
	gate  chan struct{}
	fail  error

	mu     sync.Mutex
	events []notifiers.Event
	once   sync.Once
}

func (n *gateNotifier) Notify(ctx context.Context, ev notifiers.Event) error {
	if ev.Kind == n.block && n.gate != nil {
		n.once.Do(func() { <-n.gate })
	}
	n.mu.Lock()
	n.events = append(n.events, ev)
	n.mu.Unlock()
	return n.fail
}

func (n *gateNotifier) kinds() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []string
	for _, ev := range n.events {
		out = append(out, string(ev.Kind))
	}
	return out
}

// signalTarget is a memTarget that closes applied once it has the key.
type signalTarget struct {
	*memTarget
	applied chan struct{}
	once    sync.Once
}

func (s *signalTarget) Apply(ctx context.Context, req integrations.ApplyRequest) (integrations.ApplyResult, error) {
	res, err := s.memTarget.Apply(ctx, req)
	if err == nil {
		s.once.Do(func() { close(s.applied) })
	}
	return res, err
}

// A notifier that hangs (Slack answering 429 with a long Retry-After)
// must not hold up the integrations: they get the key while the "stored"
// message is still on its way, and the messages still arrive in order.
func TestSlowNotifierDoesNotHoldUpIntegrations(t *testing.T) {
	old, key := secret.New("old-key-aaaaaaaaaaaa"), secret.New("new-key-bbbbbbbbbbbb")
	store, _ := setup(t, old)
	n := &gateNotifier{block: notifiers.RotationProgress, gate: make(chan struct{})}
	target := &signalTarget{memTarget: &memTarget{id: "site", held: old}, applied: make(chan struct{})}
	j := job()
	j.Targets = []Target{{Config: config.Integration{ID: "site", Key: "an", Type: "mem"}, Integration: target}}

	var stuck atomic.Bool
	go func() {
		// The gate opens once the integration has the key; an engine that
		// waited for the notifier first would never get there.
		select {
		case <-target.applied:
		case <-time.After(10 * time.Second):
			stuck.Store(true)
		}
		close(n.gate)
	}()
	out, err := (&Engine{Store: store, Notifier: n}).Rotate(context.Background(), j, key)
	if err != nil || !out.AllCurrent() {
		t.Fatalf("rotate: %v %+v", err, out)
	}
	if stuck.Load() {
		t.Fatal("the integration got the key only after the notifier returned")
	}
	if got := strings.Join(n.kinds(), " "); got != "rotation_progress rotation_finished" {
		t.Fatalf("events = %s, want the progress message, then the outcome", got)
	}
}

// A notifier that fails every time never fails the rotation, and says so
// in the log only.
func TestFailingNotifierDoesNotFailRotation(t *testing.T) {
	old, key := secret.New("old-key-aaaaaaaaaaaa"), secret.New("new-key-bbbbbbbbbbbb")
	store, _ := setup(t, old)
	var logs bytes.Buffer
	n := &gateNotifier{fail: fmt.Errorf("slack: post to C1: status 500: %w", failure.ErrTransient)}
	e := &Engine{Store: store, Notifier: n, Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	out, err := e.Rotate(context.Background(), job(&memTarget{id: "a", held: old}, &memTarget{id: "b", held: old}), key)
	if err != nil || !out.AllCurrent() {
		t.Fatalf("rotate: %v %+v", err, out)
	}
	if !strings.Contains(logs.String(), "notification not delivered") {
		t.Errorf("log does not say the notification failed:\n%s", logs.String())
	}
	leakcheck.Assert(t, "log", logs.Bytes(), old.Reveal(), key.Reveal())
}

// An integration that hangs past the per-attempt timeout is given up on
// after the retries, as failing with the reason; the others are current.
func TestHangingIntegrationTimesOut(t *testing.T) {
	old, key := secret.New("old-key-aaaaaaaaaaaa"), secret.New("new-key-bbbbbbbbbbbb")
	store, _ := setup(t, old)
	hang := &memTarget{id: "hang", held: old, delay: time.Hour}
	fine := &memTarget{id: "fine", held: old}
	e := &Engine{Store: store, Timeout: 50 * time.Millisecond, Retries: 2, Backoff: time.Millisecond}
	out, err := e.Rotate(context.Background(), job(hang, fine), key)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]Result{}
	for _, r := range out.Results {
		got[r.ID] = r
	}
	if got["fine"].State != state.Current {
		t.Errorf("fine = %+v", got["fine"])
	}
	if got["hang"].State != state.Failing || !strings.Contains(got["hang"].Reason, "deadline exceeded") {
		t.Errorf("hang = %+v, want failing with the deadline in the reason", got["hang"])
	}
	if out.Rotation.Integrations["hang"].Attempts != 3 {
		t.Errorf("hang was attempted %d times, want 3", out.Rotation.Integrations["hang"].Attempts)
	}
	if out.AllCurrent() {
		t.Error("AllCurrent with a failing integration")
	}
}

// A target that asks to wait longer than MaxRetryWait (GitHub's rate
// limit resetting in an hour) is not waited for: it fails at once, with
// the wait in the reason, and the rotation ends.
func TestLongRetryAfterIsNotWaited(t *testing.T) {
	old, key := secret.New("old-key-aaaaaaaaaaaa"), secret.New("new-key-bbbbbbbbbbbb")
	store, _ := setup(t, old)
	limited := &memTarget{id: "ci", held: old, failures: []error{
		&failure.RetryAfterError{After: time.Hour, Err: errors.New("github: put secret K in o/r: status 403: rate limit used up")},
	}}
	short := &memTarget{id: "short", held: old, failures: []error{
		&failure.RetryAfterError{After: 20 * time.Millisecond, Err: errors.New("http: apply: status 429")},
	}}
	e := &Engine{Store: store, Retries: 3, MaxRetryWait: time.Second}
	start := time.Now()
	out, err := e.Rotate(context.Background(), job(limited, short), key)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Fatalf("the rotation took %s: it waited for the hour", d)
	}
	for _, r := range out.Results {
		switch r.ID {
		case "ci":
			if r.State != state.Failing || !strings.Contains(r.Reason, "retry after 1h0m0s") {
				t.Errorf("ci = %+v, want failing, saying how long it asked to wait", r)
			}
		case "short":
			if r.State != state.Current {
				t.Errorf("short = %+v, want current after a short wait", r)
			}
		}
	}
	if limited.attempts != 1 {
		t.Errorf("ci attempts = %d, want 1", limited.attempts)
	}
}

// A crash right after the key's data write, before its metadata and the
// record said "stored", must not read as "nothing changed": Vault holds
// exactly the planned key, so resume finishes the rotation.
func TestResumeAfterCrashRightAfterWrite(t *testing.T) {
	ctx := context.Background()
	old, key := secret.New("old-key-aaaaaaaaaaaa"), secret.New("new-key-bbbbbbbbbbbb")
	store, env := setup(t, old)
	m := &memTarget{id: "m", held: old}
	j := job(m)
	// What Rotate leaves when killed right after the data write: the plan
	// on record, the key stored without this rotation's metadata.
	rec := &records.Rotation{ID: "20260101T000000Z-abcdef", KeyID: "an", Reason: "manual", Started: time.Now().UTC(),
		Phase: records.PhasePlanned, OldVersion: 1, OldFingerprint: old.Fingerprint(), NewFingerprint: key.Fingerprint(),
		Integrations: map[string]*records.Integration{"m": {ID: "m", Type: "mem", State: state.Waiting}}}
	if err := store.SaveRotation(ctx, rec); err != nil {
		t.Fatal(err)
	}
	if err := store.UpdateKeyState(ctx, "an", func(st *records.KeyState) { st.LatestRotation = rec.ID }); err != nil {
		t.Fatal(err)
	}
	if _, err := store.WriteKey(ctx, "an/main", key, 1, nil); err != nil {
		t.Fatal(err)
	}
	out, err := (&Engine{Store: store}).Resume(ctx, j)
	if err != nil || !out.AllCurrent() {
		t.Fatalf("resume: %v %+v", err, out)
	}
	if !m.held.Equal(key) || out.Rotation.NewVersion != 2 || out.Rotation.Phase != records.PhaseDone {
		t.Fatalf("after resume: holds %s, record %+v", m.held.Fingerprint(), out.Rotation)
	}
	leakcheck.Assert(t, "vault records", env.Dump(t, "rekey/"), old.Reveal(), key.Reveal())

	// A plan whose key never reached Vault is still "nothing to resume".
	rec2 := *rec
	rec2.ID, rec2.NewFingerprint, rec2.OldVersion = "20260101T000001Z-abcdef", secret.New("never-stored-cccccccc").Fingerprint(), 2
	if err := store.SaveRotation(ctx, &rec2); err != nil {
		t.Fatal(err)
	}
	if err := store.UpdateKeyState(ctx, "an", func(st *records.KeyState) { st.LatestRotation = rec2.ID }); err != nil {
		t.Fatal(err)
	}
	if _, err := (&Engine{Store: store}).Resume(ctx, j); !errors.Is(err, ErrNothingToResume) {
		t.Fatalf("resume of a plan never stored: %v, want ErrNothingToResume", err)
	}
}

// Resume with no rotation on record says there is nothing to resume.
func TestResumeWithoutRecord(t *testing.T) {
	store, _ := setup(t, secret.New("old-key-aaaaaaaaaaaa"))
	_, err := (&Engine{Store: store}).Resume(context.Background(), job(&memTarget{id: "m"}))
	if !errors.Is(err, ErrNothingToResume) || !strings.Contains(err.Error(), "no rotation on record") {
		t.Fatalf("err = %v", err)
	}
}

// failingSaves is a Store whose rotation records cannot be written once
// broken is set (Vault sealed or gone after the key was stored).
type failingSaves struct {
	*memstore.Store
	broken atomic.Bool
	saves  atomic.Int32
}

func (f *failingSaves) SaveRotation(ctx context.Context, r *records.Rotation) error {
	if f.broken.Load() {
		f.saves.Add(1)
		return fmt.Errorf("vault: write record: status 503: Vault is sealed: %w", failure.ErrTransient)
	}
	return f.Store.SaveRotation(ctx, r)
}

// When the outcome cannot be recorded, the integrations still get the key
// and the outcome says what they hold, but it is not "all current": the
// records lag behind until resume runs again. The final write is tried
// more than once.
func TestUnrecordedOutcomeIsNotAllCurrent(t *testing.T) {
	old, key := secret.New("old-key-aaaaaaaaaaaa"), secret.New("new-key-bbbbbbbbbbbb")
	vs, _ := setup(t, old)
	store := &failingSaves{Store: vs}
	var logs bytes.Buffer
	m := &memTarget{id: "m", held: old}
	e := &Engine{Store: store, Backoff: time.Millisecond, Logger: slog.New(slog.NewTextHandler(&logs, nil)),
		Progress: func(id string, st state.State, detail string) {
			if st == state.Applying {
				store.broken.Store(true) // the key is stored; Vault goes away
			}
		}}
	out, err := e.Rotate(context.Background(), job(m), key)
	if err != nil {
		t.Fatal(err)
	}
	if out.RecordErr == nil || out.AllCurrent() {
		t.Fatalf("outcome = %+v, want RecordErr and not AllCurrent", out)
	}
	if len(out.Results) != 1 || out.Results[0].State != state.Current || !m.held.Equal(key) {
		t.Fatalf("results = %+v", out.Results)
	}
	if n := store.saves.Load(); n < 4 {
		t.Errorf("the final record was tried %d times, want 4", n)
	}
	if !strings.Contains(logs.String(), "run `rekey resume an` once Vault answers") {
		t.Errorf("log does not say what to do:\n%s", logs.String())
	}
	leakcheck.Assert(t, "log", logs.Bytes(), old.Reveal(), key.Reveal())
}

// With fewer slots than integrations, integrations start in the order
// they are configured.
func TestIntegrationsStartInConfigurationOrder(t *testing.T) {
	old := secret.New("old-key-aaaaaaaaaaaa")
	store, _ := setup(t, old)
	var ts []*memTarget
	for i := range 8 {
		ts = append(ts, &memTarget{id: fmt.Sprintf("t%d", i), held: old})
	}
	var mu sync.Mutex
	var order []string
	e := &Engine{Store: store, Concurrency: 1, Progress: func(id string, st state.State, detail string) {
		if st == state.Applying {
			mu.Lock()
			order = append(order, id)
			mu.Unlock()
		}
	}}
	if _, err := e.Rotate(context.Background(), job(ts...), secret.New("new-key-bbbbbbbbbbbb")); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(order, " "); got != "t0 t1 t2 t3 t4 t5 t6 t7" {
		t.Fatalf("applied in order %s", got)
	}
}
