package rotation

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/rekey-dev/rekey/records"
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
// called (finish then writes the closed record).
func (j *journal) start(ctx context.Context) func() {
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		// A record of thousands of integrations takes a while to write:
		// the next flush waits at least four times as long as the last
		// one took, so that writing the journal never takes more than a
		// fifth of the time (and of the machine) the integrations need.
		t := time.NewTimer(j.e.FlushEvery)
		defer t.Stop()
		failing := false // say so once, not at every tick
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			j.mu.Lock()
			dirty := j.dirty
			j.mu.Unlock()
			if !dirty {
				t.Reset(j.e.FlushEvery)
				continue
			}
			began := time.Now()
			err := j.flush(ctx)
			t.Reset(max(j.e.FlushEvery, 4*time.Since(began)))
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
	}()
	return func() { cancel(); <-done }
}
