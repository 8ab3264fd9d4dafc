package rotation

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/rekey-dev/rekey/config"
	"github.com/rekey-dev/rekey/notifiers"
	"github.com/rekey-dev/rekey/providers"
	"github.com/rekey-dev/rekey/records"
	"github.com/rekey-dev/rekey/secret"
	"github.com/rekey-dev/rekey/state"
	"github.com/rekey-dev/rekey/store"
)

// Leak containment: what `rekey leak` does around the rotation itself
// (and what `rekey serve` may do): check whether the leaked key still
// works, before and after the new one is stored; alert loudly while it
// does; and keep the incident's timeline.

// LeakState is whether a leaked key still works, as far as its provider
// can tell.
type LeakState string

const (
	LeakWorks     LeakState = "works"     // the provider accepted it
	LeakDead      LeakState = "dead"      // the provider refused it
	LeakUnknown   LeakState = "unknown"   // the provider could not tell
	LeakUnchecked LeakState = "unchecked" // provider none: nothing can tell
)

// LeakCheck is one verdict on a leaked key.
type LeakCheck struct {
	State  LeakState `json:"state"`
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
	Checks int       `json:"checks,omitempty"`
}

// Verdict turns the provider's answer about the leaked key of k into a
// LeakCheck made at at.
func Verdict(k config.Key, res providers.Result, at time.Time) LeakCheck {
	c := LeakCheck{Reason: res.Reason, At: at, Checks: 1}
	switch {
	case k.Provider == "none":
		c.State, c.Reason, c.Checks = LeakUnchecked, "provider none: whether the leaked key still works cannot be checked", 0
	case res.Validity == providers.Valid:
		c.State = LeakWorks
	case res.Validity == providers.Invalid:
		c.State = LeakDead
	default:
		c.State = LeakUnknown
	}
	return c
}

// LeakTimeline is the timeline a leak rotation starts with: declared at
// declared, and the leaked key dead already when before says so.
func LeakTimeline(declared time.Time, before LeakCheck) []records.Mark {
	marks := []records.Mark{{At: declared, What: MarkLeakDeclared}}
	if before.State == LeakDead {
		marks = append(marks, records.Mark{At: before.At, What: MarkOldKeyDead})
	}
	return marks
}

// recheckInterval is the pause between checks of the leaked key within
// a window of d: a tenth of it, between 100ms and 2s.
func recheckInterval(d time.Duration) time.Duration {
	return min(max(d/10, 100*time.Millisecond), 2*time.Second)
}

// RecheckLeaked checks the leaked key with job.Checker until the provider
// refuses it or within has passed since its first answer (always at least
// once); unknown answers are tried again within the window too. stillWorks, if set, is called
// once, the first time the key is found to work and there is time to
// check again.
func (e *Engine) RecheckLeaked(ctx context.Context, job Job, leaked secret.Key, within time.Duration, stillWorks func()) LeakCheck {
	if job.Key.Provider == "none" || job.Checker == nil {
		return Verdict(config.Key{Provider: "none"}, providers.Result{}, e.now())
	}
	interval := recheckInterval(within)
	told := false
	var last LeakCheck
	var deadline time.Time
	for n := 1; ; n++ {
		last = Verdict(job.Key, job.Checker.Check(ctx, leaked), e.now())
		last.Checks = n
		if n == 1 {
			// The window runs from the first answer: the provider's rate
			// limit may have kept that one waiting (the preflight and the
			// group guard asked about this key just before).
			deadline = time.Now().Add(within)
		}
		if last.State == LeakDead || ctx.Err() != nil || time.Now().Add(interval).After(deadline) {
			return last
		}
		if !told && last.State == LeakWorks && stillWorks != nil {
			stillWorks()
			told = true
		}
		select {
		case <-ctx.Done():
			return last
		case <-time.After(interval):
		}
	}
}

// Instructions is what the key's owner must do at the provider.
func Instructions(k config.Key) string {
	if k.Instructions == "" && k.Provider == "actionnetwork" {
		return "Action Network → Details → API & Sync → REVOKE & GENERATE NEW KEY"
	}
	return k.Instructions
}

// Waiting lists job's integrations as an event's, each waiting for the
// new key, with reason.
func Waiting(job Job, reason string) []notifiers.Integration {
	evs := make([]notifiers.Integration, len(job.Targets))
	for i, t := range job.Targets {
		evs[i] = notifiers.Integration{ID: t.Config.ID, Type: t.Config.Type, State: state.Waiting, Reason: reason, Owner: t.Config.Owner}
	}
	return evs
}

