// Package rotation is rekey's engine: it checks a new key, takes the key's
// lock, stores the key in Vault with check-and-set, applies it to every
// integration at once, verifies each, journals every step and reports.
// It does no I/O of its own beyond the interfaces it is given.
package rotation

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/rekey-dev/rekey/config"
	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/integrations"
	"github.com/rekey-dev/rekey/notifiers"
	"github.com/rekey-dev/rekey/providers"
	"github.com/rekey-dev/rekey/records"
	"github.com/rekey-dev/rekey/secret"
	"github.com/rekey-dev/rekey/state"
	"github.com/rekey-dev/rekey/vaultstore"
)

// Store is what the engine needs from Vault; *vaultstore.Store is one.
type Store interface {
	ReadKey(ctx context.Context, vaultPath string) (vaultstore.KeyVersion, error)
	Versions(ctx context.Context, vaultPath string) ([]vaultstore.KeyVersion, int, error)
	WriteKey(ctx context.Context, vaultPath string, key secret.Key, cas int, meta map[string]string) (int, error)
	Lock(ctx context.Context, keyID string, holder records.Lock, ttl time.Duration) (*vaultstore.Lease, error)
	SaveRotation(ctx context.Context, r *records.Rotation) error
	Rotation(ctx context.Context, keyID, id string) (*records.Rotation, error)
	LatestRotation(ctx context.Context, keyID string) (*records.Rotation, error)
	KeyState(ctx context.Context, keyID string) (*records.KeyState, int, error)
	UpdateKeyState(ctx context.Context, keyID string, change func(*records.KeyState)) error
	// History is rekey's own history of the key's versions (keyed hashes,
	// never keys); failure.ErrNotFound when there is none yet.
	History(ctx context.Context, keyID string) (*records.History, int, error)
	// UpdateHistory applies change with check-and-set, retrying on
	// conflict; a key without one starts from an empty history with a new
	// salt. Nothing is written when change reports no change.
	UpdateHistory(ctx context.Context, keyID string, change func(*records.History) (bool, error)) (*records.History, error)
}

var _ Store = (*vaultstore.Store)(nil)

// Target is one integration of the key being rotated.
type Target struct {
	Config      config.Integration
	Integration integrations.Integration
}

// Job is one key and everything needed to rotate it.
type Job struct {
	Key     config.Key
	Targets []Target
	Checker providers.Checker
	Reason  string // scheduled, manual or leak
	// RotationID, if set, is used for the new rotation (the CLI makes it
	// early so the first Slack message and the record share it).
	RotationID string
	// Leak marks the replaced version compromised once the new one is stored.
	Leak bool
	// Timeline holds incident marks made before the engine ran.
	Timeline []records.Mark
	// Identity, when set (TakeIdentity, in the preflight), is the
	// wrong-group guard: Check refuses a key of another group.
	Identity *IdentityCheck
}

// Engine runs rotations. Zero values of the tuning fields take defaults.
type Engine struct {
	Store    Store
	Notifier notifiers.Notifier // may be nil
	Logger   *slog.Logger       // may be nil
	// Progress, if set, is told of every state an integration enters.
	Progress func(integrationID string, s state.State, detail string)
	// Redact, if set, is applied to every reason and error the engine
	// records, reports or notifies (the second wall: secret.Redactor).
	Redact func(string) string
	// Handoffs, if set, makes, opens and follows hand-off codes for manual
	// integrations with a handoff (handoff.go).
	Handoffs *Handoffs

	Concurrency int
	Timeout     time.Duration // per attempt
	Retries     int           // on transient failures
	Backoff     time.Duration // first retry's wait; doubles, with jitter
	MaxBackoff  time.Duration
	LockTTL     time.Duration
	FlushEvery  time.Duration // how often the journal is written while applying
	// MaxRetryWait is the longest wait a target may ask for (Retry-After,
	// a rate limit's reset) that is honoured; a longer one fails the
	// integration at once, with the wait in its reason, for `rekey
	// resume` to pick up later.
	MaxRetryWait time.Duration
	// CheckTimeout bounds the provider check of a new key, waits for its
	// rate limit included. A check that cannot finish in time says unknown.
	CheckTimeout time.Duration

	// Operator is who runs the rotation (user, host, pid, command).
	Operator records.Lock
	// AllowUnverified stores a key the provider could not check (unknown).
	AllowUnverified bool

	Now func() time.Time
}

