package rotation

import (
	"context"
	"fmt"

	"github.com/rekey-dev/rekey/integrations"
	"github.com/rekey-dev/rekey/notifiers"
	"github.com/rekey-dev/rekey/records"
	"github.com/rekey-dev/rekey/state"
)

// NotManualError means confirm was asked of an integration rekey updates itself.
type NotManualError struct{ ID, Type string }

func (e *NotManualError) Error() string {
	return fmt.Sprintf("integration %s is of type %s, which rekey updates itself; only manual integrations are confirmed (use `rekey resume`)", e.ID, e.Type)
}

// Confirm records that a person updated a manual integration with the
// current version, then runs its probe if it has one. The returned
// Result says current, or failing/unknown when the probe did not pass.
func (e *Engine) Confirm(ctx context.Context, job Job, t Target, note string) (Result, error) {
	e.defaults()
	if _, ok := t.Integration.(integrations.Manual); !ok {
		return Result{}, &NotManualError{ID: t.Config.ID, Type: t.Config.Type}
	}
	lease, err := e.lock(ctx, job, "confirm "+t.Config.ID)
	if err != nil {
		return Result{}, err
	}
	unlock := e.hold(ctx, lease)
	defer unlock()

	want, rec, err := e.Expect(ctx, job.Key)
	if err != nil {
		return Result{}, err
	}
	if rec == nil {
		return Result{}, fmt.Errorf("key %s has no rotation on record to confirm against; run `rekey rotate %s` first", job.Key.ID, job.Key.ID)
	}
	if rec.NewFingerprint != want.Current {
		return Result{}, fmt.Errorf("the current version in Vault %s is not rotation %s's key %s; run `rekey audit %s`", want.Current, rec.ID, rec.NewFingerprint, job.Key.ID)
	}
	r, ok := rec.Integrations[t.Config.ID]
	if !ok {
		r = &records.Integration{ID: t.Config.ID, Type: t.Config.Type}
		rec.Integrations[t.Config.ID] = r
	}
	now := e.now()
	from := r.State
	r.Confirmed = state.Written{Fingerprint: want.Current, At: now}
	r.ConfirmedBy, r.Note = operatorName(e.Operator), note
	st := integrations.Observe(ctx, t.Integration, ExpectFor(want, r))
	st.Reason = e.redact(st.Reason)
	r.State, r.Reason, r.Updated, r.Proof = st.State, st.Reason, now, st.Proof
	rec.Journal = append(rec.Journal, records.Transition{At: now, Integration: t.Config.ID, From: from, To: r.State, Fingerprint: want.Current, Reason: "confirmed by " + r.ConfirmedBy + ": " + st.Reason})
	if st.State == state.Current && rec.Reason == "leak" {
		rec.Timeline = append(rec.Timeline, records.Mark{At: now, What: t.Config.ID + " current (confirmed)"})
	}
	if err := e.Store.SaveRotation(ctx, rec); err != nil {
		return Result{}, err
	}
	res := Result{ID: t.Config.ID, Type: t.Config.Type, State: st.State, Reason: st.Reason, Owner: t.Config.Owner, Proof: st.Proof}
	unlock() // recorded: the notifications need no lock

	// Tell the rotation's thread; when this was the last one, the outcome.
	e.resumeThread(rec)
	e.notify(ctx, notifiers.Event{
		Kind: notifiers.RotationProgress, KeyID: job.Key.ID, RotationID: rec.ID, Reason: rec.Reason,
		Fingerprint:  want.Current,
		Title:        fmt.Sprintf("%s confirmed by %s: %s", t.Config.ID, r.ConfirmedBy, st.State),
		Text:         st.Reason,
		Integrations: []notifiers.Integration{{ID: t.Config.ID, Type: t.Config.Type, State: st.State, Reason: st.Reason, Owner: t.Config.Owner}},
	})
	job.Reason = rec.Reason
	if all := (&Outcome{Rotation: rec, Results: results(job, rec)}); all.AllCurrent() {
		ev := finishedEvent(job, rec, all)
		ev.At = now
		e.notify(ctx, ev)
	}
	return res, nil
}
