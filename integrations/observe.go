package integrations

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/secret"
	"github.com/rekey-dev/rekey/state"
)

// VersionState is the standing of one version of a key.
type VersionState string

const (
	VersionCurrent     VersionState = "current"
	VersionSuperseded  VersionState = "superseded"
	VersionCompromised VersionState = "compromised"
)

// Expect is what is known about a key when an integration's state is
// worked out.
type Expect struct {
	// Versions maps each retained version's fingerprint to its standing.
	Versions map[string]VersionState
	// Current is the current version's fingerprint.
	Current string
	// Key is the current version's value, when it was read: a read or a
	// verify probe may authenticate with it ({{key}} in an http
	// integration's read or verify). Observe gives it to them with
	// WithProbeKey; it goes nowhere else.
	Key secret.Key
	// RotatedAt is when the current version was stored.
	RotatedAt time.Time
	// Last is what rekey last recorded writing to this integration.
	Last state.Written
	// Confirmed is set when a person confirmed a manual integration holds
	// the version with this fingerprint.
	Confirmed state.Written
}

// clockSkew is how far a write-only target's updated_at may sit from the
// time rekey recorded writing it and still be the same write.
const clockSkew = 2 * time.Minute

// SameWrite reports whether a write-only target last written at at holds
// rekey's write last: at is within clockSkew of last.At. Observe decides
// by it, and an Apply that skips a write it already made must too, or the
// two disagree about the same target.
func SameWrite(at time.Time, last state.Written) bool {
	if last.Fingerprint == "" || at.IsZero() || last.At.IsZero() {
		return false
	}
	d := at.Sub(last.At)
	return d >= -clockSkew && d <= clockSkew
}

// ErrWriteOnly is what a Reader's Read wraps when its target holds a value
// that cannot be read back (a Netlify secret, a Vercel sensitive
// variable, a hidden GitLab variable). Observe then works out the state
// as for a write-only target: by timestamp, else by verify probe.
var ErrWriteOnly = errors.New("the value cannot be read back")

// Prover is an integration that says how its state is proven when that
// depends on its configuration or on what it found at its target (a
// variable that turned out to be write-only). It is what `rekey check`
// shows before anything is observed.
type Prover interface {
	Proof() state.Proof
}

// ProofClass is how in's state is proven, as far as can be told without
// observing it: what a Prover says; else person for a manual
// integration, exact for a Reader, timestamp for a Timestamper, probe for
// a Verifier, and none when nothing can prove it.
func ProofClass(in Integration) state.Proof {
	if p, ok := in.(Prover); ok {
		return p.Proof()
	}
	switch in.(type) {
	case Manual:
		return state.Person
	case Reader:
		return state.Exact
	case Timestamper:
		return state.Timestamp
	case Verifier:
		return state.Probe
	}
	return state.NoProof
}

// Unprovable is the reason given for a write-only target that has
// neither a timestamp nor a verify probe: it is never current.
const Unprovable = "written, not provable; add a verify probe"

// Observe works out an integration's state from what it can tell, and
// says how it was proven (Status.Proof): read back and compare
// fingerprints (exact); else, for a write-only target, when it was last
// written against what rekey recorded (timestamp); else a person's
// confirmation (person); a verify probe is run when the integration has
// one and nothing better says it is current (probe). A check that cannot
// reach its target gives Unknown, as does a write-only target with
// neither a timestamp nor a probe: it is never Current.
func Observe(ctx context.Context, in Integration, want Expect) state.Status {
	if !want.Key.IsZero() {
		ctx = WithProbeKey(ctx, want.Key)
	}
	if m, ok := in.(Manual); ok {
		return observeManual(ctx, in, m, want)
	}
	if r, ok := in.(Reader); ok {
		k, err := r.Read(ctx)
		switch {
		case err == nil:
			return compare(k, want)
		case !errors.Is(err, ErrWriteOnly):
			return readFailure(err)
		}
	}
	if ts, ok := in.(Timestamper); ok {
		return observeWriteOnly(ctx, in, ts, want)
	}
	if v, ok := in.(Verifier); ok {
		return verify(ctx, v, "verify probe passed")
	}
	return unprovable(want)
}

func unprovable(want Expect) state.Status {
	reason := Unprovable
	if want.Last.Fingerprint == "" {
		reason = "not provable (rekey has no record of writing it, and it cannot be read back); add a verify probe"
	}
	return state.Status{State: state.Unknown, Reason: reason, Proof: state.NoProof}
}