func (e *Engine) now() time.Time {
	if e.Now != nil {
		return e.Now().UTC()
	}
	return time.Now().UTC()
}

func (e *Engine) redact(s string) string {
	if e.Redact == nil {
		return s
	}
	return e.Redact(s)
}

func (e *Engine) logger() *slog.Logger {
	if e.Logger != nil {
		return e.Logger
	}
	return slog.New(slog.DiscardHandler)
}

func (e *Engine) defaults() {
	if e.Concurrency <= 0 {
		e.Concurrency = config.DefaultConcurrency
	}
	if e.Timeout <= 0 {
		e.Timeout = config.DefaultTimeout.D()
	}
	if e.Backoff <= 0 {
		e.Backoff = 500 * time.Millisecond
	}
	if e.MaxBackoff <= 0 {
		e.MaxBackoff = 30 * time.Second
	}
	if e.LockTTL <= 0 {
		e.LockTTL = 2 * time.Minute
	}
	if e.FlushEvery <= 0 {
		e.FlushEvery = 200 * time.Millisecond
	}
	if e.MaxRetryWait <= 0 {
		e.MaxRetryWait = 5 * time.Minute
	}
}

func (e *Engine) checkTimeout() time.Duration {
	if e.CheckTimeout > 0 {
		return e.CheckTimeout
	}
	return time.Minute
}

// MinKeyLen is the shortest key rekey stores. Action Network's keys are 32
// characters; a shorter paste is a mistake, and a key short enough could
// be recovered from its fingerprint.
const MinKeyLen = 16

// RefusedError means the new key was refused before anything was written.
type RefusedError struct{ Reason string }

func (e *RefusedError) Error() string { return "new key refused: " + e.Reason }

// NotStoredError means Vault could not be written; no integration was touched.
type NotStoredError struct{ Err error }

func (e *NotStoredError) Error() string {
	return "the new key was not stored, no integration was touched: " + e.Err.Error()
}
func (e *NotStoredError) Unwrap() error { return e.Err }

// ErrNothingToResume means the latest rotation needs no further work, or
// stopped before Vault was written.
var ErrNothingToResume = errors.New("nothing to resume")

// NewID returns a rotation id: UTC time and a random suffix.
func NewID(now time.Time) string {
	b := make([]byte, 3)
	rand.Read(b)
	return now.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b)
}

// Result is one integration's outcome.
type Result struct {
	ID     string      `json:"id"`
	Type   string      `json:"type"`
	State  state.State `json:"state"`
	Reason string      `json:"reason,omitempty"`
	Owner  string      `json:"owner,omitempty"`
	// Proof is how the state was proven (exact, timestamp, probe,
	// person, none); empty when it was not observed (a failed write).
	Proof state.Proof `json:"proof,omitempty"`
}

// Outcome is what a rotation, resume or confirm ended with.
type Outcome struct {
	Rotation *records.Rotation
	Results  []Result
	// RecordErr is set when the outcome could not be written to Vault
	// (unreachable, sealed): the integrations are as Results say, but
	// rekey's records lag behind until `rekey resume` runs again.
	RecordErr error
}

// AllCurrent reports whether every integration is current and that is on
// record in Vault.
func (o *Outcome) AllCurrent() bool {
	if o.RecordErr != nil {
		return false
	}
	for _, r := range o.Results {
		if r.State != state.Current {
			return false
		}
	}
	return true
}

