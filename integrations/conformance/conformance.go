// Package conformance is the suite every integration type passes, in the
// manner of restic's backend tests and go-cloud's drivertest. A type's
// test builds a Target (its integration plus a way to look at and disturb
// what it writes to) and calls Run:
//
//	func TestConformance(t *testing.T) { conformance.Run(t, myTarget{...}) }
//
// The checks, each a subtest:
//
//   - apply: Apply puts the key in the target.
//   - idempotent: a second Apply of the same key writes nothing and says
//     Changed false (given what rekey recorded writing, as the engine gives
//     it); a Reader whose target already holds the key writes nothing even
//     with no record.
//   - current: after Apply, integrations.Observe says current.
//   - stale: a target rekey wrote an older version to is stale, or
//     compromised when that version was leaked, and current again after
//     Apply; a target holding an older version from before is stale; a
//     Reader's target that someone put an old version back in is stale,
//     and one holding a key rekey never issued is failing.
//   - cancel: Apply with a cancelled context returns at once with an error
//     wrapping context.Canceled and writes nothing; Apply and Observe
//     against a target that hangs return promptly once their context ends.
//   - classify: a transient failure of the target gives an error that
//     failure.IsTransient accepts, so the engine retries it, and the
//     next Apply succeeds; a permanent failure gives one it does not.
//   - every check ends by searching what it saw (errors, Observe's
//     reasons, the probe's logs) for every key in every encoding
//     (leakcheck).
//
// The engine's retry loop itself (backoff, Retry-After, giving up) is
// tested in package rotation; here a type shows it classifies failures so
// that the loop can do its job.
//
// A Manual integration (integrations.Manual) is checked for what a person
// does instead: Apply writes nothing, the state is pending until a
// confirmation of the current version, compromised when the confirmed
// version was leaked, and current once confirmed (and its verify probe,
// if any, passes); its probe's failures and hangs are classified and
// bounded like Apply's.
//
// Run takes a T, the part of *testing.T it uses, so a test of the suite can
// pass a recorder and see the suite fail for a deliberately broken
// integration.
package conformance

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/integrations"
	"github.com/rekey-dev/rekey/internal/leakcheck"
	"github.com/rekey-dev/rekey/secret"
	"github.com/rekey-dev/rekey/state"
)

// T is the part of *testing.T the suite uses. Fatalf must stop the
// calling goroutine (runtime.Goexit), as testing.T's does.
type T interface {
	Helper()
	Logf(format string, args ...any)
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
}

// Target makes integrations under test.
type Target interface {
	// New returns a fresh integration whose target holds initial (the
	// zero Key: nothing), and a probe of that target. A target that holds
	// initial held it from before the suite began: a write-only target's
	// last-written time is at least a minute in the past.
	New(t T, initial secret.Key) (integrations.Integration, Probe)
}

// TargetFunc is a Target written as a function.
type TargetFunc func(t T, initial secret.Key) (integrations.Integration, Probe)

// New implements Target.
func (f TargetFunc) New(t T, initial secret.Key) (integrations.Integration, Probe) {
	return f(t, initial)
}

// Failure is a kind of failure a probe can make its target give.
type Failure int

const (
	// Transient is a failure worth retrying: a 5xx, a sealed Vault, a
	// command exiting EX_TEMPFAIL.
	Transient Failure = iota + 1
	// Permanent is one that is not: refused credentials, a bad request.
	Permanent
)

func (f Failure) String() string {
	switch f {
	case Transient:
		return "transient"
	case Permanent:
		return "permanent"
	}
	return fmt.Sprintf("Failure(%d)", int(f))
}

