package rotation

import (
	"context"
	"testing"
	"time"

	"github.com/rekey-dev/rekey/config"
	"github.com/rekey-dev/rekey/integrations"
	"github.com/rekey-dev/rekey/notifiers"
	"github.com/rekey-dev/rekey/secret"
)

// stuckNotifier blocks on the first event of kind until gate closes, and
// says when it got there.
type stuckNotifier struct {
	kind    notifiers.Kind
	entered chan struct{}
	gate    chan struct{}
}

func (n *stuckNotifier) Notify(ctx context.Context, ev notifiers.Event) error {
	if ev.Kind == n.kind {
		select {
		case <-n.entered:
		default:
			close(n.entered)
			<-n.gate
		}
	}
	return nil
}

// The rotation lock is released once the outcome is recorded, before the
// final notifications are delivered: Slack asking rekey to wait (429,
// Retry-After) never keeps another operator from the key.
func TestLockReleasedBeforeFinalNotification(t *testing.T) {
	old, key := secret.New("old-key-aaaaaaaaaaaa"), secret.New("new-key-bbbbbbbbbbbb")
	store, _ := setup(t, old)
	n := &stuckNotifier{kind: notifiers.RotationFinished, entered: make(chan struct{}), gate: make(chan struct{})}
	done := make(chan error, 1)
	go func() {
		_, err := (&Engine{Store: store, Notifier: n}).Rotate(context.Background(), job(&memTarget{id: "m", held: old}), key)
		done <- err
	}()
	select {
	case <-n.entered:
	case <-time.After(30 * time.Second):
		t.Fatal("the outcome was never notified")
	}
	l, err := store.ReadLock(context.Background(), "an")
	close(n.gate)
	if err != nil {
		t.Fatal(err)
	}
	if l.Held {
		t.Fatalf("the lock is held (%+v) while the outcome is being notified", l)
	}
	rec, err := store.LatestRotation(context.Background(), "an")
	if err != nil || rec.Phase != "done" {
		t.Fatalf("the outcome was not recorded before the lock was released: %+v, %v", rec, err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// personTarget is a manual integration: a person updates it.
type personTarget struct{ id string }

func (p personTarget) ID() string { return p.id }
func (p personTarget) Apply(context.Context, integrations.ApplyRequest) (integrations.ApplyResult, error) {
	return integrations.ApplyResult{}, nil
}
func (p personTarget) Person() (string, string) { return "<@U0CALL>", "paste it" }

// A confirmation, too, releases the lock once it is recorded, before it
// is notified.
func TestConfirmReleasesLockBeforeNotifying(t *testing.T) {
	old, key := secret.New("old-key-aaaaaaaaaaaa"), secret.New("new-key-bbbbbbbbbbbb")
	store, _ := setup(t, old)
	j := job()
	manual := Target{Config: config.Integration{ID: "callhub", Key: "an", Type: "manual"}, Integration: personTarget{id: "callhub"}}
	j.Targets = []Target{manual}
	if _, err := (&Engine{Store: store}).Rotate(context.Background(), j, key); err != nil {
		t.Fatal(err)
	}
	n := &stuckNotifier{kind: notifiers.RotationProgress, entered: make(chan struct{}), gate: make(chan struct{})}
	done := make(chan error, 1)
	go func() {
		_, err := (&Engine{Store: store, Notifier: n}).Confirm(context.Background(), j, manual, "pasted")
		done <- err
	}()
	select {
	case <-n.entered:
	case <-time.After(30 * time.Second):
		t.Fatal("the confirmation was never notified")
	}
	l, err := store.ReadLock(context.Background(), "an")
	close(n.gate)
	if err != nil || l.Held {
		t.Fatalf("the lock is held (%+v, %v) while the confirmation is being notified", l, err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
