package serve

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/rekey-dev/rekey/providers"
	"github.com/rekey-dev/rekey/rotation"
	"github.com/rekey-dev/rekey/secret"
)

// provider says keys work until revoked.
type provider struct {
	mu      sync.Mutex
	revoked map[string]bool
}

func (p *provider) Check(_ context.Context, k secret.Key) providers.Result {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.revoked[k.Fingerprint()] {
		return providers.Result{Validity: providers.Invalid, Reason: "status 401"}
	}
	return providers.Result{Validity: providers.Valid, Reason: "status 200"}
}

func (p *provider) revoke(k secret.Key) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.revoked[k.Fingerprint()] = true
}

// After `rekey leak` ended with the leaked key still working, each round
// asks whether it still does: the team hears it urgently, once a day
// while it does, and once when the provider refuses it, with the leak's
// containment; that is recorded once told, and the key is not asked
// about again. An alert Slack refused is sent next round.
func TestServeFollowsALeakUntilTheKeyIsDead(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t, 0)
	p := &provider{revoked: map[string]bool{}}
	w.job.Key.Provider, w.job.Checker = "actionnetwork", p
	leaked, fresh := w.mint(), w.mint()
	w.storeKey(leaked)
	w.hold(leaked)
	leak := w.job
	leak.Reason, leak.Leak = "leak", true
	leak.Timeline = rotation.LeakTimeline(w.now(), rotation.LeakCheck{State: rotation.LeakWorks})
	out, err := w.engine().Rotate(ctx, leak, fresh)
	if err != nil || !out.AllCurrent() {
		t.Fatalf("leak rotation: %+v, %v", out, err)
	}

	one := w.server("one")
	one.step(ctx)
	stillWorks := "The leaked key of an-main (" + leaked.Fingerprint() + ") still works"
	if n := w.slack.count(stillWorks); n != 1 {
		t.Fatalf("messages %q, want one alert that the leaked key still works\n%s", w.slack.texts(), w.logs.Bytes())
	}
	if got := w.said().Keys["an-main"].Leaks[1]; got.State != "works" {
		t.Fatalf("said of the leak: %+v", got)
	}
	for range 3 {
		w.clock.Add(time.Hour)
		one.step(ctx)
	}
	if n := w.slack.count(stillWorks); n != 1 {
		t.Fatalf("%d alerts within hours, want 1", n)
	}
	w.clock.Add(leakRealert)
	one.step(ctx)
	if n := w.slack.count(stillWorks); n != 2 {
		t.Fatalf("%d alerts after a day, want 2", n)
	}

	w.slack.setFail("ratelimited_forever")
	p.revoke(leaked)
	w.clock.Add(time.Hour)
	one.step(ctx)
	w.slack.setFail("")
	contained := "The leaked key of an-main (version 1, " + leaked.Fingerprint() + ") is now refused by the provider"
	if n := w.slack.count(contained); n != 0 {
		t.Fatal("posted while Slack refused")
	}
	// Not recorded until the team is told: the leak stays open and is
	// asked about, and told, next round, once.
	rec, err := w.store.Rotation(ctx, "an-main", out.Rotation.ID)
	if err != nil {
		t.Fatal(err)
	}
	if c, _ := rotation.ContainmentOf(rec); !c.OldKeyDead.IsZero() {
		t.Fatalf("the leaked key is recorded dead before the team was told: %+v", c)
	}
	for range 2 {
		w.clock.Add(time.Hour)
		one.step(ctx)
	}
	rec, err = w.store.Rotation(ctx, "an-main", out.Rotation.ID)
	if err != nil {
		t.Fatal(err)
	}
	if c, ok := rotation.ContainmentOf(rec); !ok || c.Contained.IsZero() {
		t.Fatalf("the leak is not recorded contained once told: %+v", c)
	}
	if n := w.slack.count(contained); n != 1 {
		t.Fatalf("messages %q, want one that the leak is contained", w.slack.texts())
	}
	if got := w.said().Keys["an-main"].Leaks; got != nil {
		t.Fatalf("said of leaks no longer followed: %+v", got)
	}
}
