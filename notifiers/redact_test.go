package notifiers_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/internal/leakcheck"
	"github.com/rekey-dev/rekey/notifiers"
	"github.com/rekey-dev/rekey/secret"
	"github.com/rekey-dev/rekey/state"
)

// recorder keeps what it is told and threads every rotation in one place.
type recorder struct {
	got     []notifiers.Event
	err     error
	resumed string
}

func (r *recorder) Notify(_ context.Context, ev notifiers.Event) error {
	r.got = append(r.got, ev)
	return r.err
}
func (r *recorder) Thread(id string) (string, string, bool) { return "C1", "1.2", id == "r1" }
func (r *recorder) ResumeThread(id, _, _ string)            { r.resumed = id }

func TestRedactedNotifier(t *testing.T) {
	const key = "an-0123456789abcdef0123456789abcdef"
	red := secret.NewRedactor()
	red.Add(key)
	rec := &recorder{err: fmt.Errorf("slack: the peer quoted %s: %w", key, failure.ErrTransient)}
	n := notifiers.Redacted(rec, red.Redact)
	ev := notifiers.Event{
		Kind: notifiers.LeakAlert, KeyID: "k", Title: "leak: " + key, Text: "text " + key,
		Owner: "<@U1>", Instructions: "paste " + key,
		Integrations: []notifiers.Integration{{ID: "web", State: state.Failing, Reason: "target said " + key}},
	}
	err := n.Notify(context.Background(), ev)
	if !errors.Is(err, failure.ErrTransient) || strings.Contains(err.Error(), key) {
		t.Fatalf("Notify error %v: want it redacted and still transient", err)
	}
	if len(rec.got) != 1 {
		t.Fatalf("the wrapped notifier got %d events", len(rec.got))
	}
	got := fmt.Sprintf("%+v", rec.got[0])
	leakcheck.Assert(t, "event the notifier saw", []byte(got), key)
	if !strings.Contains(got, "web") || !strings.Contains(got, "<@U1>") {
		t.Fatalf("redaction lost what is not secret: %s", got)
	}
	if !strings.Contains(ev.Integrations[0].Reason, key) {
		t.Fatal("the caller's event was changed")
	}
	th, ok := n.(notifiers.Threader)
	if !ok {
		t.Fatal("the wrapper does not thread")
	}
	if _, ts, ok := th.Thread("r1"); !ok || ts != "1.2" {
		t.Fatal("Thread not passed through")
	}
	th.ResumeThread("r2", "C1", "3.4")
	if rec.resumed != "r2" {
		t.Fatal("ResumeThread not passed through")
	}
}