// Check validates a candidate key against what Vault holds, rekey's
// history of the key's versions and the provider, without writing
// anything. It returns the current version (zero when the key has none
// yet) and every retained version. A key equal to any version rekey has
// known, retained by Vault or pruned, is refused.
func (e *Engine) Check(ctx context.Context, job Job, key secret.Key) (vaultstore.KeyVersion, []vaultstore.KeyVersion, error) {
	if key.IsZero() {
		return vaultstore.KeyVersion{}, nil, &RefusedError{Reason: "it is empty"}
	}
	if reason := BadShape(key); reason != "" {
		return vaultstore.KeyVersion{}, nil, &RefusedError{Reason: reason}
	}
	if key.Len() < MinKeyLen {
		// A fingerprint is shown everywhere; a key this short could be
		// found from it by trying them all.
		return vaultstore.KeyVersion{}, nil, &RefusedError{Reason: fmt.Sprintf("it is %d bytes long; API keys are at least %d (a partial paste?)", key.Len(), MinKeyLen)}
	}
	cur, err := e.Store.ReadKey(ctx, job.Key.VaultPath)
	if err != nil && !errors.Is(err, failure.ErrNotFound) {
		return cur, nil, err
	}
	var versions []vaultstore.KeyVersion
	if err == nil {
		if cur.Key.Equal(key) {
			return cur, nil, &RefusedError{Reason: "it is the current version (" + key.Fingerprint() + "); paste the key Action Network shows after REVOKE & GENERATE NEW KEY"}
		}
		if versions, _, err = e.Store.Versions(ctx, job.Key.VaultPath); err != nil {
			return cur, nil, err
		}
		for _, v := range versions {
			if v.Key.Equal(key) {
				return cur, versions, &RefusedError{Reason: fmt.Sprintf("it is version %d (%s), an earlier version of this key", v.Version, key.Fingerprint())}
			}
		}
	}
	h, _, err := e.Store.History(ctx, job.Key.ID)
	if err != nil && !errors.Is(err, failure.ErrNotFound) {
		return cur, versions, fmt.Errorf("read the history of %s: %w", job.Key.ID, err)
	}
	if h != nil {
		if v, ok := h.Find(key); ok {
			return cur, versions, &RefusedError{Reason: fmt.Sprintf("it is version %d (%s, %s since %s), an earlier version of this key that Vault no longer holds",
				v.Version, v.Fingerprint, v.Standing, v.Since.Format(time.DateOnly))}
		}
	}
	if job.Checker != nil {
		cctx, cancel := context.WithTimeout(ctx, e.checkTimeout())
		res := job.Checker.Check(cctx, key)
		cancel()
		switch res.Validity {
		case providers.Invalid:
			return cur, versions, &RefusedError{Reason: "the provider rejected it: " + res.Reason}
		case providers.Unknown:
			if !e.AllowUnverified {
				return cur, versions, &RefusedError{Reason: "the provider could not check it: " + res.Reason +
					"; try again when it answers, or store the key unchecked with --allow-unverified"}
			}
			e.logger().Warn("storing a key the provider could not check", "key", job.Key.ID, "reason", res.Reason)
		}
	}
	if err := e.checkGroup(ctx, job, key); err != nil {
		return cur, versions, err
	}
	return cur, versions, nil
}

