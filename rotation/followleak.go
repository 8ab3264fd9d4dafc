package rotation

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/notifiers"
	"github.com/rekey-dev/rekey/records"
	"github.com/rekey-dev/rekey/store"
)

// LeakFollowUp is what FollowLeaks found of one leaked version.
type LeakFollowUp struct {
	Version     int       `json:"version"`
	Fingerprint string    `json:"fingerprint"`
	RotationID  string    `json:"rotation_id,omitempty"`
	Check       LeakCheck `json:"check"`
	// Gone: the store no longer holds the version, so it cannot be asked
	// about any more.
	Gone bool `json:"gone,omitempty"`
	// Containment is the leak's, as recorded after the check (zero when
	// its rotation record could not be read).
	Containment Containment `json:"containment"`
}

// FollowLeaks is the leak follow-up after `rekey leak` has finished: for
// each version of job.Key that a leak replaced and that is not yet known
// dead, it asks job.Checker once whether the leaked key still works. A
// refusal is recorded (the rotation's timeline, where it completes the
// containment, and the key's state, so that the version is not asked
// about again); so is a rotation's own earlier finding that it is dead.
// A version the store no longer holds cannot be asked about: its check
// is LeakUnknown and says so. With provider none, or no checker, there is
// nothing to follow up. The error is a store's that kept the versions
// from being found; what one version's record could not record is
// logged and found again next time.
//
// A version found dead is first given to told (with the containment it
// completes), and recorded only when told returns nil: one that could
// not be told (Slack refused it) stays open, is asked about again next
// time, and told then. A nil told records at once.
func (e *Engine) FollowLeaks(ctx context.Context, job Job, told func(LeakFollowUp) error) ([]LeakFollowUp, error) {
	if job.Key.Provider == "none" || job.Checker == nil {
		return nil, nil
	}
	st, _, err := e.Store.KeyState(ctx, job.Key.ID)
	if errors.Is(err, failure.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var open []int
	for v, c := range st.Compromised {
		if c.Dead.IsZero() {
			open = append(open, v)
		}
	}
	if len(open) == 0 {
		return nil, nil
	}
	sort.Ints(open)
	held := map[int]store.KeyVersion{}
	versions, _, err := e.Store.Versions(ctx, job.Key.VaultPath)
	if err != nil && !errors.Is(err, failure.ErrNotFound) {
		return nil, err
	}
	for _, v := range versions {
		held[v.Version] = v
	}
	var out []LeakFollowUp
	for _, v := range open {
		c := st.Compromised[v]
		f := LeakFollowUp{Version: v, Fingerprint: c.Fingerprint, RotationID: c.RotationID}
		var rec *records.Rotation
		if c.RotationID != "" {
			if r, err := e.Store.Rotation(ctx, job.Key.ID, c.RotationID); err == nil {
				rec = r
			}
		}
		kv, ok := held[v]
		switch {
		case rec != nil && hasMark(rec, MarkOldKeyDead):
			f.Check = LeakCheck{State: LeakDead, Reason: "recorded dead by the leak response", At: markAt(rec, MarkOldKeyDead)}
		case !ok || kv.Fingerprint() != c.Fingerprint:
			f.Gone = true
			f.Check = LeakCheck{State: LeakUnknown, At: e.now(), Reason: fmt.Sprintf("version %d is no longer held in Vault, so whether it still works cannot be asked: check at the provider that it is revoked", v)}
		default:
			f.Check = Verdict(job.Key, job.Checker.Check(ctx, kv.Key), e.now())
		}
		if ctx.Err() != nil {
			return out, nil
		}
		if rec != nil {
			after := rec
			if f.Check.State == LeakDead && !hasMark(rec, MarkOldKeyDead) {
				// The containment the refusal completes, before it is recorded.
				dead := *rec
				dead.Timeline = append(slices.Clone(rec.Timeline), records.Mark{At: f.Check.At, What: MarkOldKeyDead})
				after = &dead
			}
			f.Containment, _ = ContainmentOf(after)
		}
		if f.Check.State == LeakDead {
			if told != nil {
				if err := told(f); err != nil {
					out = append(out, f)
					continue // told and recorded next time
				}
			}
			if rec != nil && !hasMark(rec, MarkOldKeyDead) && rec.OldVersion == v {
				// The timeline, and the key's state with it.
				if _, err := e.RecordContainment(ctx, rec, f.Check); err != nil {
					out = append(out, f)
					continue // asked again next time
				}
			} else if err := e.markDead(ctx, job.Key.ID, v, c.Fingerprint, f.Check); err != nil {
				e.logger().Error("could not record the leaked version dead; it is checked again next time", "key", job.Key.ID, "version", v, "err", err)
			}
		}
		out = append(out, f)
	}
	return out, nil
}

// markDead records in the key's state that version v (of fingerprint fp)
// is dead, as check found it.
func (e *Engine) markDead(ctx context.Context, keyID string, v int, fp string, check LeakCheck) error {
	return e.Store.UpdateKeyState(context.WithoutCancel(ctx), keyID, func(st *records.KeyState) {
		if c, ok := st.Compromised[v]; ok && c.Fingerprint == fp && c.Dead.IsZero() {
			c.Dead = check.At
			st.Compromised[v] = c
		}
	})
}

// LeakContainedEvent tells the team that the key leaked in f's rotation
// is now refused by the provider, and how far the leak is contained.
func LeakContainedEvent(job Job, f LeakFollowUp) notifiers.Event {
	k := job.Key
	text := "Every integration holds the new key: the leak is contained"
	if !f.Containment.Contained.IsZero() {
		text += fmt.Sprintf(", %s after it was declared", f.Containment.TimeToContain.Round(1e9))
	}
	text += "."
	if len(f.Containment.Open) > 0 {
		text = "Still open: " + someIDs(f.Containment.Open) + "."
	}
	return notifiers.Event{
		Kind: notifiers.LeakAlert, KeyID: k.ID, RotationID: f.RotationID, Reason: "leak",
		Fingerprint: f.Fingerprint, Owner: k.Owner,
		Title: fmt.Sprintf("The leaked key of %s (version %d, %s) is now refused by the provider", k.ID, f.Version, f.Fingerprint),
		Text:  text,
	}
}

// LeakUncheckedEvent tells the team, urgently, that the key leaked in
// f's rotation cannot be checked any more (its version is gone from the
// store) and must be confirmed revoked at the provider by hand.
func LeakUncheckedEvent(job Job, f LeakFollowUp) notifiers.Event {
	k := job.Key
	return notifiers.Event{
		Kind: notifiers.LeakAlert, Urgent: true, KeyID: k.ID, RotationID: f.RotationID, Reason: "leak",
		Fingerprint: f.Fingerprint, Owner: k.Owner, Instructions: Instructions(k),
		Title: fmt.Sprintf("The leaked key of %s (version %d, %s) was never confirmed dead", k.ID, f.Version, f.Fingerprint),
		Text:  fmt.Sprintf("%s: %s must make sure it is revoked.", f.Check.Reason, orSomeone(k.Owner)),
	}
}

// UnconfirmedLeaks lists, in order, the versions of keyID that st says a
// leak replaced and that the provider was never found to refuse: the key
// state has no Dead time, and the leak's own record (a record made before
// the key state kept that) has no MarkOldKeyDead either. A record that
// cannot be read counts as not confirmed.
func (e *Engine) UnconfirmedLeaks(ctx context.Context, keyID string, st *records.KeyState) []int {
	var out []int
	for v, c := range st.Compromised {
		if !c.Dead.IsZero() {
			continue
		}
		if c.RotationID != "" {
			if rec, err := e.Store.Rotation(ctx, keyID, c.RotationID); err == nil && hasMark(rec, MarkOldKeyDead) {
				continue
			}
		}
		out = append(out, v)
	}
	sort.Ints(out)
	return out
}

func hasMark(rec *records.Rotation, what string) bool {
	return !markAt(rec, what).IsZero()
}

// markAt is when rec's timeline first has what (zero when never).
func markAt(rec *records.Rotation, what string) (at time.Time) {
	for _, m := range rec.Timeline {
		if m.What == what && (at.IsZero() || m.At.Before(at)) {
			at = m.At
		}
	}
	return at
}
