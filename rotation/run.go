package rotation

import (
	"context"
	"slices"
	"time"

	"github.com/rekey-dev/rekey/integrations"
	"github.com/rekey-dev/rekey/records"
	"github.com/rekey-dev/rekey/secret"
	"github.com/rekey-dev/rekey/state"
)

// run is one rotation or resume of one key while it updates the
// integrations: what its steps share.
type run struct {
	e    *Engine
	job  Job
	rec  *records.Rotation   // the record, guarded by j.mu once the journal runs
	key  secret.Key          // the key the integrations get
	want integrations.Expect // what their states are measured against
	out  *outbox             // the run's notifications, in order
	j    *journal            // rec's journal, written while integrations update
	// unlock releases the rotation lock (safe to call more than once).
	unlock func()
}

// finish applies the key to targets, verifies each, closes the record and
// reports. Integrations of the record not in targets keep their recorded
// state. Once the outcome is recorded, the rotation lock is released;
// only then are the notifications still queued delivered, and the final
// one after them: a notifier told to wait (Slack's Retry-After) never
// keeps the key locked.
func (r *run) finish(ctx context.Context, targets []Target) (*Outcome, error) {
	e, rec := r.e, r.rec
	r.j = newJournal(e, rec, r.out)
	stopFlush := r.j.start(ctx)
	r.fanOut(ctx, targets)
	stopFlush()

	r.j.mu.Lock()
	rec.Phase, rec.Finished = records.PhaseDone, e.now()
	allCurrent := true
	for _, in := range rec.Integrations {
		if in.State != state.Current {
			allCurrent = false
		}
	}
	if allCurrent && r.job.Reason == "leak" {
		rec.Timeline = append(rec.Timeline, records.Mark{At: rec.Finished, What: MarkAllCurrent})
	}
	e.rememberThread(rec)
	r.j.mu.Unlock()
	outcome := &Outcome{Rotation: rec, Results: results(r.job, rec)}
	if err := e.flushFinal(ctx, r.j); err != nil {
		outcome.RecordErr = err
		e.logger().Error("could not record the rotation's outcome in Vault; the integrations are as shown, but rekey's records lag behind: run `rekey resume "+r.job.Key.ID+"` once Vault answers",
			"rotation", rec.ID, "err", err)
	}
	e.trace(StepRecorded)
	r.unlock()
	r.out.close()
	e.notify(ctx, finishedEvent(r.job, rec, outcome))
	return outcome, nil
}

// flushFinal writes the closed record, trying again a few times with
// backoff: Vault may be back in a moment (a leader election, an unseal).
func (e *Engine) flushFinal(ctx context.Context, j *journal) error {
	ctx = context.WithoutCancel(ctx)
	wait := e.Backoff
	var err error
	for attempt := range 4 {
		if attempt > 0 {
			time.Sleep(wait)
			wait = min(2*wait, e.MaxBackoff)
		}
		if err = j.flush(ctx); err == nil {
			return nil
		}
	}
	return err
}

func results(job Job, rec *records.Rotation) []Result {
	owners := make(map[string]string, len(job.Targets))
	for _, t := range job.Targets {
		owners[t.Config.ID] = t.Config.Owner
	}
	out := make([]Result, 0, len(rec.Integrations))
	for _, in := range orderedIDs(job, rec) {
		r := rec.Integrations[in]
		res := Result{ID: r.ID, Type: r.Type, State: r.State, Reason: r.Reason, Owner: owners[r.ID], Proof: r.Proof}
		if !r.State.Final() {
			res.State, res.Reason = state.Unknown, "not reached: "+string(r.State)
		}
		out = append(out, res)
	}
	return out
}

// orderedIDs lists rec's integrations in configuration order, then any
// that are no longer configured.
func orderedIDs(job Job, rec *records.Rotation) []string {
	seen := map[string]bool{}
	var ids []string
	for _, t := range job.Targets {
		if _, ok := rec.Integrations[t.Config.ID]; ok && !seen[t.Config.ID] {
			ids = append(ids, t.Config.ID)
			seen[t.Config.ID] = true
		}
	}
	var rest []string
	for id := range rec.Integrations {
		if !seen[id] {
			rest = append(rest, id)
		}
	}
	slices.Sort(rest)
	return append(ids, rest...)
}
