package storetest

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rekey-dev/rekey/records"
	"github.com/rekey-dev/rekey/secret"
	"github.com/rekey-dev/rekey/store"
	"github.com/rekey-dev/rekey/store/memstore"
)

// The tests of the suite itself: it passes the in-memory store, and
// fails each deliberately broken one in the check that should catch it.
// (vaultstore runs it against a real Vault in its own tests.)

// recorder is a T that records failures instead of failing the test.
type recorder struct {
	name     string
	mu       *sync.Mutex
	failures *[]string
	failed   bool
}

func newRecorder() *recorder { return &recorder{mu: &sync.Mutex{}, failures: &[]string{}} }

func (r *recorder) Helper()                   {}
func (r *recorder) Logf(string, ...any)       {}
func (r *recorder) Fatalf(f string, a ...any) { r.Errorf(f, a...); runtime.Goexit() }
func (r *recorder) Errorf(f string, a ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failed = true
	*r.failures = append(*r.failures, r.name+": "+fmt.Sprintf(f, a...))
}

// Run runs f as a subtest, on its own goroutine so Fatalf can end it.
func (r *recorder) Run(name string, f func(T)) bool {
	child := &recorder{name: r.name + "/" + name, mu: r.mu, failures: r.failures}
	done := make(chan struct{})
	go func() { defer close(done); f(child) }()
	<-done
	return !child.failed
}

func (r *recorder) all() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), *r.failures...)
}

// mem makes fresh in-memory stores, each handle broken by wrap.
func mem(wrap func(*memstore.Store) store.Store) Factory {
	return func(T) Backend {
		s := memstore.New(memstore.Options{})
		return Backend{Open: func() store.Store { return wrap(s.Open()) }}
	}
}

func TestSuitePassesTheMemoryStore(t *testing.T) {
	t.Parallel()
	Run(t, mem(func(s *memstore.Store) store.Store { return s }))
}

// noCAS writes over whatever is there: it reads the current version
// first and checks-and-sets on that, whatever version it was given.
type noCAS struct{ *memstore.Store }

func (s noCAS) WriteKey(ctx context.Context, p string, k secret.Key, cas int, meta map[string]string) (int, error) {
	cur, _ := s.Store.ReadKey(ctx, p)
	return s.Store.WriteKey(ctx, p, k, cur.Version, meta)
}

func (s noCAS) SaveSaid(ctx context.Context, said *records.Said, cas int) (int, error) {
	_, v, _ := s.Store.Said(ctx)
	return s.Store.SaveSaid(ctx, said, v)
}

func (s noCAS) PutServeLease(ctx context.Context, l records.ServeLease, cas int) (int, error) {
	_, v, _ := s.Store.ServeLease(ctx)
	return s.Store.PutServeLease(ctx, l, v)
}

func (s noCAS) SaveAudit(ctx context.Context, keyID string, a *records.Audit, cas int) (int, error) {
	_, v, _ := s.Store.LastAudit(ctx, keyID)
	return s.Store.SaveAudit(ctx, keyID, a, v)
}

func (s noCAS) SaveRotation(ctx context.Context, r *records.Rotation) error {
	s.Store.Rotation(ctx, r.KeyID, r.ID) // learn its version, whoever wrote it
	return s.Store.SaveRotation(ctx, r)
}

// immortal never lets a held lock go, expired or not.
type immortal struct{ *memstore.Store }

func (s immortal) Lock(ctx context.Context, keyID string, holder records.Lock, ttl time.Duration) (store.Lease, error) {
	if cur, err := s.Store.ReadLock(ctx, keyID); err == nil && cur.Held {
		return nil, &store.LockedError{KeyID: keyID, Holder: cur}
	}
	return s.Store.Lock(ctx, keyID, holder, ttl)
}

// forgetful keeps only the first 1,000 integrations of a rotation.
type forgetful struct{ *memstore.Store }

func (s forgetful) SaveRotation(ctx context.Context, r *records.Rotation) error {
	cp := *r
	cp.Integrations = map[string]*records.Integration{}
	for id, in := range r.Integrations {
		if len(cp.Integrations) < 1000 {
			cp.Integrations[id] = in
		}
	}
	return s.Store.SaveRotation(ctx, &cp)
}

// lossy keeps one update of the key's state when several race.
type lossy struct{ *memstore.Store }

func (s lossy) UpdateKeyState(ctx context.Context, keyID string, change func(*records.KeyState)) error {
	st, _, err := s.Store.KeyState(ctx, keyID)
	if err != nil {
		return err
	}
	time.Sleep(20 * time.Millisecond) // long enough for the others to read it too
	change(st)
	return s.Store.UpdateKeyState(ctx, keyID, func(cur *records.KeyState) { *cur = *st })
}