// Rotate runs one rotation of job.Key to newKey. It returns a
// *RefusedError or *NotStoredError (nothing changed), a
// *vaultstore.LockedError (someone else is rotating), or an Outcome once
// the key is stored, whatever became of the integrations.
func (e *Engine) Rotate(ctx context.Context, job Job, newKey secret.Key) (*Outcome, error) {
	e.defaults()
	cur, versions, err := e.Check(ctx, job, newKey)
	if err != nil {
		return nil, err
	}
	lease, err := e.lock(ctx, job, "rotate")
	if err != nil {
		return nil, err
	}
	unlock := e.hold(ctx, lease)
	defer unlock()

	// The lock is ours; the key may have changed while we waited.
	if again, err := e.Store.ReadKey(ctx, job.Key.VaultPath); err == nil && again.Version != cur.Version {
		return nil, &RefusedError{Reason: fmt.Sprintf("the key changed in Vault (now version %d) while this rotation started; run it again", again.Version)}
	}
	// Every version Vault holds is in rekey's history before a new one is
	// stored: with max_versions, storing one may prune the oldest.
	st, _, err := e.Store.KeyState(ctx, job.Key.ID)
	if err != nil {
		return nil, &NotStoredError{Err: fmt.Errorf("read the key's state: %w", err)}
	}
	if _, err := e.Store.UpdateHistory(ctx, job.Key.ID, func(h *records.History) (bool, error) {
		return h.CatchUp(retained(versions, cur.Version, st, 0, "", false), e.now())
	}); err != nil {
		return nil, &NotStoredError{Err: fmt.Errorf("record the key's history: %w", err)}
	}

	id := job.RotationID
	if id == "" {
		id = NewID(e.now())
	}
	rec := &records.Rotation{
		ID: id, KeyID: job.Key.ID, Reason: job.Reason, Operator: operatorName(e.Operator),
		Started: e.now(), Phase: records.PhasePlanned,
		OldVersion: cur.Version, OldFingerprint: cur.Fingerprint(),
		NewFingerprint: newKey.Fingerprint(),
		Integrations:   map[string]*records.Integration{},
		Timeline:       job.Timeline,
	}
	for _, t := range job.Targets {
		rec.Integrations[t.Config.ID] = &records.Integration{ID: t.Config.ID, Type: t.Config.Type, State: state.Waiting, Updated: rec.Started}
	}
	// The plan is on record before Vault is written, so a crash at any
	// later point leaves enough for `rekey resume`.
	if err := e.Store.SaveRotation(ctx, rec); err != nil {
		return nil, &NotStoredError{Err: fmt.Errorf("record the rotation plan: %w", err)}
	}
	if err := e.Store.UpdateKeyState(ctx, job.Key.ID, func(st *records.KeyState) { st.LatestRotation = id }); err != nil {
		return nil, &NotStoredError{Err: fmt.Errorf("record the rotation plan: %w", err)}
	}

	version, err := e.Store.WriteKey(ctx, job.Key.VaultPath, newKey, cur.Version, e.metadata(job, rec))
	if err != nil && version == 0 {
		rec.Phase, rec.Error, rec.Finished = records.PhaseAborted, e.redact(err.Error()), e.now()
		if serr := e.Store.SaveRotation(context.WithoutCancel(ctx), rec); serr != nil {
			e.logger().Error("could not record the aborted rotation", "rotation", id, "err", serr)
		}
		return nil, &NotStoredError{Err: err}
	}
	if err != nil {
		e.logger().Warn("key stored but its metadata was not", "key", job.Key.ID, "err", err)
	}
	rec.Phase, rec.NewVersion, rec.Stored = records.PhaseStored, version, e.now()
	rec.Timeline = append(rec.Timeline, records.Mark{At: rec.Stored, What: fmt.Sprintf("new key %s stored in Vault as version %d", rec.NewFingerprint, version)})
	if err := e.Store.SaveRotation(context.WithoutCancel(ctx), rec); err != nil {
		e.logger().Error("could not record the stored key; `rekey resume` will find it from Vault's metadata", "rotation", id, "err", err)
	}
	if job.Leak && cur.Version > 0 {
		e.markCompromised(ctx, job.Key.ID, cur, id)
	}
	e.recordIdentity(ctx, job, id, newKey)
	stored := append(slices.Clone(versions), vaultstore.KeyVersion{Version: version, Key: newKey, Created: rec.Stored})
	if _, err := e.Store.UpdateHistory(context.WithoutCancel(ctx), job.Key.ID, func(h *records.History) (bool, error) {
		return h.CatchUp(retained(stored, version, st, cur.Version, id, job.Leak), e.now())
	}); err != nil {
		e.logger().Error("could not record the new version in the key's history; the next rotation or audit catches up from Vault", "key", job.Key.ID, "err", err)
	}
	out := e.newOutbox(ctx)
	out.send(notifiers.Event{
		Kind: notifiers.RotationProgress, KeyID: job.Key.ID, RotationID: id, Reason: job.Reason,
		Fingerprint: rec.NewFingerprint, OldFingerprint: rec.OldFingerprint,
		Title: fmt.Sprintf("New key %s stored in Vault (version %d); updating %d integrations", rec.NewFingerprint, version, len(job.Targets)),
	})

	want, err := e.expect(ctx, job.Key.ID, stored, version, rec.Stored)
	if err != nil {
		e.logger().Warn("could not read compromised versions; states may say stale for compromised", "err", err)
	}
	return e.finish(ctx, job, rec, newKey, want, job.Targets, out, unlock)
}

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
	unlock := e.hold(ctx, lease)
	defer unlock()

	rec, err := e.Store.LatestRotation(ctx, job.Key.ID)
	if errors.Is(err, failure.ErrNotFound) {
		return nil, fmt.Errorf("key %s has no rotation on record: %w", job.Key.ID, ErrNothingToResume)
	}
	if err != nil {
		return nil, err
	}
	e.resumeThread(rec)
	cur, err := e.Store.ReadKey(ctx, job.Key.VaultPath)
	if err != nil {
		return nil, err
	}
	if rec.Phase == records.PhasePlanned || rec.Phase == records.PhaseAborted {
		// Vault holding this rotation's key is what says it was stored:
		// a crash right after the write, before the key's metadata or the
		// record said so, must not be taken for "nothing changed", or the
		// key would be in Vault and in no integration.
		if cur.Fingerprint() != rec.NewFingerprint || cur.Version <= rec.OldVersion {
			if rec.Phase == records.PhasePlanned {
				rec.Phase, rec.Finished, rec.Error = records.PhaseAborted, e.now(), "stopped before Vault was written"
				e.Store.SaveRotation(ctx, rec)
			}
			return nil, fmt.Errorf("rotation %s stopped before the new key was stored; nothing changed, run `rekey rotate` again: %w", rec.ID, ErrNothingToResume)
		}
		// The key was stored; the crash came before the record said so.
		rec.Phase, rec.NewVersion, rec.Stored = records.PhaseStored, cur.Version, cur.Created
	}
	if cur.Fingerprint() != rec.NewFingerprint {
		return nil, fmt.Errorf("Vault now holds version %d (%s), not rotation %s's key (%s); run `rekey audit` to see where things stand", cur.Version, cur.Fingerprint(), rec.ID, rec.NewFingerprint)
	}
	if rec.Integrations == nil {
		rec.Integrations = map[string]*records.Integration{}
	}
	versions, _, err := e.Store.Versions(ctx, job.Key.VaultPath)
	if err != nil {
		return nil, err
	}
	// A crash right after the key was stored left it out of the history.
	e.catchUp(ctx, job.Key.ID, versions, cur.Version)
	want, err := e.expect(ctx, job.Key.ID, versions, cur.Version, cur.Created)
	if err != nil {
		return nil, err
	}
	for _, t := range job.Targets {
		if _, ok := rec.Integrations[t.Config.ID]; !ok {
			rec.Integrations[t.Config.ID] = &records.Integration{ID: t.Config.ID, Type: t.Config.Type, State: state.Waiting, Updated: e.now()}
		}
	}
	todo := e.notCurrent(ctx, rec, want, job.Targets)
	rec.Phase, rec.Finished = records.PhaseStored, time.Time{}
	return e.finish(ctx, job, rec, cur.Key, want, todo, e.newOutbox(ctx), unlock)
}

