package cli

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rekey-dev/rekey/internal/leakcheck"
	"github.com/rekey-dev/rekey/records"
	"github.com/rekey-dev/rekey/secret"
)

const (
	hexKey    = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
	b64Key    = "Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MGFiY2RlZg=="
	dashedKey = "Xq7w-Lm2P-9zRt-Kb4v" // no run of 16: not key-shaped, known only from Vault
)

func TestKeyShaped(t *testing.T) {
	for s, want := range map[string]bool{
		hexKey: true,
		b64Key: true,
		"ghp_16C7e42F292c6912E7710c838347Ae178B4a": true,
		dashedKey:                              false,
		"actionnetwork-main":                   false,
		"actionnetwork-main-integration-x":     false,
		"550e8400-e29b-41d4-a716-446655440000": false,
		"scheduled":                            false,
		"updated it by hand in CallHub":        false,
		"abcdefghijklmnopqrstuvwxyz":           false, // no digit
		"12345678901234567890123":              false, // no letter
	} {
		if got := keyShaped(s); got != want {
			t.Errorf("keyShaped(%q) = %v, want %v", s, got, want)
		}
	}
}

// Every argument that looks like a key is hidden from what is written;
// the rest is written as it is.
func TestGuardHidesKeyArguments(t *testing.T) {
	red := secret.NewRedactor()
	g := newArgGuard([]string{"rotate", hexKey, "--reason=" + b64Key, "--note", dashedKey, "--config", "guard_test.go"}, red)
	var out bytes.Buffer
	w := red.Writer(&out)
	fmt.Fprintf(w, "no key %q in rekey.yaml\n--reason must be scheduled or manual, not %q\n", hexKey, b64Key)
	leakcheck.Assert(t, "output", out.Bytes(), hexKey, b64Key)
	if !strings.Contains(out.String(), `no key "`+secret.Marker+`" in rekey.yaml`) {
		t.Fatalf("written:\n%s", out.String())
	}

	// The dashed key is known only once Vault is read.
	out.Reset()
	fmt.Fprintf(w, "key an has no integration %q\n", dashedKey)
	if !strings.Contains(out.String(), dashedKey) {
		t.Fatalf("an argument of no key shape was hidden before Vault was read")
	}
	lookups := 0
	g.configure([]string{"an", "callhub"}, func(context.Context) onRecord { lookups++; return onRecord{keys: []secret.Key{secret.New(dashedKey)}} })
	g.settle(context.Background())
	g.settle(context.Background())
	out.Reset()
	fmt.Fprintf(w, "key an has no integration %q\n", dashedKey)
	leakcheck.Assert(t, "output after Vault was read", out.Bytes(), dashedKey)
	if lookups != 1 {
		t.Fatalf("Vault read %d times", lookups)
	}
}

// A new key, not stored yet, has the shape of the stored ones.
func TestGuardKnowsTheShapeOfKeys(t *testing.T) {
	fresh := "Pq8r-Zx5Y-3mNb-Wc6d"
	red := secret.NewRedactor()
	g := newArgGuard([]string{"confirm", "an", fresh}, red)
	g.configure([]string{"an"}, func(context.Context) onRecord { return onRecord{keys: []secret.Key{secret.New(dashedKey)}} })
	g.settle(context.Background())
	var out bytes.Buffer
	fmt.Fprintf(red.Writer(&out), "no integration %q", fresh)
	leakcheck.Assert(t, "output", out.Bytes(), fresh)
}

// Configured ids are never taken for keys, nor are arguments of no key's
// shape; and with no candidate, Vault is not read.
func TestGuardLeavesIdsAlone(t *testing.T) {
	red := secret.NewRedactor()
	g := newArgGuard([]string{"confirm", "actionnetwork-main", "callhub-integration"}, red)
	g.configure([]string{"actionnetwork-main", "callhub-integration"}, func(context.Context) onRecord {
		t.Fatal("Vault read for arguments that are configured ids")
		return onRecord{}
	})
	g.settle(context.Background())
	var out bytes.Buffer
	fmt.Fprint(red.Writer(&out), "actionnetwork-main callhub-integration")
	if out.String() != "actionnetwork-main callhub-integration" {
		t.Fatalf("written %q", out.String())
	}
}

func TestNoteHoldsKey(t *testing.T) {
	red := secret.NewRedactor()
	g := newArgGuard(nil, red)
	g.configure(nil, func(context.Context) onRecord { return onRecord{keys: []secret.Key{secret.New(dashedKey)}} })
	g.learn(context.Background())
	for note, want := range map[string]bool{
		"updated by hand in CallHub, ticket 4411":          false,
		"pasted " + hexKey + " into CallHub":               true,
		"key=" + b64Key:                                    true,
		"(" + dashedKey + ")":                              true,
		`"` + dashedKey + `"`:                              true,
		"see https://callhub.example/settings?tab=keys":    false,
		"rotated per 550e8400-e29b-41d4-a716-446655440000": false,
	} {
		if got := g.holdsKey(note); got != want {
			t.Errorf("holdsKey(%q) = %v, want %v", note, got, want)
		}
	}
}

// A version Vault no longer holds is known by rekey's history (its keyed
// hash): typed as an argument, it is redacted too.
func TestGuardKnowsPrunedVersions(t *testing.T) {
	pruned := "Hh3k-Pq9w-Zt2m-Xc8v"
	h, err := records.NewHistory()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Add(1, secret.New(pruned), time.Now(), records.StandingCompromised, time.Now(), "r1"); err != nil {
		t.Fatal(err)
	}
	red := secret.NewRedactor()
	g := newArgGuard([]string{"rotate", pruned}, red)
	g.configure([]string{"an"}, func(context.Context) onRecord { return onRecord{histories: []*records.History{h}} })
	g.settle(context.Background())
	var out bytes.Buffer
	fmt.Fprintf(red.Writer(&out), "no key %q in rekey.yaml", pruned)
	leakcheck.Assert(t, "output", out.Bytes(), pruned)
	if !g.holdsKey("it was " + pruned) {
		t.Error("a note holding a pruned version was not caught")
	}
}
