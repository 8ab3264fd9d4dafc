package rotation

import (
	"context"
	"fmt"

	"github.com/rekey-dev/rekey/notifiers"
	"github.com/rekey-dev/rekey/records"
	"github.com/rekey-dev/rekey/state"
)

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

// notify delivers ev as send does, even once ctx has ended, and logs
// what could not be delivered.
func (e *Engine) notify(ctx context.Context, ev notifiers.Event) {
	if err := e.send(context.WithoutCancel(ctx), ev); err != nil {
		e.logger().Warn("notification not delivered; the outcome is on the terminal and in Vault", "kind", ev.Kind, "err", err)
	}
}