// notCurrent returns the targets to apply again: every one not recorded
// current, and every one recorded current that no longer is (a file put
// back to an old key since). Those still current are left alone.
func (e *Engine) notCurrent(ctx context.Context, rec *records.Rotation, want integrations.Expect, targets []Target) []Target {
	var recorded []Target
	for _, t := range targets {
		if rec.Integrations[t.Config.ID].State == state.Current {
			recorded = append(recorded, t)
		}
	}
	stillCurrent := map[string]bool{}
	for i, st := range e.observeAll(ctx, want, rec, recorded) {
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

// observeAll works out the state of each target, against its record in rec
// (which may be nil), at most Concurrency at once, each within Timeout.
func (e *Engine) observeAll(ctx context.Context, want integrations.Expect, rec *records.Rotation, targets []Target) []state.Status {
	out := make([]state.Status, len(targets))
	sem := make(chan struct{}, e.Concurrency)
	var wg sync.WaitGroup
	for i, t := range targets {
		var r *records.Integration
		if rec != nil {
			r = rec.Integrations[t.Config.ID]
		}
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			octx, cancel := context.WithTimeout(ctx, e.Timeout)
			defer cancel()
			out[i] = integrations.Observe(octx, t.Integration, ExpectFor(want, r))
		})
	}
	wg.Wait()
	return out
}

