package rotation

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/integrations"
	"github.com/rekey-dev/rekey/notifiers"
	"github.com/rekey-dev/rekey/records"
	"github.com/rekey-dev/rekey/state"
)

// each calls f(i) for every i in [0, n), at most limit at once, starting
// them in order, so that the first ones are done first when there are
// more than limit. When ctx ends before item i could start, skipped(i)
// is called for it instead (when skipped is not nil). It returns once
// every call has returned. Rotation, resume, audit and preflight all fan
// out through it.
func each(ctx context.Context, limit, n int, f func(i int), skipped func(i int)) {
	if limit <= 0 {
		limit = 1
	}
	sem := make(chan struct{}, limit)
	var wg sync.WaitGroup
	for i := range n {
		started := false
		select {
		case sem <- struct{}{}:
			// When ctx had ended too, select chose at random: not started.
			if started = ctx.Err() == nil; !started {
				<-sem
			}
		case <-ctx.Done():
		}
		if !started {
			if skipped != nil {
				skipped(i)
			}
			continue
		}
		wg.Go(func() {
			defer func() { <-sem }()
			f(i)
		})
	}
	wg.Wait()
}

// fanOut applies the key to every target, at most Concurrency at once,
// then works out each one's state, in the order given (the
// configuration's). One failure never stops the others.
func (r *run) fanOut(ctx context.Context, targets []Target) {
	each(ctx, r.e.Concurrency, len(targets), func(i int) {
		r.one(ctx, targets[i])
	}, func(i int) {
		r.j.move(targets[i].Config.ID, state.Unknown, "not applied: "+ctx.Err().Error(), "", nil)
	})
	r.e.trace(StepFannedOut)
}

// one applies the key to t and works out its state.
func (r *run) one(ctx context.Context, t Target) {
	e, j, job := r.e, r.j, r.job
	id := t.Config.ID
	j.mu.Lock()
	prev := *j.rec.Integrations[id]
	j.mu.Unlock()
	fp := r.key.Fingerprint()
	j.move(id, state.Applying, "", fp, nil)
	req := integrations.ApplyRequest{Key: r.key, RotationID: j.rec.ID, Last: prev.Written}
	res, attempts, err := e.apply(ctx, t.Integration, req)
	if err != nil {
		j.move(id, state.Failing, err.Error(), fp, func(in *records.Integration) { in.Attempts += attempts })
		return
	}
	written := state.Written{Fingerprint: fp, At: res.At}
	if written.At.IsZero() {
		written.At = e.now()
	}
	handoff := ""
	if _, manual := t.Integration.(integrations.Manual); manual {
		written = prev.Written // nothing was written; a person must do it
		handoff = e.handOff(ctx, job, t, r.key, j.rec.ID)
		j.out.send(notifiers.Event{
			Kind: notifiers.RotationProgress, KeyID: job.Key.ID, RotationID: j.rec.ID, Reason: job.Reason,
			Fingerprint: fp, Owner: t.Config.Owner, Instructions: t.Config.Instructions,
			Title:        t.Config.Owner + ": please update " + id + " with the new key (" + fp + "), then run `rekey confirm " + job.Key.ID + " " + id + "`",
			Text:         handoff,
			Integrations: []notifiers.Integration{{ID: id, Type: t.Config.Type, State: state.Pending, Owner: t.Config.Owner}},
		})
	}
	j.move(id, state.Verifying, "", fp, func(in *records.Integration) {
		in.Attempts += attempts
		in.Written = written
	})
	vctx, cancel := context.WithTimeout(ctx, e.Timeout)
	st := integrations.Observe(vctx, t.Integration, ExpectFor(r.want, &records.Integration{Written: written, Confirmed: prev.Confirmed}))
	cancel()
	if handoff != "" && st.State == state.Pending {
		st.Reason += "; " + handoff
	}
	j.move(id, st.State, st.Reason, st.Fingerprint, func(in *records.Integration) { in.Proof = st.Proof })
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
