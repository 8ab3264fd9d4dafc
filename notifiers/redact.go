package notifiers

import (
	"context"
)

// RedactEvent returns ev with redact applied to every text a notifier
// shows (title, text, owner, instructions, each integration's reason and
// owner). The caller's event and its Integrations are not changed.
func RedactEvent(ev Event, redact func(string) string) Event {
	if redact == nil {
		return ev
	}
	ev.Title, ev.Text = redact(ev.Title), redact(ev.Text)
	ev.Owner, ev.Instructions = redact(ev.Owner), redact(ev.Instructions)
	if len(ev.Integrations) > 0 {
		ins := make([]Integration, len(ev.Integrations))
		for i, in := range ev.Integrations {
			in.Reason, in.Owner = redact(in.Reason), redact(in.Owner)
			ins[i] = in
		}
		ev.Integrations = ins
	}
	return ev
}

// Redacted wraps n so that n sees every event through RedactEvent, and
// so that the text of an error n returns is redacted too (it still wraps
// n's error for errors.Is). It threads when n does.
func Redacted(n Notifier, redact func(string) string) Notifier {
	if n == nil || redact == nil {
		return n
	}
	return &redacted{n: n, redact: redact}
}

type redacted struct {
	n      Notifier
	redact func(string) string
}

var (
	_ Notifier = (*redacted)(nil)
	_ Threader = (*redacted)(nil)
	_ Pinger   = (*redacted)(nil)
	_ Pinger   = Multi(nil)
)

// Notify implements Notifier.
func (r *redacted) Notify(ctx context.Context, ev Event) error {
	return r.error(r.n.Notify(ctx, RedactEvent(ev, r.redact)))
}

// Ping implements Pinger when the wrapped notifier pings; its error is
// redacted as Notify's is.
func (r *redacted) Ping(ctx context.Context) error {
	if p, ok := r.n.(Pinger); ok {
		return r.error(p.Ping(ctx))
	}
	return nil
}

// error returns err with its text redacted (still wrapping err).
func (r *redacted) error(err error) error {
	if err == nil {
		return nil
	}
	if msg := r.redact(err.Error()); msg != err.Error() {
		return &redactedError{msg: msg, err: err}
	}
	return err
}

// Thread implements Threader when the wrapped notifier threads.
func (r *redacted) Thread(rotationID string) (channel, ts string, ok bool) {
	if t, is := r.n.(Threader); is {
		return t.Thread(rotationID)
	}
	return "", "", false
}

// ResumeThread implements Threader when the wrapped notifier threads.
func (r *redacted) ResumeThread(rotationID, channel, ts string) {
	if t, is := r.n.(Threader); is {
		t.ResumeThread(rotationID, channel, ts)
	}
}

type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }
