package rotation

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rekey-dev/rekey/internal/leakcheck"
	"github.com/rekey-dev/rekey/providers"
	"github.com/rekey-dev/rekey/secret"
)

// revocable is a provider whose keys work until revoked, and counts the
// checks of each.
type revocable struct {
	mu      sync.Mutex
	revoked map[string]bool
	asked   map[string]int
}

func (p *revocable) Check(_ context.Context, k secret.Key) providers.Result {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.asked[k.Fingerprint()]++
	if p.revoked[k.Fingerprint()] {
		return providers.Result{Validity: providers.Invalid, Reason: "status 401"}
	}
	return providers.Result{Validity: providers.Valid, Reason: "status 200"}
}

// After `rekey leak` finished with the leaked key still working, the
// follow-up asks about it once each time: it works (nothing recorded),
// then it is refused (recorded in the rotation's timeline, completing the
// containment, and in the key's state, so it is not asked about again).
// A leaked version pruned from the store cannot be asked about and says
// so.
func TestFollowLeaksUntilTheLeakedKeyIsDead(t *testing.T) {
	ctx := context.Background()
	v1, v2 := secret.New("first-key-aaaaaaaaaaaa"), secret.New("second-key-bbbbbbbbbbb")
	st, env := setup(t, v1)
	p := &revocable{revoked: map[string]bool{}, asked: map[string]int{}}
	e := &Engine{Store: st}
	m := &memTarget{id: "m", held: v1}
	leak := job(m)
	leak.Key.Provider, leak.Checker = "actionnetwork", p
	leak.Reason, leak.Leak = "leak", true
	leak.Timeline = LeakTimeline(time.Now().UTC(), LeakCheck{State: LeakWorks})

	if fs, err := e.FollowLeaks(ctx, leak, nil); err != nil || len(fs) != 0 {
		t.Fatalf("before any leak: %+v, %v", fs, err)
	}
	out, err := e.Rotate(ctx, leak, v2)
	if err != nil {
		t.Fatal(err)
	}

	fs, err := e.FollowLeaks(ctx, leak, nil)
	if err != nil || len(fs) != 1 {
		t.Fatalf("follow-up = %+v, %v", fs, err)
	}
	f := fs[0]
	if f.Version != 1 || f.Fingerprint != v1.Fingerprint() || f.RotationID != out.Rotation.ID || f.Check.State != LeakWorks {
		t.Fatalf("follow-up of a key that still works = %+v", f)
	}
	if !f.Containment.Contained.IsZero() || !strings.Contains(strings.Join(f.Containment.Open, ";"), "not confirmed dead") {
		t.Fatalf("containment while it works = %+v", f.Containment)
	}

	if ks, _, _ := st.KeyState(ctx, "an"); !slices.Equal(e.UnconfirmedLeaks(ctx, "an", ks), []int{1}) {
		t.Fatalf("unconfirmed leaks while it works = %v, want [1]", e.UnconfirmedLeaks(ctx, "an", ks))
	}
	p.revoked[v1.Fingerprint()] = true
	// Found dead, but the team could not be told: nothing is recorded, and
	// the containment it would complete is given to told.
	var told []LeakFollowUp
	fs, err = e.FollowLeaks(ctx, leak, func(f LeakFollowUp) error {
		told = append(told, f)
		return errors.New("slack: ratelimited")
	})
	if err != nil || len(fs) != 1 || len(told) != 1 || told[0].Check.State != LeakDead || told[0].Containment.Contained.IsZero() {
		t.Fatalf("follow-up told nothing: %+v, told %+v, %v", fs, told, err)
	}
	if ks, _, _ := st.KeyState(ctx, "an"); !ks.Compromised[1].Dead.IsZero() {
		t.Fatal("recorded dead although the team was not told")
	}
	fs, err = e.FollowLeaks(ctx, leak, func(LeakFollowUp) error { return nil })
	if err != nil || len(fs) != 1 || fs[0].Check.State != LeakDead || fs[0].Containment.Contained.IsZero() {
		t.Fatalf("follow-up once revoked = %+v, %v", fs, err)
	}
	rec, err := st.Rotation(ctx, "an", out.Rotation.ID)
	if err != nil || !hasMark(rec, MarkOldKeyDead) {
		t.Fatalf("the rotation's timeline has no %q: %+v, %v", MarkOldKeyDead, rec, err)
	}
	ks, _, _ := st.KeyState(ctx, "an")
	if ks.Compromised[1].Dead.IsZero() {
		t.Fatalf("the key's state does not say version 1 is dead: %+v", ks.Compromised)
	}
	if got := e.UnconfirmedLeaks(ctx, "an", ks); len(got) != 0 {
		t.Fatalf("unconfirmed leaks once dead = %v", got)
	}
	asked := p.asked[v1.Fingerprint()]
	if fs, err := e.FollowLeaks(ctx, leak, nil); err != nil || len(fs) != 0 || p.asked[v1.Fingerprint()] != asked {
		t.Fatalf("a dead leaked key is followed up again: %+v, %v (asked %d times, was %d)", fs, err, p.asked[v1.Fingerprint()], asked)
	}

	// A leak whose version the store no longer holds.
	v3 := secret.New("third-key-cccccccccccc")
	env.Configure(t, map[string]any{"max_versions": 1})
	if _, err := e.Rotate(ctx, leak, v3); err != nil { // v2 leaked, then pruned
		t.Fatal(err)
	}
	asked = p.asked[v2.Fingerprint()]
	fs, err = e.FollowLeaks(ctx, leak, nil)
	if err != nil || len(fs) != 1 || fs[0].Version != 2 || fs[0].Check.State != LeakUnknown || !strings.Contains(fs[0].Check.Reason, "no longer held") {
		t.Fatalf("follow-up of a pruned leaked version = %+v, %v", fs, err)
	}
	if p.asked[v2.Fingerprint()] != asked {
		t.Fatal("asked the provider about a key the store no longer holds")
	}
	for _, f := range fs {
		leakcheck.Assert(t, "follow-up", []byte(f.Check.Reason+strings.Join(f.Containment.Open, "")), v1.Reveal(), v2.Reveal(), v3.Reveal())
	}
	leakcheck.Assert(t, "records", env.Dump(t, ""), v1.Reveal(), v2.Reveal(), v3.Reveal())

	// Provider none: nothing to follow.
	none := leak
	none.Key.Provider = "none"
	if fs, err := e.FollowLeaks(ctx, none, nil); err != nil || fs != nil {
		t.Fatalf("provider none: %+v, %v", fs, err)
	}
}
