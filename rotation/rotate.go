package rotation

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/rekey-dev/rekey/notifiers"
	"github.com/rekey-dev/rekey/records"
	"github.com/rekey-dev/rekey/secret"
	"github.com/rekey-dev/rekey/state"
	"github.com/rekey-dev/rekey/store"
)

// NotStoredError means Vault could not be written; no integration was touched.
type NotStoredError struct{ Err error }

func (e *NotStoredError) Error() string {
	return "the new key was not stored, no integration was touched: " + e.Err.Error()
}

func (e *NotStoredError) Unwrap() error { return e.Err }

// Rotate runs one rotation of job.Key to newKey. It returns a
// *RefusedError or *NotStoredError (nothing changed), a
// *store.LockedError (someone else is rotating), or an Outcome once
// the key is stored, whatever became of the integrations.
func (e *Engine) Rotate(ctx context.Context, job Job, newKey secret.Key) (*Outcome, error) {
	e.defaults()
	cur, versions, err := e.Check(ctx, job, newKey)
	if err != nil {
		return nil, err
	}
	e.trace(StepChecked)
	lease, err := e.lock(ctx, job, "rotate")
	if err != nil {
		return nil, err
	}
	r := &run{e: e, job: job, key: newKey, unlock: e.hold(ctx, lease)}
	defer r.unlock()

	st, err := e.beforeStoring(ctx, job, cur, versions)
	if err != nil {
		return nil, err
	}
	if err := r.plan(ctx, cur); err != nil {
		return nil, err
	}
	stored, h, err := r.store(ctx, cur, versions, st)
	if err != nil {
		return nil, err
	}
	e.trace(StepStored)
	r.out = e.newOutbox(ctx)
	r.out.send(notifiers.Event{
		Kind: notifiers.RotationProgress, KeyID: job.Key.ID, RotationID: r.rec.ID, Reason: job.Reason,
		Fingerprint: r.rec.NewFingerprint, OldFingerprint: r.rec.OldFingerprint,
		Title: fmt.Sprintf("New key %s stored in Vault (version %d); updating %d integrations", r.rec.NewFingerprint, r.rec.NewVersion, len(job.Targets)),
	})
	if h != nil { // as just written, with the key's state
		r.want = expectOf(stored, r.rec.NewVersion, r.rec.Stored, h, st)
	} else if r.want, err = e.expect(ctx, job.Key.ID, stored, r.rec.NewVersion, r.rec.Stored); err != nil {
		e.logger().Warn("could not read compromised versions; states may say stale for compromised", "err", err)
	}
	return r.finish(ctx, job.Targets)
}

// beforeStoring checks, holding the lock, that the key is still at the
// version checked, and brings rekey's history up to every version Vault
// holds (with max_versions, storing one more may prune the oldest). It
// returns the key's state.
func (e *Engine) beforeStoring(ctx context.Context, job Job, cur store.KeyVersion, versions []store.KeyVersion) (*records.KeyState, error) {
	if again, err := e.Store.ReadKey(ctx, job.Key.VaultPath); err == nil && again.Version != cur.Version {
		return nil, &RefusedError{Reason: fmt.Sprintf("the key changed in Vault (now version %d) while this rotation started; run it again", again.Version)}
	}
	st, _, err := e.Store.KeyState(ctx, job.Key.ID)
	if err != nil {
		return nil, &NotStoredError{Err: fmt.Errorf("read the key's state: %w", err)}
	}
	if _, err := e.Store.UpdateHistory(ctx, job.Key.ID, func(h *records.History) (bool, error) {
		return h.CatchUp(retained(versions, cur.Version, st, 0, "", false), e.now())
	}); err != nil {
		return nil, &NotStoredError{Err: fmt.Errorf("record the key's history: %w", err)}
	}
	return st, nil
}

// plan puts the rotation's plan on record before the key is stored, so
// that a crash at any later point leaves enough for `rekey resume`.
func (r *run) plan(ctx context.Context, cur store.KeyVersion) error {
	e, job := r.e, r.job
	id := job.RotationID
	if id == "" {
		id = NewID(e.now())
	}
	rec := &records.Rotation{
		ID: id, KeyID: job.Key.ID, Reason: job.Reason, Operator: operatorName(e.Operator),
		Started: e.now(), Phase: records.PhasePlanned,
		OldVersion: cur.Version, OldFingerprint: cur.Fingerprint(),
		NewFingerprint: r.key.Fingerprint(),
		Integrations:   make(map[string]*records.Integration, len(job.Targets)),
		Timeline:       job.Timeline,
	}
	for _, t := range job.Targets {
		rec.Integrations[t.Config.ID] = &records.Integration{ID: t.Config.ID, Type: t.Config.Type, State: state.Waiting, Updated: rec.Started}
	}
	if err := e.Store.SaveRotation(ctx, rec); err != nil {
		return &NotStoredError{Err: fmt.Errorf("record the rotation plan: %w", err)}
	}
	if err := e.Store.UpdateKeyState(ctx, job.Key.ID, func(st *records.KeyState) { st.LatestRotation = id }); err != nil {
		return &NotStoredError{Err: fmt.Errorf("record the rotation plan: %w", err)}
	}
	r.rec = rec
	return nil
}

