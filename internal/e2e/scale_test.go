package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rekey-dev/rekey/config"
	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/integrations"
	"github.com/rekey-dev/rekey/internal/leakcheck"
	"github.com/rekey-dev/rekey/internal/vaulttest"
	"github.com/rekey-dev/rekey/providers"
	"github.com/rekey-dev/rekey/records"
	"github.com/rekey-dev/rekey/rotation"
	"github.com/rekey-dev/rekey/secret"
	"github.com/rekey-dev/rekey/state"
	"github.com/rekey-dev/rekey/store/storetest"
	"github.com/rekey-dev/rekey/vaultstore"
)

// target is an integration held in memory that can be told to refuse
// writes, as a service whose token was revoked would.
type target struct {
	id string

	mu      sync.Mutex
	held    secret.Key
	refuses bool
}

var (
	_ integrations.Integration = (*target)(nil)
	_ integrations.Reader      = (*target)(nil)
)

func (m *target) ID() string { return m.id }

func (m *target) Apply(ctx context.Context, req integrations.ApplyRequest) (integrations.ApplyResult, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.refuses {
		return integrations.ApplyResult{}, fmt.Errorf("mem: write %s: status 403: %w", m.id, failure.ErrUnauthorized)
	}
	changed := !m.held.Equal(req.Key)
	m.held = req.Key
	return integrations.ApplyResult{Changed: changed, At: time.Now()}, nil
}

func (m *target) Read(context.Context) (secret.Key, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.held, nil
}

type valid struct{}

func (valid) Check(context.Context, secret.Key) providers.Result {
	return providers.Result{Validity: providers.Valid, Reason: "test"}
}

// A rotation of one key across 10,000 integrations on a real Vault is
// recorded completely (every integration, every journal line), with no
// entry over 256 KiB; resume reads it back and finishes the 100 that
// failed; an audit of all 10,000 is recorded and read back.
func TestTenThousandIntegrationsRecordedAndResumed(t *testing.T) {
	const n = 10000
	ctx := context.Background()
	env := vaulttest.New(t)
	store := vaultstore.New(env.Client, env.Mount, "rekey")
	old, key := secret.New("an-old-0123456789abcdef0123456789"), secret.New("an-new-fedcba9876543210fedcba9876")
	if _, err := store.WriteKey(ctx, "an/main", old, 0, nil); err != nil {
		t.Fatal(err)
	}
	job := rotation.Job{Key: config.Key{ID: "an", VaultPath: "an/main", Provider: "none"}, Checker: valid{}, Reason: "leak", Leak: true,
		Timeline: []records.Mark{{At: time.Now().UTC(), What: rotation.MarkLeakDeclared}}}
	targets := make([]*target, n)
	for i := range n {
		m := &target{id: fmt.Sprintf("site-%05d", i), held: old, refuses: i%100 == 7}
		targets[i] = m
		job.Targets = append(job.Targets, rotation.Target{Config: config.Integration{ID: m.id, Key: "an", Type: "mem"}, Integration: m})
	}
	e := &rotation.Engine{Store: store, Concurrency: 256, Retries: 0}
	start := time.Now()
	out, err := e.Rotate(ctx, job, key)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("rotated %d integrations in %s; the largest entry written holds %d bytes", n, time.Since(start).Round(time.Millisecond), store.Largest())
	if out.RecordErr != nil {
		t.Fatalf("the outcome was not recorded: %v", out.RecordErr)
	}
	if l := store.Largest(); l > storetest.MaxEntry {
		t.Fatalf("an entry of %d bytes was written, over %d", l, storetest.MaxEntry)
	}

	// Recorded completely: read back by another process.
	rec, err := vaultstore.New(env.Client, env.Mount, "rekey").LatestRotation(ctx, "an")
	if err != nil {
		t.Fatal(err)
	}
	counts := map[state.State]int{}
	for _, in := range rec.Integrations {
		counts[in.State]++
	}
	if len(rec.Integrations) != n || counts[state.Current] != n-100 || counts[state.Failing] != 100 {
		t.Fatalf("the record holds %d integrations: %v; want %d current, 100 failing", len(rec.Integrations), counts, n-100)
	}
	if len(rec.Journal) != 3*n-100 || len(rec.Timeline) < n-100 { // a failed write: applying, failing
		t.Fatalf("the record holds %d journal lines and %d timeline marks; want %d and at least %d", len(rec.Journal), len(rec.Timeline), 3*n-100, n-100)
	}
	if r := rec.Integrations["site-00107"]; r.State != state.Failing || !strings.Contains(r.Reason, "status 403") {
		t.Fatalf("site-00107 = %+v", r)
	}

	// The revoked tokens are replaced; resume finishes the job.
	for _, m := range targets {
		m.mu.Lock()
		m.refuses = false
		m.mu.Unlock()
	}
	resumer := vaultstore.New(env.Client, env.Mount, "rekey")
	out, err = (&rotation.Engine{Store: resumer, Concurrency: 256}).Resume(ctx, job)
	if err != nil {
		t.Fatal(err)
	}
	if !out.AllCurrent() || len(out.Results) != n {
		t.Fatalf("resume: %d results, all current %v, record error %v", len(out.Results), out.AllCurrent(), out.RecordErr)
	}
	rec, err = vaultstore.New(env.Client, env.Mount, "rekey").LatestRotation(ctx, "an")
	if err != nil {
		t.Fatal(err)
	}
	for id, in := range rec.Integrations {
		if in.State != state.Current {
			t.Fatalf("after resume the record says %s is %s", id, in.State)
		}
	}
	if c, ok := rotation.ContainmentOf(rec); !ok || c.AllCurrent.IsZero() {
		t.Fatalf("containment read back: %+v", c)
	}

	// Audited: the audit of 10,000 is recorded and read back.
	ka := (&rotation.Engine{Store: resumer, Concurrency: 256}).Audit(ctx, job)
	if !ka.AllCurrent() {
		t.Fatalf("audit: %s", ka.Error)
	}
	a, _, err := vaultstore.New(env.Client, env.Mount, "rekey").LastAudit(ctx, "an")
	if err != nil || len(a.Integrations) != n {
		t.Fatalf("the audit read back holds %d integrations (%v)", len(a.Integrations), err)
	}
	for _, s := range []*vaultstore.Store{store, resumer} {
		if l := s.Largest(); l > storetest.MaxEntry {
			t.Fatalf("an entry of %d bytes was written, over %d", l, storetest.MaxEntry)
		}
	}
	// The records as they stand (reading each of their thousands of
	// earlier versions too would take longer than the rest of the test;
	// the smaller stories search every version).
	leakcheck.Assert(t, "vault records", env.DumpLatest(t, "rekey/"), old.Reveal(), key.Reveal())
}
