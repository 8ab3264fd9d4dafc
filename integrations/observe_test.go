package integrations_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/integrations"
	"github.com/rekey-dev/rekey/secret"
	"github.com/rekey-dev/rekey/state"
)

// Test doubles, each with exactly the abilities its name says.

type writeOnly struct{}

func (writeOnly) ID() string { return "w" }
func (writeOnly) Apply(context.Context, integrations.ApplyRequest) (integrations.ApplyResult, error) {
	return integrations.ApplyResult{Changed: true, At: time.Now()}, nil
}

type reader struct {
	writeOnly
	k   secret.Key
	err error
}

func (r reader) Read(context.Context) (secret.Key, error) { return r.k, r.err }

type stamper struct {
	writeOnly
	at time.Time
}

func (s stamper) UpdatedAt(context.Context) (time.Time, error) { return s.at, nil }

type prober struct {
	writeOnly
	err error
}

func (p prober) Verify(context.Context) error { return p.err }

// hiddenReader is a Reader whose target turned out write-only, with a
// timestamp and a probe (a Vercel sensitive variable with verify).
type hiddenReader struct {
	reader
	at       time.Time
	probeErr error
}

func (h hiddenReader) UpdatedAt(context.Context) (time.Time, error) { return h.at, nil }
func (h hiddenReader) Verify(context.Context) error                 { return h.probeErr }

// hiddenNoStamp is a Reader whose target turned out write-only, with a
// probe and no timestamp (a hidden GitLab variable with verify).
type hiddenNoStamp struct {
	reader
	probe *prober
}

type hiddenNoStampProbe struct {
	hiddenNoStamp
}

func (h hiddenNoStampProbe) Verify(ctx context.Context) error { return h.probe.Verify(ctx) }

type person struct{ writeOnly }

func (person) Person() (string, string) { return "<@U0>", "paste it" }

type declared struct {
	reader
	proof state.Proof
}

func (d declared) Proof() state.Proof { return d.proof }

func TestObserveSaysHowEachStateIsProven(t *testing.T) {
	old, cur := secret.New("old-0123456789abcdef"), secret.New("cur-0123456789abcdef")
	rotated := time.Now().Add(-time.Hour)
	wrote := state.Written{Fingerprint: cur.Fingerprint(), At: time.Now()}
	want := integrations.Expect{
		Versions:  map[string]integrations.VersionState{old.Fingerprint(): integrations.VersionSuperseded, cur.Fingerprint(): integrations.VersionCurrent},
		Current:   cur.Fingerprint(),
		RotatedAt: rotated,
		Last:      wrote,
	}
	noRecord := want
	noRecord.Last = state.Written{}
	confirmed := want
	confirmed.Confirmed = state.Written{Fingerprint: cur.Fingerprint(), At: time.Now()}
	hidden := fmt.Errorf("vercel: read FOO: sensitive: %w", integrations.ErrWriteOnly)

	cases := []struct {
		name   string
		in     integrations.Integration
		want   integrations.Expect
		state  state.State
		proof  state.Proof
		reason string
	}{
		{"read back, current", reader{k: cur}, want, state.Current, state.Exact, ""},
		{"read back, stale", reader{k: old}, want, state.Stale, state.Exact, ""},
		{"read back, nothing there", reader{err: fmt.Errorf("x: %w", failure.ErrNotFound)}, want, state.Failing, state.Exact, ""},
		{"read back, unreachable", reader{err: fmt.Errorf("x: %w", failure.ErrTransient)}, want, state.Unknown, state.NoProof, ""},
		{"timestamp of rekey's write", stamper{at: wrote.At}, want, state.Current, state.Timestamp, ""},
		{"timestamp before the rotation", stamper{at: rotated.Add(-time.Hour)}, want, state.Stale, state.Timestamp, ""},
		{"probe only", prober{}, want, state.Current, state.Probe, ""},
		{"probe fails", prober{err: fmt.Errorf("p: status 401: %w", failure.ErrUnauthorized)}, want, state.Failing, state.Probe, ""},
		{"person", person{}, confirmed, state.Current, state.Person, ""},
		{"person, not confirmed", person{}, want, state.Pending, state.Person, ""},

		// A write-only target with neither timestamp nor probe is never current.
		{"write-only, written by rekey", writeOnly{}, want, state.Unknown, state.NoProof, integrations.Unprovable},
		{"write-only, never written", writeOnly{}, noRecord, state.Unknown, state.NoProof, ""},
		{"readable type, hidden value, no timestamp, no probe", reader{err: hidden}, want, state.Unknown, state.NoProof, integrations.Unprovable},

		// A Reader whose value is hidden falls back to its timestamp, then its probe.
		{"hidden value, timestamp", hiddenReader{reader: reader{err: hidden}, at: wrote.At}, want, state.Current, state.Timestamp, ""},
		{"hidden value, written elsewhere, probe", hiddenReader{reader: reader{err: hidden}, at: time.Now().Add(time.Hour)}, want, state.Current, state.Probe, ""},
		{"hidden value, probe only", hiddenNoStampProbe{hiddenNoStamp{reader: reader{err: hidden}, probe: &prober{}}}, want, state.Current, state.Probe, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st := integrations.Observe(context.Background(), c.in, c.want)
			if st.State != c.state || st.Proof != c.proof {
				t.Errorf("Observe = %s, proven by %q (%s); want %s, proven by %q", st.State, st.Proof, st.Reason, c.state, c.proof)
			}
			if c.reason != "" && st.Reason != c.reason {
				t.Errorf("reason %q, want %q", st.Reason, c.reason)
			}
		})
	}
}

func TestProofClass(t *testing.T) {
	cases := []struct {
		in   integrations.Integration
		want state.Proof
	}{
		{reader{}, state.Exact},
		{stamper{}, state.Timestamp},
		{prober{}, state.Probe},
		{person{}, state.Person},
		{writeOnly{}, state.NoProof},
		{declared{proof: state.Timestamp}, state.Timestamp},
	}
	for _, c := range cases {
		if got := integrations.ProofClass(c.in); got != c.want {
			t.Errorf("ProofClass(%T) = %q, want %q", c.in, got, c.want)
		}
	}
}

// SameWrite is the one rule by which Observe (and an Apply that skips a
// write it already made) takes a write-only target's updated_at for
// rekey's recorded write: within two minutes either way, never without a
// record or a time.
func TestSameWrite(t *testing.T) {
	at := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	rec := state.Written{Fingerprint: "fp", At: at}
	for _, c := range []struct {
		name    string
		updated time.Time
		last    state.Written
		want    bool
	}{
		{"same instant", at, rec, true},
		{"two minutes later", at.Add(2 * time.Minute), rec, true},
		{"two minutes earlier", at.Add(-2 * time.Minute), rec, true},
		{"just over two minutes later", at.Add(2*time.Minute + time.Second), rec, false},
		{"just over two minutes earlier", at.Add(-2*time.Minute - time.Second), rec, false},
		{"no record", at, state.Written{}, false},
		{"a record without a fingerprint", at, state.Written{At: at}, false},
		{"a record without a time", time.Time{}.Add(time.Minute), state.Written{Fingerprint: "fp"}, false},
		{"no updated_at", time.Time{}, rec, false},
	} {
		if got := integrations.SameWrite(c.updated, c.last); got != c.want {
			t.Errorf("%s: SameWrite = %v, want %v", c.name, got, c.want)
		}
	}
}
