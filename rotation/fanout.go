package rotation

import (
	"context"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/integrations"
	"github.com/rekey-dev/rekey/notifiers"
	"github.com/rekey-dev/rekey/records"
	"github.com/rekey-dev/rekey/secret"
	"github.com/rekey-dev/rekey/state"
)

// journal holds a rotation's record while integrations update, and writes
// it to Vault when it changed, at most every FlushEvery. A transition lost
// to a crash between flushes only means resume applies that integration
// again, which is idempotent.
type journal struct {
	e     *Engine
	out   *outbox // the run's notifications
	mu    sync.Mutex
	rec   *records.Rotation
	dirty bool
}

func newJournal(e *Engine, rec *records.Rotation, out *outbox) *journal {
	return &journal{e: e, rec: rec, out: out}
}

// move records an integration entering state.
func (j *journal) move(id string, to state.State, reason, fingerprint string, change func(*records.Integration)) {
	now, reason := j.e.now(), j.e.redact(reason)
	j.mu.Lock()
	r := j.rec.Integrations[id]
	from := r.State
	r.State, r.Reason, r.Updated, r.Proof = to, reason, now, ""
	if change != nil {
		change(r)
	}
	j.rec.Journal = append(j.rec.Journal, records.Transition{At: now, Integration: id, From: from, To: to, Fingerprint: fingerprint, Reason: reason})
	if to == state.Current && j.rec.Reason == "leak" {
		j.rec.Timeline = append(j.rec.Timeline, records.Mark{At: now, What: id + " current"})
	}
	j.dirty = true
	j.mu.Unlock()
	if j.e.Progress != nil {
		j.e.Progress(id, to, reason)
	}
	j.e.logger().Debug("integration", "id", id, "from", from, "to", to, "reason", reason)
}

// snapshot copies the record under the lock, cheaply: every
// integration's entry is copied, and the journal and timeline are shared
// up to their current length (they are only ever appended to, so those
// elements never change). The copy is then written without holding the
// lock, so a large record never holds up the integrations.
func (j *journal) snapshot() *records.Rotation {
	j.mu.Lock()
	defer j.mu.Unlock()
	cp := *j.rec
	cp.Integrations = make(map[string]*records.Integration, len(j.rec.Integrations))
	for id, r := range j.rec.Integrations {
		c := *r
		cp.Integrations[id] = &c
	}
	cp.Journal = slices.Clip(j.rec.Journal)
	cp.Timeline = slices.Clip(j.rec.Timeline)
	j.dirty = false
	return &cp
}

func (j *journal) flush(ctx context.Context) error {
	return j.e.Store.SaveRotation(ctx, j.snapshot())
}

// start flushes the journal in the background until the returned func is
// called; that func flushes once more.
func (j *journal) start(ctx context.Context) func() {
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(j.e.FlushEvery)
		defer t.Stop()
		failing := false // say so once, not at every tick
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				j.mu.Lock()
				dirty := j.dirty
				j.mu.Unlock()
				if !dirty {
					continue
				}
				err := j.flush(ctx)
				switch {
				case err != nil && ctx.Err() == nil:
					if !failing {
						j.e.logger().Warn("could not write the rotation journal; integrations carry on, and it is retried", "rotation", j.rec.ID, "err", err)
					}
					failing = true
					j.mu.Lock()
					j.dirty = true
					j.mu.Unlock()
				case err == nil && failing:
					j.e.logger().Warn("the rotation journal is written again", "rotation", j.rec.ID)
					failing = false
				}
			}
		}
	}()
	return func() { cancel(); <-done }
}

// fanOut applies key to every target, at most Concurrency at once, then
// works out each one's state. Targets start in the order given (the
// configuration's), so the first ones listed are updated first when there
// are more than Concurrency. One failure never stops the others.
func (e *Engine) fanOut(ctx context.Context, j *journal, job Job, key secret.Key, want integrations.Expect, targets []Target) {
	sem := make(chan struct{}, e.Concurrency)
	var wg sync.WaitGroup
	for _, t := range targets {
		j.mu.Lock()
		prev := *j.rec.Integrations[t.Config.ID]
		j.mu.Unlock()
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			j.move(t.Config.ID, state.Unknown, "not applied: "+ctx.Err().Error(), "", nil)
			continue
		}
		wg.Go(func() {
			defer func() { <-sem }()
			e.one(ctx, j, job, t, key, want, prev)
		})
	}
	wg.Wait()
}