// Probe is the test's view of one target. The methods that disturb the
// target return false when the target cannot be disturbed that way; the
// suite then logs that the check was skipped.
type Probe interface {
	// Writes is how many times the target was written (for a manual
	// integration: how many times a person was asked to act by Apply).
	Writes() int
	// Holds is the key the target holds now, as the target itself sees it
	// (the zero Key for none).
	Holds(t T) secret.Key
	// SetHolds puts k in the target as someone other than rekey would.
	SetHolds(t T, k secret.Key) bool
	// FailNext makes the target's next write (for a manual integration:
	// its next verify probe) fail in that way.
	FailNext(f Failure) bool
	// HangNext makes the target's next request (or command) hang,
	// unanswered, until the caller gives up. Observe may not reach it (a
	// file is read back without running anything); it then reports what
	// the target holds.
	HangNext() bool
	// Logs is everything the target and the integration logged or saw,
	// except the one place the key is meant to go: request lines, headers,
	// bodies with the key's slot taken out, a child's argv and environment,
	// the integration's slog output.
	Logs() []byte
}

// promptly bounds how long Apply and Observe may take to return once
// their context ends. It is a bound for a stuck implementation, not a
// timing to meet.
var promptly = 5 * time.Second

// Run runs every check against target.
func Run(t T, target Target) {
	t.Helper()
	keys := newKeys()
	sub(t, "apply", func(t T) { checkApply(t, target, keys) })
	sub(t, "idempotent", func(t T) { checkIdempotent(t, target, keys) })
	sub(t, "current", func(t T) { checkCurrent(t, target, keys) })
	sub(t, "stale", func(t T) { checkStale(t, target, keys) })
	sub(t, "cancel", func(t T) { checkCancel(t, target, keys) })
	sub(t, "classify", func(t T) { checkClassify(t, target, keys) })
}

// sub runs f as a subtest: with *testing.T's Run, or a recorder's
// Run(name, func(T)), or else in line.
func sub(t T, name string, f func(T)) {
	switch r := t.(type) {
	case *testing.T:
		r.Run(name, func(t *testing.T) { f(t) })
	case interface{ Run(string, func(T)) bool }:
		r.Run(name, f)
	default:
		f(t)
	}
}

type keySet struct {
	old, cur, stranger secret.Key
}

func newKeys() keySet {
	k := func() secret.Key {
		b := make([]byte, 16)
		rand.Read(b)
		return secret.New(hex.EncodeToString(b))
	}
	return keySet{old: k(), cur: k(), stranger: k()}
}

func (k keySet) all() []string { return []string{k.old.Reveal(), k.cur.Reveal(), k.stranger.Reveal()} }

// expect is what the engine would know after storing cur over old.
func (k keySet) expect(oldState integrations.VersionState, rotatedAt time.Time, last state.Written) integrations.Expect {
	return integrations.Expect{
		Versions:  map[string]integrations.VersionState{k.old.Fingerprint(): oldState, k.cur.Fingerprint(): integrations.VersionCurrent},
		Current:   k.cur.Fingerprint(),
		RotatedAt: rotatedAt,
		Last:      last,
	}
}

// session is one check's integration and everything it saw, for the leak
// search at its end.
type session struct {
	t     T
	in    integrations.Integration
	probe Probe
	keys  keySet

	mu   sync.Mutex // an Apply that never returns may still write
	seen bytes.Buffer
	n    int
}

func start(t T, target Target, keys keySet, initial secret.Key) *session {
	t.Helper()
	in, p := target.New(t, initial)
	if in == nil || p == nil {
		t.Fatalf("Target.New returned no integration or no probe")
	}
	s := &session{t: t, in: in, probe: p, keys: keys}
	return s
}

func (s *session) apply(ctx context.Context, k secret.Key, last state.Written) (integrations.ApplyResult, error) {
	s.mu.Lock()
	s.n++
	rotation := fmt.Sprintf("conformance-%d", s.n)
	s.mu.Unlock()
	res, err := s.in.Apply(ctx, integrations.ApplyRequest{Key: k, RotationID: rotation, Last: last})
	s.saw(err)
	return res, err
}

func (s *session) mustApply(k secret.Key, last state.Written) state.Written {
	s.t.Helper()
	res, err := s.apply(context.Background(), k, last)
	if err != nil {
		s.t.Fatalf("Apply(%v): %v", k, err)
	}
	at := res.At
	if at.IsZero() {
		at = time.Now()
	}
	return state.Written{Fingerprint: k.Fingerprint(), At: at}
}

