package rotation

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/rekey-dev/rekey/config"
	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/internal/leakcheck"
	"github.com/rekey-dev/rekey/secret"
)

// An integration error that quotes a secret (one that got past the first
// wall: errors built from rekey's own words) reaches no record, result,
// audit or notification: Engine.Redact is applied to each.
func TestRedactHookCoversRecordsResultsAndNotifications(t *testing.T) {
	const token = "wp-admin-token-5f0c2a9e7d1b4c3a"
	old, key := secret.New("old-key-aaaaaaaaaaaa"), secret.New("new-key-bbbbbbbbbbbb")
	store, env := setup(t, old)
	quote := func(k secret.Key) error {
		return fmt.Errorf("mem: the target answered %q with Bearer %s: %w", k.Reveal(), token, failure.ErrInvalid)
	}
	broken := &memTarget{id: "broken", held: old, failures: []error{quote(key)}}
	fine := &memTarget{id: "fine", held: old}
	red := secret.NewRedactor()
	red.Add(token)
	red.AddKey(old, key)
	n := &gateNotifier{}
	e := &Engine{Store: store, Notifier: n, Retries: 1, Redact: red.Redact}
	out, err := e.Rotate(context.Background(), job(broken, fine), key)
	if err != nil {
		t.Fatal(err)
	}
	var texts strings.Builder
	for _, r := range out.Results {
		fmt.Fprintf(&texts, "%s %s %s\n", r.ID, r.State, r.Reason)
	}
	if !strings.Contains(texts.String(), "broken failing mem: the target answered") || !strings.Contains(texts.String(), secret.Marker) {
		t.Fatalf("results:\n%s", texts.String())
	}

	// The audit cannot read broken back: its reason quotes the secrets too.
	audited := job(fine)
	audited.Targets = append(audited.Targets, Target{Config: targetConfig("broken"), Integration: readFails{broken, quote(old)}})
	audit := e.Audit(context.Background(), audited)
	if len(audit.Integrations) != 2 || !strings.Contains(audit.Integrations[1].Reason, secret.Marker) {
		t.Fatalf("audit: %+v", audit.Integrations)
	}
	for _, r := range audit.Integrations {
		fmt.Fprintf(&texts, "%s %s %s\n", r.ID, r.State, r.Reason)
	}
	n.mu.Lock()
	for _, ev := range n.events {
		fmt.Fprintf(&texts, "%+v\n", ev)
	}
	n.mu.Unlock()
	secrets := []string{old.Reveal(), key.Reveal(), token}
	leakcheck.Assert(t, "results, audit and notifications", []byte(texts.String()), secrets...)
	leakcheck.Assert(t, "vault records", env.Dump(t, "rekey/"), secrets...)
}

// readFails is an integration whose read back fails with err.
type readFails struct {
	*memTarget
	err error
}

func (r readFails) Read(context.Context) (secret.Key, error) { return secret.Key{}, r.err }

func targetConfig(id string) config.Integration {
	return config.Integration{ID: id, Key: "an", Type: "mem"}
}
