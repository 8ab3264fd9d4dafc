package console

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rekey-dev/rekey/notifiers"
)

func TestFormat(t *testing.T) {
	tests := []struct {
		name string
		ev   notifiers.Event
		want string
	}{
		{
			name: "urgent rotation outcome",
			ev: notifiers.Event{
				Kind: notifiers.RotationFinished, At: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC), Urgent: true,
				KeyID: "actionnetwork-main", RotationID: "r-1", Reason: "leak",
				Fingerprint: "sha256:ba9876543210", OldFingerprint: "sha256:0123456789ab",
				Owner:        "<@U012ABCDEF>",
				Instructions: "Action Network → Details → API & Sync → REVOKE & GENERATE NEW KEY",
				Title:        "Key actionnetwork-main leaked",
				Text:         "Revoke it now.\nThe old key still works.\n",
				Integrations: []notifiers.Integration{
					{ID: "site-env", Type: "file", State: "current", Reason: "holds the current version", Owner: "<@U0WEB>"},
					{ID: "callhub", Type: "manual", State: "pending", Reason: "waiting for <@U0CALL>", Owner: "<@U0CALL>"},
					{ID: "ci", Type: "github", State: "failing", Reason: "unauthorized", Owner: "<@U0CI>"},
					{ID: "wp", Type: "http", State: "unknown", Owner: "<@U0CI>"},
				},
			},
			want: `=== URGENT: Key actionnetwork-main leaked ===
  Revoke it now.
  The old key still works.
  key:          actionnetwork-main
  rotation:     r-1 (reason: leak)
  fingerprint:  sha256:ba9876543210 (replaces sha256:0123456789ab)
  owner:        <@U012ABCDEF>
  what to do:   Action Network → Details → API & Sync → REVOKE & GENERATE NEW KEY
  integrations:
    site-env  file    current  holds the current version
    callhub   manual  pending  waiting for <@U0CALL>
    ci        github  failing  unauthorized (owner <@U0CI>)
    wp        http    unknown
  needs action from: <@U0CALL> <@U0CI>

`,
		},
		{
			name: "state change",
			ev: notifiers.Event{
				Kind: notifiers.StateChanged, KeyID: "k", Title: "ci changed state", OldFingerprint: "sha256:0123456789ab",
				Integrations: []notifiers.Integration{
					{ID: "ci", Type: "github", State: "stale", Previous: "current", Reason: "holds a superseded version", Owner: "<@U0CI>"},
				},
			},
			want: `=== ci changed state ===
  key:          k
  fingerprint:  sha256:0123456789ab (previous)
  integrations:
    ci  github  current -> stale  holds a superseded version (owner <@U0CI>)
  needs action from: <@U0CI>

`,
		},
		{
			name: "reminder without title",
			ev:   notifiers.Event{Kind: notifiers.Reminder, KeyID: "k", Reason: "scheduled"},
			want: `=== reminder k ===
  key:          k
  reason:       scheduled

`,
		},
		{
			name: "values kept on their line",
			ev:   notifiers.Event{Kind: notifiers.AuditReport, Title: "audit\nreport", Owner: "a\nb"},
			want: `=== audit report ===
  owner:        a b

`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := New(&buf).Notify(context.Background(), tt.ev); err != nil {
				t.Fatal(err)
			}
			if got := buf.String(); got != tt.want {
				t.Errorf("got:\n%s\nwant:\n%s", got, tt.want)
			}
			if Format(tt.ev) != buf.String() {
				t.Errorf("Format and Notify differ")
			}
		})
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestNotifyErrors(t *testing.T) {
	err := New(failWriter{}).Notify(context.Background(), notifiers.Event{Kind: notifiers.Reminder})
	if err == nil || !strings.HasPrefix(err.Error(), "console: write reminder event: disk full") {
		t.Errorf("err = %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var buf bytes.Buffer
	if err := New(&buf).Notify(ctx, notifiers.Event{Kind: notifiers.Reminder}); !errors.Is(err, context.Canceled) || buf.Len() != 0 {
		t.Errorf("err = %v, wrote %q", err, buf.String())
	}
}

// TestConcurrentEventsDoNotInterleave: each event is one Write.
func TestConcurrentEventsDoNotInterleave(t *testing.T) {
	var buf bytes.Buffer
	n := New(&buf)
	ev := notifiers.Event{Kind: notifiers.RotationProgress, Title: "x", Integrations: []notifiers.Integration{{ID: "a", State: "current"}}}
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() { _ = n.Notify(context.Background(), ev) })
	}
	wg.Wait()
	if want := strings.Repeat(Format(ev), 50); buf.String() != want {
		t.Errorf("events interleaved")
	}
}
