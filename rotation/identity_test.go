package rotation_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/rekey-dev/rekey/config"
	"github.com/rekey-dev/rekey/internal/leakcheck"
	"github.com/rekey-dev/rekey/internal/vaulttest"
	"github.com/rekey-dev/rekey/providers/actionnetwork"
	"github.com/rekey-dev/rekey/rotation"
	"github.com/rekey-dev/rekey/secret"
	"github.com/rekey-dev/rekey/vaultstore"
)

// groups is Action Network's groups as the guard sees them: which tags
// each key reads; a key not listed reads none (unknown).
type groups struct {
	mu    sync.Mutex
	tags  map[string][]string // by key value
	reads int
}

func (g *groups) Group(_ context.Context, key secret.Key, salt []byte) ([]string, string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.reads++
	tags := g.tags[key.Reveal()]
	if len(tags) == 0 {
		return nil, "the key reads no tags"
	}
	h, err := actionnetwork.HashIdentity(salt, actionnetwork.Identity{State: actionnetwork.IdentityKnown, Tags: tags})
	if err != nil {
		return nil, err.Error()
	}
	return h, "the key reads some tags"
}

var (
	greens = []string{"action_network:aaaa-1", "action_network:aaaa-2", "action_network:aaaa-3"}
	youth  = []string{"action_network:bbbb-1", "action_network:bbbb-2"}
)

func guardSetup(t *testing.T, old secret.Key) (*vaultstore.Store, *vaulttest.Env, rotation.Job) {
	t.Helper()
	env := vaulttest.New(t)
	s := vaultstore.New(env.Client, env.Mount, "rekey")
	if _, err := s.WriteKey(context.Background(), "an/main", old, 0, nil); err != nil {
		t.Fatal(err)
	}
	return s, env, rotation.Job{Key: config.Key{ID: "an", VaultPath: "an/main", Provider: "actionnetwork"}, Checker: okChecker{}, Reason: "manual"}
}

// A key of another group is refused before anything is written; a key of
// the same group is stored; the records keep hashes, never the tags.
func TestWrongGroupRefused(t *testing.T) {
	ctx := context.Background()
	old, other, right := secret.New("an-old-greens-0123456789abcdef"), secret.New("an-new-youth-0123456789abcdef"), secret.New("an-new-greens-0123456789abcdef")
	g := &groups{tags: map[string][]string{old.Reveal(): greens, other.Reveal(): youth, right.Reveal(): {greens[1], "action_network:aaaa-9"}}}
	s, env, job := guardSetup(t, old)
	eng := &rotation.Engine{Store: s}

	job.Identity = rotation.TakeIdentity(ctx, s, "an", g, old)
	if !job.Identity.Known() || job.Identity.Tags() != 3 {
		t.Fatalf("preflight identity: known %v, %d tags", job.Identity.Known(), job.Identity.Tags())
	}
	_, err := eng.Rotate(ctx, job, other)
	var refused *rotation.RefusedError
	if !errors.As(err, &refused) || !strings.Contains(err.Error(), "belongs to a different Action Network group or list") {
		t.Fatalf("a key of another group: %v, want refused", err)
	}
	if v, _ := s.ReadKey(ctx, "an/main"); v.Version != 1 || !v.Key.Equal(old) {
		t.Fatalf("Vault changed: version %d", v.Version)
	}
	if dump := env.Dump(t, "rekey/"); len(dump) != 0 {
		t.Fatalf("a refused key left records:\n%s", dump)
	}

	job.Identity = rotation.TakeIdentity(ctx, s, "an", g, old)
	if _, err := eng.Rotate(ctx, job, right); err != nil {
		t.Fatalf("a key of the same group: %v", err)
	}
	if !job.Identity.Matched || job.Identity.Warning != "" {
		t.Fatalf("same group: matched %v, warning %q", job.Identity.Matched, job.Identity.Warning)
	}
	st, _, err := s.KeyState(ctx, "an")
	if err != nil || st.Identity == nil || len(st.Identity.Hashes) != 2 || st.Identity.Fingerprint != right.Fingerprint() {
		t.Fatalf("recorded identity: %+v, %v", st.Identity, err)
	}
	dump := env.Dump(t, "")
	for _, tag := range append(append([]string{}, greens...), youth...) {
		if strings.Contains(string(dump), tag) {
			t.Fatalf("records hold the tag %s", tag)
		}
	}
	leakcheck.Assert(t, "vault", env.Dump(t, "rekey/"), old.Reveal(), other.Reveal(), right.Reveal())
}