func (s *session) observe(ctx context.Context, want integrations.Expect) state.Status {
	st := integrations.Observe(ctx, s.in, want)
	s.mu.Lock()
	defer s.mu.Unlock()
	fmt.Fprintf(&s.seen, "observe: %s: %s (%s)\n", st.State, st.Reason, st.Fingerprint)
	return st
}

func (s *session) wantState(want integrations.Expect, state state.State, why string) {
	s.t.Helper()
	if st := s.observe(context.Background(), want); st.State != state {
		s.t.Errorf("%s: Observe = %s (%s), want %s", why, st.State, st.Reason, state)
	}
}

func (s *session) saw(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		fmt.Fprintf(&s.seen, "error: %v\n%+v\n%#v\n", err, err, err)
	}
}

// finish searches what the check saw for the keys.
func (s *session) finish() {
	s.t.Helper()
	var b bytes.Buffer
	s.mu.Lock()
	b.Write(s.seen.Bytes())
	s.mu.Unlock()
	b.Write(s.probe.Logs())
	leakcheck.Assert(s.t, "errors, states and logs", b.Bytes(), s.keys.all()...)
}

func isManual(in integrations.Integration) bool {
	_, ok := in.(integrations.Manual)
	return ok
}

func checkApply(t T, target Target, k keySet) {
	s := start(t, target, k, secret.Key{})
	defer s.finish()
	if isManual(s.in) {
		res, err := s.apply(context.Background(), k.cur, state.Written{})
		if err != nil || res.Changed || s.probe.Writes() != 0 {
			t.Errorf("manual Apply = %+v, %v with %d writes; want nothing done and Changed false", res, err, s.probe.Writes())
		}
		return
	}
	res, err := s.apply(context.Background(), k.cur, state.Written{})
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if !res.Changed {
		t.Errorf("Apply to an empty target said Changed false")
	}
	if got := s.probe.Holds(t); !got.Equal(k.cur) {
		t.Errorf("after Apply the target holds %v, want %v", got, k.cur)
	}
	if s.probe.Writes() < 1 {
		t.Errorf("after Apply the target saw %d writes", s.probe.Writes())
	}
}

func checkIdempotent(t T, target Target, k keySet) {
	s := start(t, target, k, secret.Key{})
	defer s.finish()
	last := s.mustApply(k.cur, state.Written{})
	before := s.probe.Writes()
	for i := range 2 {
		res, err := s.apply(context.Background(), k.cur, last)
		if err != nil {
			t.Fatalf("Apply %d of the key the target holds: %v", i+2, err)
		}
		if res.Changed || s.probe.Writes() != before {
			t.Errorf("Apply %d of the key the target holds: Changed %v, writes %d → %d; want nothing written",
				i+2, res.Changed, before, s.probe.Writes())
		}
	}
	if got := s.probe.Holds(t); !isManual(s.in) && !got.Equal(k.cur) {
		t.Errorf("the target holds %v, want %v", got, k.cur)
	}

	if _, ok := s.in.(integrations.Reader); !ok {
		return
	}
	r := start(t, target, k, k.cur)
	defer r.finish()
	res, err := r.apply(context.Background(), k.cur, state.Written{})
	if err != nil || res.Changed || r.probe.Writes() != 0 {
		t.Errorf("Apply to a target that already held the key, with no record: %+v, %v, %d writes; want nothing written",
			res, err, r.probe.Writes())
	}
}

func checkCurrent(t T, target Target, k keySet) {
	s := start(t, target, k, secret.Key{})
	defer s.finish()
	rotated := time.Now()
	last := s.mustApply(k.cur, state.Written{})
	want := k.expect(integrations.VersionSuperseded, rotated, last)
	if isManual(s.in) {
		s.wantState(want, state.Pending, "manual integration before confirmation")
		if !s.probe.SetHolds(t, k.cur) {
			t.Fatalf("a manual target must let the test play the person (SetHolds)")
		}
		want.Confirmed = state.Written{Fingerprint: k.cur.Fingerprint(), At: time.Now()}
		s.wantState(want, state.Current, "manual integration confirmed with the current version")
		return
	}
	st := s.observe(context.Background(), want)
	if st.State != state.Current {
		t.Fatalf("after Apply: Observe = %s (%s), want current", st.State, st.Reason)
	}
	if _, ok := s.in.(integrations.Reader); ok && st.Fingerprint != k.cur.Fingerprint() {
		t.Errorf("after Apply: Observe says it holds %s, want %s", st.Fingerprint, k.cur.Fingerprint())
	}
}