// threadless forgets where a rotation's notifications are threaded.
type threadless struct{ *memstore.Store }

func (s threadless) SaveRotation(ctx context.Context, r *records.Rotation) error {
	cp := *r
	cp.Thread = nil
	return s.Store.SaveRotation(ctx, &cp)
}

// journalless does not list the rotation's journal among its writes.
type journalless struct{ *memstore.Store }

func (s journalless) RotationWrites(keyID, p, rotationID string, keyExists bool) []store.Write {
	return slices.DeleteFunc(s.Store.RotationWrites(keyID, p, rotationID, keyExists), func(w store.Write) bool {
		return w.What == "the rotation's journal parts"
	})
}

// reopening opens a code as often as it is given.
type reopening struct {
	*memstore.Store
	opened map[string]map[string]string // shared by the handles
}

func (s reopening) Unwrap(ctx context.Context, code string) (map[string]string, error) {
	if d, ok := s.opened[code]; ok {
		return d, nil
	}
	d, err := s.Store.Unwrap(ctx, code)
	if err == nil {
		s.opened[code] = d
	}
	return d, err
}

// accessorOutlives says a code's accessor lives on after the code was used.
type accessorOutlives struct{ *memstore.Store }

func (s accessorOutlives) LookupAccessor(ctx context.Context, accessor string) (time.Time, error) {
	return time.Now().Add(time.Minute), nil
}

// expiryOnly frees a held lock only when its lease expired, never for a
// dead holder.
type expiryOnly struct{ *memstore.Store }

func (s expiryOnly) Lock(ctx context.Context, keyID string, holder records.Lock, ttl time.Duration) (store.Lease, error) {
	if cur, err := s.Store.ReadLock(ctx, keyID); err == nil && cur.Held && time.Now().Before(cur.Expires) {
		return nil, &store.LockedError{KeyID: keyID, Holder: cur}
	}
	return s.Store.Lock(ctx, keyID, holder, ttl)
}

func TestSuiteFailsBrokenStores(t *testing.T) {
	opened := map[string]map[string]string{}
	cases := []struct {
		bug  string
		wrap func(*memstore.Store) store.Store
		want []string // substrings of failures, each in some failure
		// checks run (all when none): the whole suite takes a while under
		// the race detector, and only these can see the bug.
		checks []string
	}{
		{"ignores check-and-set", func(s *memstore.Store) store.Store { return noCAS{s} }, []string{
			"/keys: WriteKey with check-and-set 0 on a path at version 1",
			"/cas: SaveSaid on a version another instance replaced",
		}, []string{"keys", "cas", "records", "lease", "concurrent", "prove", "wrap"}},
		{"leases never expire", func(s *memstore.Store) store.Store { return immortal{s} }, []string{
			"/lease: Lock of an expired lease",
		}, []string{"keys", "cas", "records", "lease", "concurrent", "prove", "wrap"}},
		{"loses integrations of large rotations", func(s *memstore.Store) store.Store { return forgetful{s} }, []string{
			"/large: read back 1000 integrations",
		}, []string{"large"}},
		{"loses concurrent updates", func(s *memstore.Store) store.Store { return lossy{s} }, []string{
			"/concurrent: 12 writers updated the key's state at once",
		}, []string{"concurrent"}},
		{"forgets a rotation's thread", func(s *memstore.Store) store.Store { return threadless{s} }, []string{
			"/records: the rotation read back differently",
		}, []string{"records"}},
		{"does not list the journal among a rotation's writes", func(s *memstore.Store) store.Store { return journalless{s} }, []string{
			"/prove: RotationWrites lists",
		}, []string{"prove"}},
		{"opens a code twice", func(s *memstore.Store) store.Store { return reopening{s, opened} }, []string{
			"/wrap: Unwrap of a code already used",
		}, []string{"wrap"}},
		{"finds a used code by its accessor", func(s *memstore.Store) store.Store { return accessorOutlives{s} }, []string{
			"/wrap: LookupAccessor of a code already used",
		}, []string{"wrap"}},
		{"frees a lock only when its lease expires", func(s *memstore.Store) store.Store { return expiryOnly{s} }, []string{
			"/lease: Lock held by a dead process of this host",
		}, []string{"lease"}},
	}
	for _, c := range cases {
		t.Run(c.bug, func(t *testing.T) {
			t.Parallel()
			r := newRecorder()
			run(r, mem(c.wrap), c.checks)
			failures := r.all()
			if len(failures) == 0 {
				t.Fatal("the suite passed a broken store")
			}
			for _, want := range c.want {
				found := false
				for _, f := range failures {
					found = found || strings.Contains(f, want)
				}
				if !found {
					t.Errorf("no failure says %q; failures:\n%s", want, strings.Join(failures, "\n"))
				}
			}
		})
	}
}