// someIDs names the first integrations of ids for a message, and says how
// many more there are (the message lists them all below).
func someIDs(ids []string) string {
	const first = 20
	if len(ids) <= first {
		return strings.Join(ids, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(ids[:first], ", "), len(ids)-first)
}

func targetIDs(job Job) []string {
	ids := make([]string, len(job.Targets))
	for i, t := range job.Targets {
		ids[i] = t.Config.ID
	}
	return ids
}

func orSomeone(owner string) string {
	if owner == "" {
		return "key owner"
	}
	return owner
}

// Announce tells the team (with the owner mentioned) that job's rotation
// starts: what the owner must click and which integrations break until
// rekey has the new key; urgent for a leak. It returns the notifier's
// error; nothing else depends on it.
func (e *Engine) Announce(ctx context.Context, job Job, urgent bool) error {
	k := job.Key
	ids := targetIDs(job)
	return e.send(ctx, notifiers.Event{
		Kind: notifiers.RotationStarted, Urgent: urgent, KeyID: k.ID, RotationID: job.RotationID,
		Reason: job.Reason, Owner: k.Owner, Instructions: Instructions(k),
		Title:        fmt.Sprintf("Rotating %s (%s): %s, please %s", k.ID, job.Reason, orSomeone(k.Owner), Instructions(k)),
		Text:         fmt.Sprintf("%d integrations break when the old key is revoked and are updated as soon as the new key is in: %s", len(ids), someIDs(ids)),
		Integrations: Waiting(job, ""),
	})
}

// AlertLeak sends the urgent alert that job.Key leaked: the leaked
// version, whether it still works (before), who must click what, and
// every integration that breaks until it has the new key.
func (e *Engine) AlertLeak(ctx context.Context, job Job, leaked store.KeyVersion, before LeakCheck) error {
	k := job.Key
	ids := targetIDs(job)
	works := map[LeakState]string{
		LeakWorks:     "It STILL WORKS: revoke it now.",
		LeakDead:      "It no longer works: it has been revoked already.",
		LeakUnknown:   "Whether it still works could not be checked (" + before.Reason + ").",
		LeakUnchecked: "Whether it still works cannot be checked (provider none).",
	}[before.State]
	return e.send(ctx, notifiers.Event{
		Kind: notifiers.LeakAlert, Urgent: true, KeyID: k.ID, RotationID: job.RotationID,
		Reason: "leak", Fingerprint: leaked.Fingerprint(), Owner: k.Owner, Instructions: Instructions(k),
		Title: fmt.Sprintf("Key %s leaked (version %d, %s): %s, %s", k.ID, leaked.Version, leaked.Fingerprint(), orSomeone(k.Owner), Instructions(k)),
		Text: fmt.Sprintf("%s %d integrations break when it is revoked, and are updated as soon as the new key is pasted into rekey: %s.",
			works, len(ids), someIDs(ids)),
		Integrations: Waiting(job, "breaks when the leaked key is revoked, until it gets the new key"),
	})
}

// AlertStillWorks sends StillWorksEvent.
func (e *Engine) AlertStillWorks(ctx context.Context, job Job, leaked string, after LeakCheck) error {
	return e.send(ctx, StillWorksEvent(job, leaked, after))
}

// StillWorksEvent is the urgent alert that the leaked key (of
// fingerprint leaked) still works after the new one was stored (after is
// the last check).
func StillWorksEvent(job Job, leaked string, after LeakCheck) notifiers.Event {
	k := job.Key
	return notifiers.Event{
		Kind: notifiers.LeakAlert, Urgent: true, KeyID: k.ID, RotationID: job.RotationID,
		Reason: "leak", Fingerprint: leaked, Owner: k.Owner, Instructions: Instructions(k),
		Title: fmt.Sprintf("The leaked key of %s (%s) still works: it has not been revoked, or the wrong key was pasted", k.ID, leaked),
		Text:  fmt.Sprintf("%s must revoke it now. The new key is stored and being used; checked %d times, the last: %s.", orSomeone(k.Owner), after.Checks, after.Reason),
	}
}

// RecordContainment adds what the leak response found after the rotation
// to rec's timeline (the leaked key confirmed dead, or still working after
// its checks, and any marks given, such as what a scan found), sorted,
// and records it (and, when the leaked key is dead, that in the key's
// state too). It reads the record again first, so that a `rekey
// confirm` made meanwhile is kept, and returns the record as recorded
// (as known, with the error, when it could not be).
func (e *Engine) RecordContainment(ctx context.Context, rec *records.Rotation, after LeakCheck, marks ...records.Mark) (*records.Rotation, error) {
	ctx = context.WithoutCancel(ctx)
	if fresh, err := e.Store.Rotation(ctx, rec.KeyID, rec.ID); err == nil {
		rec = fresh
	}
	if after.State == LeakDead && !hasMark(rec, MarkOldKeyDead) {
		rec.Timeline = append(rec.Timeline, records.Mark{At: after.At, What: MarkOldKeyDead})
	}
	if after.State == LeakWorks {
		rec.Timeline = append(rec.Timeline, records.Mark{At: after.At, What: fmt.Sprintf("leaked key still works after %d checks", after.Checks)})
	}
	rec.Timeline = SortTimeline(append(rec.Timeline, marks...))
	if err := e.Store.SaveRotation(ctx, rec); err != nil {
		e.logger().Error("could not record the incident timeline", "rotation", rec.ID, "err", err)
		return rec, err
	}
	if after.State == LeakDead && rec.OldVersion > 0 {
		// So that `rekey serve` does not ask about it again.
		if err := e.markDead(ctx, rec.KeyID, rec.OldVersion, rec.OldFingerprint, after); err != nil {
			e.logger().Error("could not record the leaked version dead in the key's state", "key", rec.KeyID, "err", err)
		}
	}
	return rec, nil
}

// send delivers ev now and returns the notifier's error (none without a
// notifier); what it says passes Redact first.
func (e *Engine) send(ctx context.Context, ev notifiers.Event) error {
	if e.Notifier == nil {
		return nil
	}
	if ev.At.IsZero() {
		ev.At = e.now()
	}
	return e.Notifier.Notify(ctx, notifiers.RedactEvent(ev, e.Redact))
}