func checkStale(t T, target Target, k keySet) {
	first := start(t, target, k, secret.Key{})
	if isManual(first.in) {
		first.finish()
		staleManual(t, target, k)
		return
	}
	_, reader := first.in.(integrations.Reader)
	_, stamper := first.in.(integrations.Timestamper)
	if !reader && !stamper {
		t.Logf("skipped: the integration can neither read back nor say when it was written, so staleness cannot be known")
		first.finish()
		return
	}

	// rekey wrote the old version; the new one was stored since.
	for _, c := range []struct {
		state integrations.VersionState
		want  state.State
	}{
		{integrations.VersionSuperseded, state.Stale},
		{integrations.VersionCompromised, state.Compromised},
	} {
		s := first
		if c.state != integrations.VersionSuperseded {
			s = start(t, target, k, secret.Key{})
		}
		lastOld := s.mustApply(k.old, state.Written{})
		rotated := time.Now()
		s.wantState(k.expect(c.state, rotated, lastOld), c.want, fmt.Sprintf("rekey wrote the %s version before the rotation", c.state))
		lastCur := s.mustApply(k.cur, lastOld)
		s.wantState(k.expect(c.state, rotated, lastCur), state.Current, "after Apply of the current version")
		if got := s.probe.Holds(t); !got.Equal(k.cur) {
			t.Errorf("after Apply the target holds %v, want %v", got, k.cur)
		}
		s.finish()
	}

	// The target held the old version from before rekey knew it.
	s := start(t, target, k, k.old)
	s.wantState(k.expect(integrations.VersionSuperseded, time.Now(), state.Written{}), state.Stale,
		"the target held the superseded version from before the rotation")
	s.finish()

	if !reader {
		t.Logf("write-only target: a value someone else put back cannot be told from rekey's own write; not checked")
		return
	}
	s = start(t, target, k, secret.Key{})
	defer s.finish()
	rotated := time.Now()
	last := s.mustApply(k.cur, state.Written{})
	if !s.probe.SetHolds(t, k.old) {
		t.Logf("the target cannot be set by the test; put-back checks skipped")
		return
	}
	s.wantState(k.expect(integrations.VersionSuperseded, rotated, last), state.Stale, "someone put the superseded version back")
	s.wantState(k.expect(integrations.VersionCompromised, rotated, last), state.Compromised, "someone put the compromised version back")
	s.probe.SetHolds(t, k.stranger)
	s.wantState(k.expect(integrations.VersionSuperseded, rotated, last), state.Failing, "the target holds a key rekey never issued")
}

func staleManual(t T, target Target, k keySet) {
	s := start(t, target, k, k.old)
	defer s.finish()
	rotated := time.Now()
	if _, err := s.apply(context.Background(), k.cur, state.Written{}); err != nil {
		t.Fatalf("manual Apply: %v", err)
	}
	want := k.expect(integrations.VersionSuperseded, rotated, state.Written{})
	s.wantState(want, state.Pending, "a manual target holding the superseded version, not confirmed")

	want.Confirmed = state.Written{Fingerprint: k.old.Fingerprint(), At: rotated.Add(-time.Hour)}
	s.wantState(want, state.Pending, "confirmed only with the superseded version")

	compromised := k.expect(integrations.VersionCompromised, rotated, state.Written{})
	compromised.Confirmed = want.Confirmed
	s.wantState(compromised, state.Compromised, "last confirmed with the compromised version")

	if !s.probe.SetHolds(t, k.cur) {
		t.Fatalf("a manual target must let the test play the person (SetHolds)")
	}
	want.Confirmed = state.Written{Fingerprint: k.cur.Fingerprint(), At: time.Now()}
	s.wantState(want, state.Current, "confirmed with the current version")
}