// store writes the new key to Vault with check-and-set on the version
// checked, then records that it is stored, marks the replaced version
// compromised for a leak, and adds the new version to rekey's history. It
// returns every version Vault now holds, and the history as written (nil
// when it could not be). st is brought up to date.
func (r *run) store(ctx context.Context, cur store.KeyVersion, versions []store.KeyVersion, st *records.KeyState) ([]store.KeyVersion, *records.History, error) {
	e, job, rec := r.e, r.job, r.rec
	version, err := e.Store.WriteKey(ctx, job.Key.VaultPath, r.key, cur.Version, e.metadata(job, rec))
	if err != nil && version == 0 {
		rec.Phase, rec.Error, rec.Finished = records.PhaseAborted, e.redact(err.Error()), e.now()
		if serr := e.Store.SaveRotation(context.WithoutCancel(ctx), rec); serr != nil {
			e.logger().Error("could not record the aborted rotation", "rotation", rec.ID, "err", serr)
		}
		return nil, nil, &NotStoredError{Err: err}
	}
	if err != nil {
		e.logger().Warn("key stored but its metadata was not", "key", job.Key.ID, "err", err)
	}
	rec.Phase, rec.NewVersion, rec.Stored = records.PhaseStored, version, e.now()
	rec.Timeline = append(rec.Timeline, records.Mark{At: rec.Stored, What: fmt.Sprintf("new key %s stored in Vault as version %d", rec.NewFingerprint, version)})
	if err := e.Store.SaveRotation(context.WithoutCancel(ctx), rec); err != nil {
		e.logger().Error("could not record the stored key; `rekey resume` will find it from Vault's metadata", "rotation", rec.ID, "err", err)
	}
	if job.Leak && cur.Version > 0 {
		c := e.markCompromised(ctx, job.Key.ID, cur, rec.ID)
		st.Compromised = maps.Clone(st.Compromised)
		if st.Compromised == nil {
			st.Compromised = map[int]records.CompromisedVersion{}
		}
		st.Compromised[cur.Version] = c
	}
	e.recordIdentity(ctx, job, rec.ID, r.key)
	stored := append(slices.Clone(versions), store.KeyVersion{Version: version, Key: r.key, Created: rec.Stored})
	h, err := e.Store.UpdateHistory(context.WithoutCancel(ctx), job.Key.ID, func(h *records.History) (bool, error) {
		return h.CatchUp(retained(stored, version, st, cur.Version, rec.ID, job.Leak), e.now())
	})
	if err != nil {
		e.logger().Error("could not record the new version in the key's history; the next rotation or audit catches up from Vault", "key", job.Key.ID, "err", err)
		h = nil
	}
	return stored, h, nil
}

// metadata is the custom metadata the new version is stored with. The
// list of integrations is cut to what the store keeps.
func (e *Engine) metadata(job Job, rec *records.Rotation) map[string]string {
	var ids strings.Builder
	for i, t := range job.Targets {
		if ids.Len() > store.MaxMetadataValue {
			break // cut by the store anyway
		}
		if i > 0 {
			ids.WriteByte(',')
		}
		ids.WriteString(t.Config.ID)
	}
	return map[string]string{
		"managed-by":           "rekey",
		"key_id":               job.Key.ID,
		"rotated_at":           rec.Started.Format(time.RFC3339),
		"reason":               job.Reason,
		"rotation_id":          rec.ID,
		"fingerprint":          rec.NewFingerprint,
		"previous_fingerprint": rec.OldFingerprint,
		"operator":             rec.Operator,
		"integrations":         ids.String(),
	}
}

// markCompromised records that version v of the key was replaced by a
// leak, and returns the record of it.
func (e *Engine) markCompromised(ctx context.Context, keyID string, v store.KeyVersion, rotationID string) records.CompromisedVersion {
	c := records.CompromisedVersion{Fingerprint: v.Fingerprint(), At: e.now(), RotationID: rotationID}
	err := e.Store.UpdateKeyState(context.WithoutCancel(ctx), keyID, func(st *records.KeyState) {
		if st.Compromised == nil {
			st.Compromised = map[int]records.CompromisedVersion{}
		}
		st.Compromised[v.Version] = c
	})
	if err != nil {
		e.logger().Error("could not mark the leaked version compromised", "key", keyID, "version", v.Version, "err", err)
	}
	return c
}
