package slack

import (
	"context"
	"crypto/rand"
	"encoding/hex"
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
	"github.com/rekey-dev/rekey/rotation"
	"github.com/rekey-dev/rekey/secret"
	"github.com/rekey-dev/rekey/state"
	"github.com/rekey-dev/rekey/vaultstore"
)

// cheap is an in-memory integration: it takes the key, or fails for good
// with an error that names its target, as a real one would.
type cheap struct {
	id   string
	fail bool

	mu   sync.Mutex
	held secret.Key
}

var (
	_ integrations.Integration = (*cheap)(nil)
	_ integrations.Reader      = (*cheap)(nil)
)

func (c *cheap) ID() string { return c.id }

func (c *cheap) Apply(ctx context.Context, req integrations.ApplyRequest) (integrations.ApplyResult, error) {
	if c.fail {
		return integrations.ApplyResult{}, fmt.Errorf("http: apply PUT https://%s.example.org/wp-json/signup/v1/settings: status 401: %w", c.id, failure.ErrUnauthorized)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.held = req.Key
	return integrations.ApplyResult{Changed: true, At: time.Now()}, nil
}

func (c *cheap) Read(ctx context.Context) (secret.Key, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.held, nil
}

func randomKey() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// TestEngineWithThousandIntegrations runs real rotations (a real Vault)
// of a key with 1,000 integrations, 900 of them failing, each with its
// own owner, posting to a Slack that enforces Slack's limits: a
// scheduled rotation and a leak. Every message the engine sends arrives as
// rendered, the outcome among them, and names every owner who must act.
func TestEngineWithThousandIntegrations(t *testing.T) {
	for _, reason := range []string{"scheduled", "leak"} {
		t.Run(reason, func(t *testing.T) {
			env := vaulttest.New(t)
			store := vaultstore.New(env.Client, env.Mount, "rekey")
			old, next := randomKey(), randomKey()
			if _, err := store.WriteKey(context.Background(), "an/main", secret.New(old), 0, nil); err != nil {
				t.Fatal(err)
			}
			f := newFake(t)
			n := newBot(t, f, 3)
			job := rotation.Job{
				Key:    config.Key{ID: "actionnetwork-main", VaultPath: "an/main", Provider: "none", Owner: "<@U012ABCDEF>"},
				Reason: reason, Leak: reason == "leak", RotationID: "r-" + reason,
			}
			for i := range 1000 {
				c := &cheap{id: fmt.Sprintf("site-%04d-env", i), fail: i%10 != 0, held: secret.New(old)}
				job.Targets = append(job.Targets, rotation.Target{
					Config:      config.Integration{ID: c.id, Key: "actionnetwork-main", Type: "http", Owner: fmt.Sprintf("<@U%07d>", i)},
					Integration: c,
				})
			}
			e := &rotation.Engine{Store: store, Notifier: n, Concurrency: 64, Backoff: time.Millisecond}
			start := time.Now()
			out, err := e.Rotate(context.Background(), job, secret.New(next))
			if err != nil {
				t.Fatal(err)
			}
			took := time.Since(start)
			failing := 0
			for _, r := range out.Results {
				if r.State == state.Failing {
					failing++
				}
			}
			if failing != 900 {
				t.Fatalf("%d failing, want 900", failing)
			}
			if len(f.refused) > 0 {
				t.Fatalf("Slack refused %v", f.refused)
			}
			calls := f.got()
			var outcome []call
			for _, c := range calls {
				if strings.Contains(c.form.Get("text"), "900 of 1000 integrations not current") {
					outcome = append(outcome, c)
				}
			}
			if len(outcome) != 2 || outcome[0].method != "chat.postMessage" || outcome[1].method != "chat.update" {
				t.Fatalf("the outcome was not posted and the top message edited: %d messages", len(outcome))
			}
			all := strings.Join(accepted(t, calls), "\n")
			for i := range 1000 {
				if i%10 != 0 && !strings.Contains(all, fmt.Sprintf("<@U%07d>", i)) {
					t.Fatalf("owner of failing site-%04d-env is mentioned in no message", i)
				}
			}
			for _, c := range calls[1:] {
				if c.method == "chat.postMessage" && c.form.Get("thread_ts") != "1700000000.000101" {
					t.Errorf("a message outside the rotation's thread")
				}
			}
			leakcheck.Assert(t, "slack messages", []byte(all), old, next)
			leakcheck.Assert(t, "notifier logs", n.logs.Bytes(), old, next)
			t.Logf("%s: %d messages to Slack; rotation took %v", reason, len(calls), took)
		})
	}
}