func compare(k secret.Key, want Expect) state.Status {
	fp := k.Fingerprint()
	if k.IsZero() {
		return state.Status{State: state.Failing, Reason: "holds an empty key", Proof: state.Exact}
	}
	switch want.Versions[fp] {
	case VersionCurrent:
		return state.Status{State: state.Current, Reason: "holds the current version", Fingerprint: fp, Proof: state.Exact}
	case VersionSuperseded:
		return state.Status{State: state.Stale, Reason: "holds a superseded version " + fp, Fingerprint: fp, Proof: state.Exact}
	case VersionCompromised:
		return state.Status{State: state.Compromised, Reason: "holds the compromised version " + fp, Fingerprint: fp, Proof: state.Exact}
	}
	return state.Status{State: state.Failing, Reason: "holds a key that is no version rekey knows (" + fp + ")", Fingerprint: fp, Proof: state.Exact}
}

func readFailure(err error) state.Status {
	switch {
	case errors.Is(err, failure.ErrNotFound):
		return state.Status{State: state.Failing, Reason: "holds no key: " + err.Error(), Proof: state.Exact}
	case errors.Is(err, context.Canceled):
		return state.Status{State: state.Unknown, Reason: "check cancelled", Proof: state.NoProof}
	}
	return state.Status{State: state.Unknown, Reason: "could not read back: " + err.Error(), Proof: state.NoProof}
}

func verify(ctx context.Context, v Verifier, okReason string) state.Status {
	err := v.Verify(ctx)
	switch {
	case err == nil:
		return state.Status{State: state.Current, Reason: okReason, Proof: state.Probe}
	case errors.Is(err, context.Canceled), failure.IsTransient(err):
		return state.Status{State: state.Unknown, Reason: "verify probe could not tell: " + err.Error(), Proof: state.NoProof}
	}
	return state.Status{State: state.Failing, Reason: "verify probe failed: " + err.Error(), Proof: state.Probe}
}

func observeManual(ctx context.Context, in Integration, m Manual, want Expect) state.Status {
	owner, instructions := m.Person()
	if want.Confirmed.Fingerprint == "" || want.Confirmed.Fingerprint != want.Current {
		if s, ok := want.Versions[want.Confirmed.Fingerprint]; ok && s == VersionCompromised {
			return state.Status{State: state.Compromised, Reason: "last confirmed holding the compromised version " + want.Confirmed.Fingerprint + "; waiting for " + owner, Proof: state.Person}
		}
		reason := "waiting for " + owner + " to update it and run `rekey confirm`"
		if instructions != "" {
			reason += ": " + instructions
		}
		return state.Status{State: state.Pending, Reason: reason, Proof: state.Person}
	}
	confirmed := "confirmed at " + want.Confirmed.At.UTC().Format(time.RFC3339)
	if v, ok := in.(Verifier); ok {
		st := verify(ctx, v, confirmed+"; verify probe passed")
		if st.State == state.Current {
			st.Proof = state.Person // the person says which version; the probe that it works
		}
		return st
	}
	return state.Status{State: state.Current, Reason: confirmed, Proof: state.Person}
}

func observeWriteOnly(ctx context.Context, in Integration, ts Timestamper, want Expect) state.Status {
	at, err := ts.UpdatedAt(ctx)
	if err != nil {
		return readFailure(err)
	}
	last := want.Last
	switch {
	case SameWrite(at, last):
		switch want.Versions[last.Fingerprint] {
		case VersionCurrent:
			return state.Status{State: state.Current, Reason: "written by rekey at " + at.UTC().Format(time.RFC3339) + " with the current version", Fingerprint: last.Fingerprint, Proof: state.Timestamp}
		case VersionSuperseded:
			return state.Status{State: state.Stale, Reason: "last written by rekey with superseded version " + last.Fingerprint, Fingerprint: last.Fingerprint, Proof: state.Timestamp}
		case VersionCompromised:
			return state.Status{State: state.Compromised, Reason: "last written by rekey with compromised version " + last.Fingerprint, Fingerprint: last.Fingerprint, Proof: state.Timestamp}
		}
		return state.Status{State: state.Unknown, Reason: "last written by rekey with " + last.Fingerprint + ", which is no retained version", Proof: state.NoProof}
	case !want.RotatedAt.IsZero() && at.Before(want.RotatedAt):
		return state.Status{State: state.Stale, Reason: fmt.Sprintf("not updated since the current version was stored (updated_at %s)", at.UTC().Format(time.RFC3339)), Proof: state.Timestamp}
	}
	if v, ok := in.(Verifier); ok {
		return verify(ctx, v, "written outside rekey at "+at.UTC().Format(time.RFC3339)+"; verify probe passed")
	}
	return state.Status{State: state.Unknown, Reason: "written at " + at.UTC().Format(time.RFC3339) + ", not by rekey, and its value cannot be read back: not provable; add a verify probe", Proof: state.NoProof}
}
