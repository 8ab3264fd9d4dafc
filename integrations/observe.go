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

// Observe works out an integration's state from what it can tell: read
// back and compare fingerprints, else when it was last written against
// what rekey recorded, else a person's confirmation; a verify probe is
// run when the integration has one and nothing better says it is
// current. A check that cannot reach its target gives Unknown.
func Observe(ctx context.Context, in Integration, want Expect) state.Status {
	if !want.Key.IsZero() {
		ctx = WithProbeKey(ctx, want.Key)
	}
	if m, ok := in.(Manual); ok {
		return observeManual(ctx, in, m, want)
	}
	if r, ok := in.(Reader); ok {
		k, err := r.Read(ctx)
		if err != nil {
			return readFailure(err)
		}
		return compare(k, want)
	}
	if ts, ok := in.(Timestamper); ok {
		return observeWriteOnly(ctx, in, ts, want)
	}
	if v, ok := in.(Verifier); ok {
		return verify(ctx, v, "verify probe passed")
	}
	return state.Status{State: state.Unknown, Reason: "this integration has no read-back or verify probe configured"}
}

func compare(k secret.Key, want Expect) state.Status {
	fp := k.Fingerprint()
	if k.IsZero() {
		return state.Status{State: state.Failing, Reason: "holds an empty key"}
	}
	switch want.Versions[fp] {
	case VersionCurrent:
		return state.Status{State: state.Current, Reason: "holds the current version", Fingerprint: fp}
	case VersionSuperseded:
		return state.Status{State: state.Stale, Reason: "holds a superseded version " + fp, Fingerprint: fp}
	case VersionCompromised:
		return state.Status{State: state.Compromised, Reason: "holds the compromised version " + fp, Fingerprint: fp}
	}
	return state.Status{State: state.Failing, Reason: "holds a key that is no version rekey knows (" + fp + ")", Fingerprint: fp}
}

func readFailure(err error) state.Status {
	switch {
	case errors.Is(err, failure.ErrNotFound):
		return state.Status{State: state.Failing, Reason: "holds no key: " + err.Error()}
	case errors.Is(err, context.Canceled):
		return state.Status{State: state.Unknown, Reason: "check cancelled"}
	case failure.IsTransient(err):
		return state.Status{State: state.Unknown, Reason: "could not read back: " + err.Error()}
	}
	return state.Status{State: state.Unknown, Reason: "could not read back: " + err.Error()}
}

func verify(ctx context.Context, v Verifier, okReason string) state.Status {
	err := v.Verify(ctx)
	switch {
	case err == nil:
		return state.Status{State: state.Current, Reason: okReason}
	case errors.Is(err, context.Canceled), failure.IsTransient(err):
		return state.Status{State: state.Unknown, Reason: "verify probe could not tell: " + err.Error()}
	}
	return state.Status{State: state.Failing, Reason: "verify probe failed: " + err.Error()}
}

func observeManual(ctx context.Context, in Integration, m Manual, want Expect) state.Status {
	owner, instructions := m.Person()
	if want.Confirmed.Fingerprint == "" || want.Confirmed.Fingerprint != want.Current {
		if s, ok := want.Versions[want.Confirmed.Fingerprint]; ok && s == VersionCompromised {
			return state.Status{State: state.Compromised, Reason: "last confirmed holding the compromised version " + want.Confirmed.Fingerprint + "; waiting for " + owner}
		}
		reason := "waiting for " + owner + " to update it and run `rekey confirm`"
		if instructions != "" {
			reason += ": " + instructions
		}
		return state.Status{State: state.Pending, Reason: reason}
	}
	confirmed := "confirmed at " + want.Confirmed.At.UTC().Format(time.RFC3339)
	if v, ok := in.(Verifier); ok {
		return verify(ctx, v, confirmed+"; verify probe passed")
	}
	return state.Status{State: state.Current, Reason: confirmed}
}

func observeWriteOnly(ctx context.Context, in Integration, ts Timestamper, want Expect) state.Status {
	at, err := ts.UpdatedAt(ctx)
	if err != nil {
		return readFailure(err)
	}
	last := want.Last
	sameWrite := last.Fingerprint != "" && !at.Before(last.At.Add(-clockSkew)) && !at.After(last.At.Add(clockSkew))
	switch {
	case sameWrite:
		switch want.Versions[last.Fingerprint] {
		case VersionCurrent:
			return state.Status{State: state.Current, Reason: "written by rekey at " + at.UTC().Format(time.RFC3339) + " with the current version", Fingerprint: last.Fingerprint}
		case VersionSuperseded:
			return state.Status{State: state.Stale, Reason: "last written by rekey with superseded version " + last.Fingerprint, Fingerprint: last.Fingerprint}
		case VersionCompromised:
			return state.Status{State: state.Compromised, Reason: "last written by rekey with compromised version " + last.Fingerprint, Fingerprint: last.Fingerprint}
		}
		return state.Status{State: state.Unknown, Reason: "last written by rekey with " + last.Fingerprint + ", which is no retained version"}
	case !want.RotatedAt.IsZero() && at.Before(want.RotatedAt):
		return state.Status{State: state.Stale, Reason: fmt.Sprintf("not updated since the current version was stored (updated_at %s)", at.UTC().Format(time.RFC3339))}
	}
	if v, ok := in.(Verifier); ok {
		return verify(ctx, v, "written outside rekey at "+at.UTC().Format(time.RFC3339)+"; verify probe passed")
	}
	return state.Status{State: state.Unknown, Reason: "written at " + at.UTC().Format(time.RFC3339) + ", not by rekey; its value cannot be read back"}
}
