package rotation

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/rekey-dev/rekey/config"
	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/integrations"
	"github.com/rekey-dev/rekey/internal/leakcheck"
	"github.com/rekey-dev/rekey/secret"
	"github.com/rekey-dev/rekey/state"
)

// keyGate is a target that can only be verified by authenticating with
// the key it holds ({{key}} in an http verify probe).
type keyGate struct {
	mu   sync.Mutex
	held secret.Key
}

var _ integrations.Verifier = (*keyGate)(nil)

func (g *keyGate) ID() string { return "gate" }

func (g *keyGate) Apply(ctx context.Context, req integrations.ApplyRequest) (integrations.ApplyResult, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.held = req.Key
	return integrations.ApplyResult{Changed: true, At: time.Now()}, nil
}

func (g *keyGate) Verify(ctx context.Context) error {
	k, ok := integrations.ProbeKey(ctx)
	if !ok {
		return fmt.Errorf("gate: no key to authenticate with: %w", failure.ErrTransient)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if !k.Equal(g.held) {
		return fmt.Errorf("gate: status 401: %w", failure.ErrUnauthorized)
	}
	return nil
}

// The engine gives a verify probe the version it checks: the new key in a
// rotation, the current one in an audit.
func TestProbesGetTheKeyTheyCheck(t *testing.T) {
	old, key := secret.New("old-key-aaaaaaaaaaaa"), secret.New("new-key-bbbbbbbbbbbb")
	store, _ := setup(t, old)
	g := &keyGate{held: old}
	j := Job{Key: config.Key{ID: "an", VaultPath: "an/main", Provider: "none"}, Checker: validChecker{}, Reason: "manual",
		Targets: []Target{{Config: config.Integration{ID: "gate", Key: "an", Type: "http"}, Integration: g}}}
	e := &Engine{Store: store}
	out, err := e.Rotate(context.Background(), j, key)
	if err != nil {
		t.Fatal(err)
	}
	if r := out.Results[0]; r.State != state.Current {
		t.Fatalf("after the rotation: %s (%s), want current", r.State, r.Reason)
	}
	if a := e.Audit(context.Background(), j); a.Integrations[0].State != state.Current {
		t.Fatalf("audit: %+v", a.Integrations[0])
	}
	g.mu.Lock()
	g.held = old // someone put the old key back
	g.mu.Unlock()
	a := e.Audit(context.Background(), j)
	if a.Integrations[0].State != state.Failing {
		t.Fatalf("audit of a target holding the old key: %+v", a.Integrations[0])
	}
	leakcheck.Assert(t, "results", fmt.Appendf(nil, "%+v %+v", out.Results, a), old.Reveal(), key.Reveal())
}
