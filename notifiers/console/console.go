// Package console prints rekey's events for a person at a terminal: the
// same facts a Slack message carries, as a plain block of text. The output
// depends on the event alone (no clock, no colour), so scripts and golden
// files can compare it.
//
// An event prints as:
//
//	=== URGENT: Key actionnetwork-main leaked ===
//	  Revoke it now.
//	  key:          actionnetwork-main
//	  rotation:     r-20250101-1 (reason: leak)
//	  fingerprint:  sha256:ba9876543210 (replaces sha256:0123456789ab)
//	  owner:        <@U012ABCDEF>
//	  what to do:   Action Network → Details → API & Sync → REVOKE & GENERATE NEW KEY
//	  integrations:
//	    site-env  file    current  holds the current version
//	    callhub   manual  pending  waiting for <@U0CALL>
//	    ci        github  failing  unauthorized (owner <@U0CI>)
//	  needs action from: <@U0CALL> <@U0CI>
//
// followed by a blank line.
package console

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/rekey-dev/rekey/notifiers"
	"github.com/rekey-dev/rekey/state"
)

// Notifier writes events to an io.Writer. It is safe for concurrent use;
// each event is written whole, with one Write.
type Notifier struct {
	mu sync.Mutex
	w  io.Writer
}

var _ notifiers.Notifier = (*Notifier)(nil)

// New returns a Notifier that writes to w.
func New(w io.Writer) *Notifier {
	return &Notifier{w: w}
}

// Notify writes ev.
func (n *Notifier) Notify(ctx context.Context, ev notifiers.Event) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("console: %s event: %w", ev.Kind, err)
	}
	text := Format(ev)
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, err := io.WriteString(n.w, text); err != nil {
		return fmt.Errorf("console: write %s event: %w", ev.Kind, err)
	}
	return nil
}

// Format returns the block Notify writes for ev, ending with a blank line.
func Format(ev notifiers.Event) string {
	var b strings.Builder
	line := func(format string, args ...any) {
		s := fmt.Sprintf(format, args...)
		b.WriteString(strings.TrimRight(s, " "))
		b.WriteByte('\n')
	}

	title := oneLine(ev.Title)
	if title == "" {
		title = strings.TrimSpace(string(ev.Kind) + " " + ev.KeyID)
	}
	if ev.Urgent {
		title = "URGENT: " + title
	}
	line("=== %s ===", title)

	for l := range strings.SplitSeq(strings.TrimRight(ev.Text, "\n"), "\n") {
		if strings.TrimSpace(l) != "" {
			line("  %s", l)
		}
	}

	field := func(name, value string) {
		if value != "" {
			line("  %-13s %s", name+":", oneLine(value))
		}
	}
	field("key", ev.KeyID)
	rot := ev.RotationID
	switch {
	case rot != "" && ev.Reason != "":
		rot += " (reason: " + ev.Reason + ")"
	case ev.Reason != "":
		field("reason", ev.Reason)
	}
	field("rotation", rot)
	fp := ev.Fingerprint
	switch {
	case fp != "" && ev.OldFingerprint != "":
		fp += " (replaces " + ev.OldFingerprint + ")"
	case ev.OldFingerprint != "":
		fp = ev.OldFingerprint + " (previous)"
	}
	field("fingerprint", fp)
	field("owner", ev.Owner)
	field("what to do", ev.Instructions)

	if len(ev.Integrations) > 0 {
		line("  integrations:")
		var wID, wType, wState int
		for _, in := range ev.Integrations {
			wID = max(wID, width(in.ID))
			wType = max(wType, width(in.Type))
			wState = max(wState, width(stateOf(in)))
		}
		for _, in := range ev.Integrations {
			reason := oneLine(in.Reason)
			if in.State.NeedsAction() && in.Owner != "" && !strings.Contains(reason, in.Owner) {
				reason = strings.TrimSpace(reason + " (owner " + in.Owner + ")")
			}
			line("    %s  %s  %s  %s", pad(in.ID, wID), pad(in.Type, wType), pad(stateOf(in), wState), reason)
		}
	}

	var owners []string
	seen := map[string]bool{}
	for _, in := range ev.Integrations {
		if in.State.NeedsAction() && in.Owner != "" && !seen[in.Owner] {
			seen[in.Owner] = true
			owners = append(owners, in.Owner)
		}
	}
	if len(owners) > 0 {
		line("  needs action from: %s", strings.Join(owners, " "))
	}
	b.WriteByte('\n')
	return b.String()
}

// stateOf is an integration's state, with the one before when it changed.
func stateOf(in notifiers.Integration) string {
	s := in.State
	if s == "" {
		s = state.Unknown
	}
	if in.Previous != "" && in.Previous != s {
		return string(in.Previous) + " -> " + string(s)
	}
	return string(s)
}

// oneLine keeps a value on its line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func width(s string) int { return utf8.RuneCountInString(s) }

func pad(s string, w int) string {
	return s + strings.Repeat(" ", w-width(s))
}