// When the current key is already dead (its group cannot be read), the
// group recorded with the last rotation is the reference.
func TestRecordedGroupStandsInForADeadKey(t *testing.T) {
	ctx := context.Background()
	k1, k2 := secret.New("an-first-greens-0123456789abc"), secret.New("an-second-greens-0123456789ab")
	wrong, right := secret.New("an-third-youth-0123456789abcd"), secret.New("an-third-greens-0123456789abc")
	g := &groups{tags: map[string][]string{k1.Reveal(): greens, k2.Reveal(): greens, wrong.Reveal(): youth, right.Reveal(): greens}}
	s, _, job := guardSetup(t, k1)
	eng := &rotation.Engine{Store: s}
	job.Identity = rotation.TakeIdentity(ctx, s, "an", g, k1)
	if _, err := eng.Rotate(ctx, job, k2); err != nil {
		t.Fatal(err)
	}
	// k2 leaks and is revoked before rekey runs: it reads nothing now.
	g.mu.Lock()
	delete(g.tags, k2.Reveal())
	g.mu.Unlock()
	job.Identity = rotation.TakeIdentity(ctx, s, "an", g, k2)
	if !job.Identity.Known() || !strings.Contains(job.Identity.Source, "recorded with rotation") {
		t.Fatalf("reference: known %v from %q (%s)", job.Identity.Known(), job.Identity.Source, job.Identity.Reason)
	}
	if _, err := eng.Rotate(ctx, job, wrong); err == nil || !strings.Contains(err.Error(), "different Action Network group") {
		t.Fatalf("a key of another group against the recorded one: %v", err)
	}
	job.Identity = rotation.TakeIdentity(ctx, s, "an", g, k2)
	if _, err := eng.Rotate(ctx, job, right); err != nil {
		t.Fatalf("the right group against the recorded one: %v", err)
	}
}

// An identity that cannot be told, on either side, lets the key through
// with a warning that says so.
func TestUnknownGroupWarns(t *testing.T) {
	ctx := context.Background()
	old, tagless := secret.New("an-old-greens-0123456789abcdef"), secret.New("an-new-no-tags-0123456789abcd")
	g := &groups{tags: map[string][]string{old.Reveal(): greens}}
	s, _, job := guardSetup(t, old)
	eng := &rotation.Engine{Store: s}
	job.Identity = rotation.TakeIdentity(ctx, s, "an", g, old)
	if _, err := eng.Rotate(ctx, job, tagless); err != nil {
		t.Fatalf("a key whose group is unknown: %v", err)
	}
	if w := job.Identity.Warning; !strings.Contains(w, "group is unknown") || job.Identity.Matched {
		t.Fatalf("warning %q, matched %v", w, job.Identity.Matched)
	}
	// The group the new key could not read is kept from the old one.
	st, _, _ := s.KeyState(ctx, "an")
	if st.Identity == nil || !st.Identity.Inherited || len(st.Identity.Hashes) != 3 {
		t.Fatalf("recorded: %+v", st.Identity)
	}

	// Neither side known: a brand-new key with no group anywhere.
	s2, _, job2 := guardSetup(t, secret.New("an-old-no-tags-0123456789abcd"))
	job2.Identity = rotation.TakeIdentity(ctx, s2, "an", &groups{}, secret.New("an-old-no-tags-0123456789abcd"))
	if job2.Identity.Known() {
		t.Fatal("known with no tags anywhere")
	}
	if _, err := (&rotation.Engine{Store: s2}).Rotate(ctx, job2, secret.New("an-new-no-tags-0123456789abcd")); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(job2.Identity.Warning, "unknown") {
		t.Fatalf("warning %q", job2.Identity.Warning)
	}
}