func checkCancel(t T, target Target, k keySet) {
	s := start(t, target, k, k.old)
	defer s.finish()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := s.apply(ctx, k.cur, state.Written{})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Apply with a cancelled context: %v, want an error wrapping context.Canceled", err)
	}
	if failure.IsTransient(err) {
		t.Errorf("Apply with a cancelled context: %v is transient; the engine would retry a cancelled run", err)
	}
	if s.probe.Writes() != 0 || (!isManual(s.in) && !s.probe.Holds(t).Equal(k.old)) {
		t.Errorf("Apply with a cancelled context wrote the target")
	}

	if !isManual(s.in) {
		if !s.probe.HangNext() {
			t.Logf("the target cannot hang; hung-target checks skipped")
			return
		}
		returned, err := bounded(func(ctx context.Context) error {
			_, err := s.apply(ctx, k.cur, state.Written{})
			return err
		})
		switch {
		case !returned:
			t.Errorf("Apply against a hung target did not return within %v of its context ending", promptly)
		case !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded):
			t.Errorf("Apply against a hung target: %v, want an error wrapping context.Canceled", err)
		}
	}
	_, verifier := s.in.(integrations.Verifier)
	if (!isManual(s.in) || verifier) && (!isManual(s.in) || s.probe.SetHolds(t, k.cur)) {
		if !s.probe.HangNext() {
			t.Logf("the target cannot hang; hung-target checks skipped")
			return
		}
		want := k.expect(integrations.VersionSuperseded, time.Now(), state.Written{})
		want.Confirmed = state.Written{Fingerprint: k.cur.Fingerprint(), At: time.Now()}
		var st state.Status
		returned, _ := bounded(func(ctx context.Context) error {
			st = s.observe(ctx, want)
			return nil
		})
		switch {
		case !returned:
			t.Errorf("Observe against a hung target did not return within %v of its context ending", promptly)
		case st.State == state.Unknown:
		case !isManual(s.in) && st.State == state.Stale:
			// The hang was not on Observe's path (a file read back
			// without its reload command); it saw what is there.
		default:
			t.Errorf("Observe against a hung target = %s (%s), want unknown", st.State, st.Reason)
		}
	}
}

// bounded runs f with a context cancelled shortly after it starts, and
// reports whether f returned within promptly after that, and its error.
func bounded(f func(ctx context.Context) error) (returned bool, err error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f(ctx) }()
	select {
	case err := <-done: // it may fail before it reaches the hang
		cancel()
		return true, err
	case <-time.After(20 * time.Millisecond):
	}
	cancel()
	select {
	case err := <-done:
		return true, err
	case <-time.After(promptly):
		return false, nil
	}
}

func checkClassify(t T, target Target, k keySet) {
	for _, f := range []Failure{Transient, Permanent} {
		s := start(t, target, k, k.old)
		if !s.probe.FailNext(f) {
			t.Logf("the target cannot fail %s; skipped", f)
			s.finish()
			continue
		}
		var err error
		if isManual(s.in) {
			v, ok := s.in.(integrations.Verifier)
			if !ok {
				s.finish()
				continue
			}
			err = v.Verify(context.Background())
			s.saw(err)
		} else {
			_, err = s.apply(context.Background(), k.cur, state.Written{})
		}
		switch {
		case err == nil:
			t.Errorf("a %s failure of the target: no error", f)
		case f == Transient && !failure.IsTransient(err):
			t.Errorf("a transient failure gave %v, which the engine would not retry", err)
		case f == Permanent && failure.IsTransient(err):
			t.Errorf("a permanent failure gave %v, which the engine would retry", err)
		}
		if f == Transient && !isManual(s.in) {
			// What the engine's retry does: the next attempt succeeds.
			if _, err := s.apply(context.Background(), k.cur, state.Written{}); err != nil {
				t.Errorf("Apply after a transient failure: %v", err)
			} else if got := s.probe.Holds(t); !got.Equal(k.cur) {
				t.Errorf("after the retried Apply the target holds %v", got)
			}
		}
		s.finish()
	}
}
