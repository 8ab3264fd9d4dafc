package rotation

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rekey-dev/rekey/config"
	"github.com/rekey-dev/rekey/integrations"
	"github.com/rekey-dev/rekey/integrations/file"
	"github.com/rekey-dev/rekey/internal/leakcheck"
	"github.com/rekey-dev/rekey/secret"
	"github.com/rekey-dev/rekey/state"
)

// Two file integrations hold the key in two variables of one .env (a site
// that reads it under two names). The engine applies them at once; in
// each of 20 rotations both values land and both end current.
func TestTwoFileIntegrationsOnOneEnvRotated20Times(t *testing.T) {
	newKey := func() secret.Key {
		b := make([]byte, 16)
		rand.Read(b)
		return secret.New("ak_" + hex.EncodeToString(b))
	}
	old := newKey()
	store, _ := setup(t, old)
	path := filepath.Join(t.TempDir(), ".env")
	if err := os.WriteFile(path, []byte("# site\nAN_KEY="+old.Reveal()+"\nOTHER=1\nACTION_NETWORK_API_KEY="+old.Reveal()+"\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	cfg := &config.Config{File: filepath.Join(t.TempDir(), "rekey.yaml")}
	host := integrations.Host{Config: cfg, Getenv: func(string) string { return "" }}
	j := Job{Key: config.Key{ID: "an", VaultPath: "an/main", Provider: "none"}, Checker: validChecker{}, Reason: "scheduled"}
	for _, field := range []string{"AN_KEY", "ACTION_NETWORK_API_KEY"} {
		in := config.Integration{ID: strings.ToLower(field), Key: "an", Type: file.Type, Settings: map[string]any{"path": path, "format": "dotenv", "field": field}}
		integ, err := file.New(host, in)
		if err != nil {
			t.Fatal(err)
		}
		j.Targets = append(j.Targets, Target{Config: in, Integration: integ})
	}
	keys := []string{old.Reveal()}
	for round := range 20 {
		key := newKey()
		keys = append(keys, key.Reveal())
		out, err := (&Engine{Store: store}).Rotate(context.Background(), j, key)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		for _, r := range out.Results {
			leakcheck.Assert(t, "reason", []byte(r.Reason), keys...)
			if r.State != state.Current {
				t.Fatalf("round %d: %s is %s: %s", round, r.ID, r.State, r.Reason)
			}
		}
		b, _ := os.ReadFile(path)
		if want := "# site\nAN_KEY=" + key.Reveal() + "\nOTHER=1\nACTION_NETWORK_API_KEY=" + key.Reveal() + "\n"; string(b) != want {
			t.Fatalf("round %d: the file lost an update", round)
		}
	}
}