// finish applies key to targets, verifies each, closes the record and
// reports. Integrations of rec not in targets keep their recorded state.
// Once the outcome is recorded, unlock releases the rotation lock; only
// then are the notifications still queued in out delivered, and the final
// one after them: a notifier told to wait (Slack's Retry-After) never
// keeps the key locked.
func (e *Engine) finish(ctx context.Context, job Job, rec *records.Rotation, key secret.Key, want integrations.Expect, targets []Target, out *outbox, unlock func()) (*Outcome, error) {
	j := newJournal(e, rec, out)
	stopFlush := j.start(ctx)
	e.fanOut(ctx, j, job, key, want, targets)
	stopFlush()

	j.mu.Lock()
	rec.Phase, rec.Finished = records.PhaseDone, e.now()
	allCurrent := true
	for _, r := range rec.Integrations {
		if r.State != state.Current {
			allCurrent = false
		}
	}
	if allCurrent && job.Reason == "leak" {
		rec.Timeline = append(rec.Timeline, records.Mark{At: rec.Finished, What: "every integration current"})
	}
	e.rememberThread(rec)
	j.mu.Unlock()
	outcome := &Outcome{Rotation: rec, Results: results(job, rec)}
	if err := e.flushFinal(ctx, j); err != nil {
		outcome.RecordErr = err
		e.logger().Error("could not record the rotation's outcome in Vault; the integrations are as shown, but rekey's records lag behind: run `rekey resume "+job.Key.ID+"` once Vault answers",
			"rotation", rec.ID, "err", err)
	}
	unlock()
	out.close()
	e.notify(ctx, finishedEvent(job, rec, outcome))
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

func finishedEvent(job Job, rec *records.Rotation, out *Outcome) notifiers.Event {
	ev := notifiers.Event{
		Kind: notifiers.RotationFinished, At: rec.Finished, KeyID: job.Key.ID, RotationID: rec.ID,
		Reason: job.Reason, Fingerprint: rec.NewFingerprint, OldFingerprint: rec.OldFingerprint,
		Owner: job.Key.Owner,
	}
	var notCurrent int
	for _, r := range out.Results {
		if r.State != state.Current {
			notCurrent++
		}
		ev.Integrations = append(ev.Integrations, notifiers.Integration{ID: r.ID, Type: r.Type, State: r.State, Reason: r.Reason, Owner: r.Owner})
	}
	if notCurrent == 0 {
		ev.Title = fmt.Sprintf("Rotation of %s done: all %d integrations current on %s", job.Key.ID, len(out.Results), rec.NewFingerprint)
	} else {
		ev.Title = fmt.Sprintf("Rotation of %s: %d of %d integrations not current yet", job.Key.ID, notCurrent, len(out.Results))
		ev.Text = "Run `rekey resume " + job.Key.ID + "` after fixing failures; manual integrations need `rekey confirm " + job.Key.ID + " INTEGRATION`."
	}
	return ev
}

// rememberThread records where the notifier threads rec's messages.
func (e *Engine) rememberThread(rec *records.Rotation) {
	if t, ok := e.Notifier.(notifiers.Threader); ok {
		if channel, ts, ok := t.Thread(rec.ID); ok {
			rec.Thread = &records.Thread{Channel: channel, TS: ts}
		}
	}
}

// resumeThread tells the notifier where rec's messages are threaded.
func (e *Engine) resumeThread(rec *records.Rotation) {
	if t, ok := e.Notifier.(notifiers.Threader); ok && rec.Thread != nil {
		t.ResumeThread(rec.ID, rec.Thread.Channel, rec.Thread.TS)
	}
}

func (e *Engine) notify(ctx context.Context, ev notifiers.Event) {
	if e.Notifier == nil {
		return
	}
	if ev.At.IsZero() {
		ev.At = e.now()
	}
	ev = notifiers.RedactEvent(ev, e.Redact)
	if err := e.Notifier.Notify(context.WithoutCancel(ctx), ev); err != nil {
		e.logger().Warn("notification not delivered; the outcome is on the terminal and in Vault", "kind", ev.Kind, "err", err)
	}
}

func (e *Engine) metadata(job Job, rec *records.Rotation) map[string]string {
	ids := ""
	for i, t := range job.Targets {
		if i > 0 {
			ids += ","
		}
		ids += t.Config.ID
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
		"integrations":         ids,
	}
}

func (e *Engine) markCompromised(ctx context.Context, keyID string, v vaultstore.KeyVersion, rotationID string) {
	err := e.Store.UpdateKeyState(context.WithoutCancel(ctx), keyID, func(st *records.KeyState) {
		if st.Compromised == nil {
			st.Compromised = map[int]records.CompromisedVersion{}
		}
		st.Compromised[v.Version] = records.CompromisedVersion{Fingerprint: v.Fingerprint(), At: e.now(), RotationID: rotationID}
	})
	if err != nil {
		e.logger().Error("could not mark the leaked version compromised", "key", keyID, "version", v.Version, "err", err)
	}
}

// Expect builds what the key's integrations are measured against: every
// retained version, the compromised ones, and the current one.
func (e *Engine) Expect(ctx context.Context, key config.Key) (integrations.Expect, *records.Rotation, error) {
	versions, current, err := e.Store.Versions(ctx, key.VaultPath)
	if err != nil {
		return integrations.Expect{}, nil, err
	}
	e.catchUp(ctx, key.ID, versions, current)
	var rotatedAt time.Time
	for _, v := range versions {
		if v.Version == current {
			rotatedAt = v.Created
		}
	}
	want, err := e.expect(ctx, key.ID, versions, current, rotatedAt)
	if err != nil {
		return want, nil, err
	}
	rec, err := e.Store.LatestRotation(ctx, key.ID)
	if err != nil && !errors.Is(err, failure.ErrNotFound) {
		return want, nil, err
	}
	return want, rec, nil
}

func (e *Engine) expect(ctx context.Context, keyID string, versions []vaultstore.KeyVersion, current int, rotatedAt time.Time) (integrations.Expect, error) {
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
	h, _, err := e.Store.History(ctx, keyID)
	if err != nil && !errors.Is(err, failure.ErrNotFound) {
		return want, err
	}
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
	st, _, err := e.Store.KeyState(ctx, keyID)
	if err != nil {
		return want, err
	}
	// A compromised version stays compromised, even stored again as the
	// current one: a leaked key is never called current.
	for _, c := range st.Compromised {
		want.Versions[c.Fingerprint] = integrations.VersionCompromised
	}
	return want, nil
}

// retained lists versions for History.CatchUp: current is Vault's current
// version, and replaced (when not 0) the version rotationID replaced,
// compromised when leaked.
func retained(versions []vaultstore.KeyVersion, current int, st *records.KeyState, replaced int, rotationID string, leaked bool) []records.Retained {
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
// failure is only logged, the next rotation or audit tries again.
func (e *Engine) catchUp(ctx context.Context, keyID string, versions []vaultstore.KeyVersion, current int) {
	st, _, err := e.Store.KeyState(ctx, keyID)
	if err == nil {
		_, err = e.Store.UpdateHistory(ctx, keyID, func(h *records.History) (bool, error) {
			return h.CatchUp(retained(versions, current, st, 0, "", false), e.now())
		})
	}
	if err != nil {
		e.logger().Warn("could not bring the key's history up to date", "key", keyID, "err", err)
	}
}

// ExpectFor narrows want to one integration's records.
func ExpectFor(want integrations.Expect, r *records.Integration) integrations.Expect {
	if r != nil {
		want.Last, want.Confirmed = r.Written, r.Confirmed
	}
	return want
}

func operatorName(l records.Lock) string {
	if l.User == "" && l.Host == "" {
		return "unknown"
	}
	return l.User + "@" + l.Host
}

func (e *Engine) lock(ctx context.Context, job Job, command string) (*vaultstore.Lease, error) {
	holder := e.Operator
	holder.Command = command + " " + job.Key.ID
	l, err := e.Store.Lock(ctx, job.Key.ID, holder, e.LockTTL)
	var locked *vaultstore.LockedError
	if err != nil && !errors.As(err, &locked) {
		err = fmt.Errorf("take the rotation lock: %w", err)
		if command == "rotate" {
			return nil, &NotStoredError{Err: err}
		}
		return nil, err
	}
	return l, err
}

// hold keeps the lease alive until the returned func is called; that
// func (safe to call more than once) stops renewing it and releases it.
func (e *Engine) hold(ctx context.Context, l *vaultstore.Lease) func() {
	stopRenew := e.renew(ctx, l)
	var once sync.Once
	return func() {
		once.Do(func() {
			stopRenew()
			e.release(l)
		})
	}
}

func (e *Engine) release(l *vaultstore.Lease) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := l.Release(ctx); err != nil {
		e.logger().Error("could not release the rotation lock; it expires by itself", "err", err)
	}
}

// renew keeps the lease alive until the returned func is called.
func (e *Engine) renew(ctx context.Context, l *vaultstore.Lease) func() {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(e.LockTTL / 3)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if err := l.Renew(ctx); err != nil && ctx.Err() == nil {
					e.logger().Warn("could not renew the rotation lock", "err", err)
				}
			}
		}
	}()
	return func() { cancel(); <-done }
}