func (e *Engine) one(ctx context.Context, j *journal, job Job, t Target, key secret.Key, want integrations.Expect, prev records.Integration) {
	id := t.Config.ID
	fp := key.Fingerprint()
	j.move(id, state.Applying, "", fp, nil)
	req := integrations.ApplyRequest{Key: key, RotationID: j.rec.ID, Last: prev.Written}
	res, attempts, err := e.apply(ctx, t.Integration, req)
	if err != nil {
		j.move(id, state.Failing, err.Error(), fp, func(r *records.Integration) { r.Attempts += attempts })
		return
	}
	written := state.Written{Fingerprint: fp, At: res.At}
	if written.At.IsZero() {
		written.At = e.now()
	}
	handoff := ""
	if _, manual := t.Integration.(integrations.Manual); manual {
		written = prev.Written // nothing was written; a person must do it
		handoff = e.handOff(ctx, job, t, key, j.rec.ID)
		j.out.send(notifiers.Event{
			Kind: notifiers.RotationProgress, KeyID: job.Key.ID, RotationID: j.rec.ID, Reason: job.Reason,
			Fingerprint: fp, Owner: t.Config.Owner, Instructions: t.Config.Instructions,
			Title:        t.Config.Owner + ": please update " + id + " with the new key (" + fp + "), then run `rekey confirm " + job.Key.ID + " " + id + "`",
			Text:         handoff,
			Integrations: []notifiers.Integration{{ID: id, Type: t.Config.Type, State: state.Pending, Owner: t.Config.Owner}},
		})
	}
	j.move(id, state.Verifying, "", fp, func(r *records.Integration) {
		r.Attempts += attempts
		r.Written = written
	})
	vctx, cancel := context.WithTimeout(ctx, e.Timeout)
	st := integrations.Observe(vctx, t.Integration, ExpectFor(want, &records.Integration{Written: written, Confirmed: prev.Confirmed}))
	cancel()
	if handoff != "" && st.State == state.Pending {
		st.Reason += "; " + handoff
	}
	j.move(id, st.State, st.Reason, st.Fingerprint, func(r *records.Integration) { r.Proof = st.Proof })
}

// apply runs Apply with a per-attempt timeout, retrying transient failures
// with exponential backoff and jitter (or the wait the target asked for).
func (e *Engine) apply(ctx context.Context, in integrations.Integration, req integrations.ApplyRequest) (integrations.ApplyResult, int, error) {
	var lastErr error
	for attempt := 0; attempt <= e.Retries; attempt++ {
		actx, cancel := context.WithTimeout(ctx, e.Timeout)
		res, err := in.Apply(actx, req)
		cancel()
		if err == nil {
			return res, attempt + 1, nil
		}
		lastErr = err
		if ctx.Err() != nil || !failure.IsTransient(err) || attempt == e.Retries {
			return res, attempt + 1, err
		}
		wait := failure.RetryAfter(err)
		if wait > e.MaxRetryWait {
			// Not worth holding the rotation (and its lock) for: fail
			// now, saying how long; `rekey resume` picks it up later.
			return res, attempt + 1, err
		}
		if wait == 0 {
			wait = e.backoff(attempt)
		}
		e.logger().Info("transient failure; retrying", "integration", in.ID(), "attempt", attempt+1, "wait", wait, "err", err)
		select {
		case <-ctx.Done():
			return integrations.ApplyResult{}, attempt + 1, ctx.Err()
		case <-time.After(wait):
		}
	}
	return integrations.ApplyResult{}, e.Retries + 1, lastErr
}

// backoff is Backoff × 2^attempt, capped, with ±50% jitter.
func (e *Engine) backoff(attempt int) time.Duration {
	d := e.Backoff << attempt
	if d > e.MaxBackoff || d <= 0 {
		d = e.MaxBackoff
	}
	return d/2 + time.Duration(rand.Int64N(int64(d)))
}
