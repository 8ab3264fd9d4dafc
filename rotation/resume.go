package rotation

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/records"
	"github.com/rekey-dev/rekey/state"
	"github.com/rekey-dev/rekey/store"
)

// ErrNothingToResume means the latest rotation needs no further work, or
// stopped before Vault was written.
var ErrNothingToResume = errors.New("nothing to resume")

// Resume applies and verifies again every integration of the key's
// latest rotation that is not current, plus any integration configured
// since. It returns ErrNothingToResume when the latest rotation stopped
// before Vault was written.
func (e *Engine) Resume(ctx context.Context, job Job) (*Outcome, error) {
	e.defaults()
	lease, err := e.lock(ctx, job, "resume")
	if err != nil {
		return nil, err
	}
	r := &run{e: e, job: job, unlock: e.hold(ctx, lease)}
	defer r.unlock()

	rec, err := e.Store.LatestRotation(ctx, job.Key.ID)
	if errors.Is(err, failure.ErrNotFound) {
		return nil, fmt.Errorf("key %s has no rotation on record: %w", job.Key.ID, ErrNothingToResume)
	}
	if err != nil {
		return nil, err
	}
	e.resumeThread(rec)
	cur, err := e.stored(ctx, job, rec)
	if err != nil {
		return nil, err
	}
	versions, _, err := e.Store.Versions(ctx, job.Key.VaultPath)
	if err != nil {
		return nil, err
	}
	// A crash right after the key was stored left it out of the history.
	if r.want, err = e.caughtUp(ctx, job.Key.ID, versions, cur.Version, cur.Created); err != nil {
		return nil, err
	}
	if rec.Integrations == nil {
		rec.Integrations = map[string]*records.Integration{}
	}
	for _, t := range job.Targets {
		if _, ok := rec.Integrations[t.Config.ID]; !ok {
			rec.Integrations[t.Config.ID] = &records.Integration{ID: t.Config.ID, Type: t.Config.Type, State: state.Waiting, Updated: e.now()}
		}
	}
	r.rec, r.key, r.out = rec, cur.Key, e.newOutbox(ctx)
	todo := r.notCurrent(ctx, job.Targets)
	rec.Phase, rec.Finished = records.PhaseStored, time.Time{}
	return r.finish(ctx, todo)
}

// stored returns the version of the key that rec stored, as Vault holds
// it now. Vault holding the rotation's key is what says it was stored: a
// crash right after the write, before the key's metadata or the record
// said so, must not be taken for "nothing changed", or the key would be
// in Vault and in no integration. ErrNothingToResume when it never was.
func (e *Engine) stored(ctx context.Context, job Job, rec *records.Rotation) (store.KeyVersion, error) {
	cur, err := e.Store.ReadKey(ctx, job.Key.VaultPath)
	if err != nil {
		return cur, err
	}
	if rec.Phase == records.PhasePlanned || rec.Phase == records.PhaseAborted {
		if cur.Fingerprint() != rec.NewFingerprint || cur.Version <= rec.OldVersion {
			if rec.Phase == records.PhasePlanned {
				rec.Phase, rec.Finished, rec.Error = records.PhaseAborted, e.now(), "stopped before Vault was written"
				e.Store.SaveRotation(ctx, rec)
			}
			return cur, fmt.Errorf("rotation %s stopped before the new key was stored; nothing changed, run `rekey rotate` again: %w", rec.ID, ErrNothingToResume)
		}
		// The key was stored; the crash came before the record said so.
		rec.Phase, rec.NewVersion, rec.Stored = records.PhaseStored, cur.Version, cur.Created
	}
	if cur.Fingerprint() != rec.NewFingerprint {
		return cur, fmt.Errorf("the key in Vault is now version %d (%s), not rotation %s's key (%s); run `rekey audit` to see where things stand", cur.Version, cur.Fingerprint(), rec.ID, rec.NewFingerprint)
	}
	return cur, nil
}

// notCurrent returns the targets to apply again: every one not recorded
// current, and every one recorded current that no longer is (a file put
// back to an old key since). Those still current are left alone.
func (r *run) notCurrent(ctx context.Context, targets []Target) []Target {
	var recorded []Target
	for _, t := range targets {
		if r.rec.Integrations[t.Config.ID].State == state.Current {
			recorded = append(recorded, t)
		}
	}
	stillCurrent := map[string]bool{}
	for i, st := range r.e.observeAll(ctx, r.want, r.rec, recorded) {
		stillCurrent[recorded[i].Config.ID] = st.State == state.Current
	}
	var todo []Target // in configuration order
	for _, t := range targets {
		if !stillCurrent[t.Config.ID] {
			todo = append(todo, t)
		}
	}
	return todo
}
