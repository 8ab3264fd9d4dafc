package rotation

import (
	"context"
	"errors"
	"time"

	"github.com/rekey-dev/rekey/config"
	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/integrations"
	"github.com/rekey-dev/rekey/records"
	"github.com/rekey-dev/rekey/state"
	"github.com/rekey-dev/rekey/store"
)

// Expect builds what the key's integrations are measured against: every
// retained version, the compromised ones, and the current one.
func (e *Engine) Expect(ctx context.Context, key config.Key) (integrations.Expect, *records.Rotation, error) {
	versions, current, err := e.Store.Versions(ctx, key.VaultPath)
	if err != nil {
		return integrations.Expect{}, nil, err
	}
	var rotatedAt time.Time
	for _, v := range versions {
		if v.Version == current {
			rotatedAt = v.Created
		}
	}
	want, err := e.caughtUp(ctx, key.ID, versions, current, rotatedAt)
	if err != nil {
		return want, nil, err
	}
	rec, err := e.Store.LatestRotation(ctx, key.ID)
	if err != nil && !errors.Is(err, failure.ErrNotFound) {
		return want, nil, err
	}
	return want, rec, nil
}

// caughtUp brings the key's history up to the versions Vault holds
// (catchUp), then builds what integrations are measured against from the
// state and history catchUp read and wrote: each is read once.
func (e *Engine) caughtUp(ctx context.Context, keyID string, versions []store.KeyVersion, current int, rotatedAt time.Time) (integrations.Expect, error) {
	st, h, err := e.catchUp(ctx, keyID, versions, current)
	if err != nil {
		return expectOf(versions, current, rotatedAt, nil, nil), err
	}
	if h == nil { // not written (a token that may only read): as it stands
		if h, _, err = e.Store.History(ctx, keyID); err != nil && !errors.Is(err, failure.ErrNotFound) {
			return expectOf(versions, current, rotatedAt, nil, st), err
		}
	}
	return expectOf(versions, current, rotatedAt, h, st), nil
}

func (e *Engine) expect(ctx context.Context, keyID string, versions []store.KeyVersion, current int, rotatedAt time.Time) (integrations.Expect, error) {
	h, _, err := e.Store.History(ctx, keyID)
	if err != nil && !errors.Is(err, failure.ErrNotFound) {
		return expectOf(versions, current, rotatedAt, nil, nil), err
	}
	st, _, err := e.Store.KeyState(ctx, keyID)
	if err != nil {
		return expectOf(versions, current, rotatedAt, h, nil), err
	}
	return expectOf(versions, current, rotatedAt, h, st), nil
}

// expectOf is what integrations are measured against, given the versions
// Vault holds (current is the current one's number), rekey's history of
// the key (nil: none) and its state (nil: unknown).
func expectOf(versions []store.KeyVersion, current int, rotatedAt time.Time, h *records.History, st *records.KeyState) integrations.Expect {
	want := integrations.Expect{Versions: map[string]integrations.VersionState{}, RotatedAt: rotatedAt}
	for _, v := range versions {
		fp := v.Fingerprint()
		if v.Version == current {
			want.Current, want.Key = fp, v.Key
			want.Versions[fp] = integrations.VersionCurrent
		} else if _, done := want.Versions[fp]; !done {
			want.Versions[fp] = integrations.VersionSuperseded
		}
	}
	// Versions Vault no longer holds are known from rekey's history: an
	// integration holding one is stale, or compromised, never "a key
	// rekey does not know".
	if h != nil {
		for _, v := range h.Versions {
			switch {
			case v.Standing == records.StandingCompromised:
				want.Versions[v.Fingerprint] = integrations.VersionCompromised
			case want.Versions[v.Fingerprint] == "":
				want.Versions[v.Fingerprint] = integrations.VersionSuperseded
			}
		}
	}
	// A compromised version stays compromised, even stored again as the
	// current one: a leaked key is never called current.
	if st != nil {
		for _, c := range st.Compromised {
			want.Versions[c.Fingerprint] = integrations.VersionCompromised
		}
	}
	return want
}

// retained lists versions for History.CatchUp: current is Vault's current
// version, and replaced (when not 0) the version rotationID replaced,
// compromised when leaked.
func retained(versions []store.KeyVersion, current int, st *records.KeyState, replaced int, rotationID string, leaked bool) []records.Retained {
	out := make([]records.Retained, 0, len(versions))
	for _, v := range versions {
		r := records.Retained{Version: v.Version, Key: v.Key, Stored: v.Created, Current: v.Version == current}
		if c, ok := st.Compromised[v.Version]; ok && c.Fingerprint == v.Fingerprint() {
			r.Compromised = true
		}
		if v.Version == replaced {
			r.Compromised = r.Compromised || leaked
			r.RotationID = rotationID
		}
		if r.Current {
			r.RotationID = rotationID
		}
		out = append(out, r)
	}
	return out
}

// catchUp brings the key's history up to the versions Vault holds (seeds
// it the first time), as far as Vault and the records can be written: a
// failure to write is only logged, the next rotation or audit tries
// again. It returns the key's state, and the history as written (nil when
// it could not be); the error is the state's, which could not be read.
func (e *Engine) catchUp(ctx context.Context, keyID string, versions []store.KeyVersion, current int) (*records.KeyState, *records.History, error) {
	st, _, err := e.Store.KeyState(ctx, keyID)
	if err != nil {
		e.logger().Warn("could not bring the key's history up to date", "key", keyID, "err", err)
		return nil, nil, err
	}
	h, err := e.Store.UpdateHistory(ctx, keyID, func(h *records.History) (bool, error) {
		return h.CatchUp(retained(versions, current, st, 0, "", false), e.now())
	})
	if err != nil {
		e.logger().Warn("could not bring the key's history up to date", "key", keyID, "err", err)
		return st, nil, nil
	}
	return st, h, nil
}

// ExpectFor narrows want to one integration's records.
func ExpectFor(want integrations.Expect, r *records.Integration) integrations.Expect {
	if r != nil {
		want.Last, want.Confirmed = r.Written, r.Confirmed
	}
	return want
}

// observeAll works out the state of each target, against its record in rec
// (which may be nil), at most Concurrency at once, each within Timeout. A
// target not reached before ctx ends is unknown.
func (e *Engine) observeAll(ctx context.Context, want integrations.Expect, rec *records.Rotation, targets []Target) []state.Status {
	out := make([]state.Status, len(targets))
	each(ctx, e.Concurrency, len(targets), func(i int) {
		var r *records.Integration
		if rec != nil {
			r = rec.Integrations[targets[i].Config.ID]
		}
		octx, cancel := context.WithTimeout(ctx, e.Timeout)
		defer cancel()
		out[i] = integrations.Observe(octx, targets[i].Integration, ExpectFor(want, r))
	}, func(i int) {
		out[i] = state.Status{State: state.Unknown, Reason: "not checked: " + ctx.Err().Error(), Proof: state.NoProof}
	})
	return out
}
