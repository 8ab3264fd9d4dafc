// Package notifiers defines what a notifier is told. An Event has no field
// that can hold a key: keys appear only as fingerprints.
package notifiers

import (
	"context"
	"time"

	"github.com/rekey-dev/rekey/state"
)

// Kind is what an event is about.
type Kind string

const (
	RotationStarted  Kind = "rotation_started"  // a rotation began: what to click, what will break
	RotationProgress Kind = "rotation_progress" // an integration changed state during a rotation
	RotationFinished Kind = "rotation_finished" // the outcome: what is current, what is still broken and who must fix it
	LeakAlert        Kind = "leak_alert"        // urgent: a key leaked or the leaked key still works
	Reminder         Kind = "reminder"          // a key is due or overdue for rotation
	StateChanged     Kind = "state_changed"     // an audit found an integration's state changed
	AuditReport      Kind = "audit_report"      // `rekey audit --notify`: integrations not current
)

// Event is one thing to tell the team.
type Event struct {
	Kind   Kind      `json:"kind"`
	At     time.Time `json:"at"`
	Urgent bool      `json:"urgent,omitempty"`

	KeyID      string `json:"key"`
	RotationID string `json:"rotation_id,omitempty"`
	Reason     string `json:"reason,omitempty"` // scheduled, leak, manual

	// Fingerprints: the new (or current) version and the one it replaces.
	Fingerprint    string `json:"fingerprint,omitempty"`
	OldFingerprint string `json:"old_fingerprint,omitempty"`

	// The person who must act on the provider, and what to click.
	Owner        string `json:"owner,omitempty"`
	Instructions string `json:"instructions,omitempty"`

	// Title is a one-line summary; Text adds detail. Neither may hold a key.
	Title string `json:"title"`
	Text  string `json:"text,omitempty"`

	Integrations []Integration `json:"integrations,omitempty"`
}

// Integration is one integration's state in an event.
type Integration struct {
	ID     string      `json:"id"`
	Type   string      `json:"type"`
	State  state.State `json:"state"`
	Reason string      `json:"reason,omitempty"`
	Owner  string      `json:"owner,omitempty"`
	// Previous is the state before a change (StateChanged events).
	Previous state.State `json:"previous,omitempty"`
}

// Notifier tells the team about an event. Notify may retry internally; an
// error means the event was not delivered. A notifier's failure never
// fails a rotation: callers print the outcome and carry on.
type Notifier interface {
	Notify(ctx context.Context, ev Event) error
}

// Threader is a notifier that threads a rotation's events under its first
// message, and can say where that is, or be told, so that a later process
// (`rekey resume`, `rekey confirm`) replies in the same thread.
type Threader interface {
	Thread(rotationID string) (channel, ts string, ok bool)
	ResumeThread(rotationID, channel, ts string)
}

// Pinger is a notifier that can check, without posting, that it is
// reachable and authorised (Slack's auth.test). `rekey check` asks it.
type Pinger interface {
	Ping(ctx context.Context) error
}

// Multi sends each event to every notifier and returns the first error.
type Multi []Notifier

// Notify implements Notifier.
func (m Multi) Notify(ctx context.Context, ev Event) error {
	var first error
	for _, n := range m {
		if err := n.Notify(ctx, ev); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// Ping implements Pinger: it asks every notifier that can be asked and
// returns the first error.
func (m Multi) Ping(ctx context.Context) error {
	var first error
	for _, n := range m {
		if p, ok := n.(Pinger); ok {
			if err := p.Ping(ctx); err != nil && first == nil {
				first = err
			}
		}
	}
	return first
}

// Thread implements Threader with the first notifier that threads.
func (m Multi) Thread(rotationID string) (channel, ts string, ok bool) {
	for _, n := range m {
		if t, is := n.(Threader); is {
			if c, ts, ok := t.Thread(rotationID); ok {
				return c, ts, true
			}
		}
	}
	return "", "", false
}

// ResumeThread implements Threader for every notifier that threads.
func (m Multi) ResumeThread(rotationID, channel, ts string) {
	for _, n := range m {
		if t, is := n.(Threader); is {
			t.ResumeThread(rotationID, channel, ts)
		}
	}
}
