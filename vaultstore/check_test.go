package vaultstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"

	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/internal/vaulttest"
	"github.com/rekey-dev/rekey/records"
	"github.com/rekey-dev/rekey/secret"
)

// What a token may do on every path of a rotation is asked of Vault, not
// tried: a policy that denies one record path is found, named, and nothing
// is written.
func TestCheckWritesNamesWhatIsDenied(t *testing.T) {
	env := vaulttest.New(t)
	m := env.Mount
	policy := fmt.Sprintf(`
path "%[1]s/data/an/main" { capabilities = ["read", "update"] }
path "%[1]s/metadata/an/main" { capabilities = ["read", "patch"] }
path "%[1]s/data/rekey/*" { capabilities = ["create", "read", "update"] }
path "%[1]s/data/rekey/keys/+/history" { capabilities = ["read"] }
path "sys/capabilities-self" { capabilities = ["update"] }
`, m)
	s := New(vaulttest.NewClient(t, env.Addr, env.TokenWithPolicy(t, policy)), m, "rekey")
	ctx := context.Background()
	writes := s.RotationWrites("an", "an/main", "20260101T000000Z-abcdef", true)
	if err := s.CheckWrites(ctx, writes); err != nil {
		t.Fatal(err)
	}
	var denied []string
	for _, w := range writes {
		if !w.OK() {
			denied = append(denied, w.Path+": "+strings.Join(w.Lacks, ","))
		}
	}
	if len(denied) != 1 || denied[0] != m+"/data/rekey/keys/an/history: create,update" {
		t.Fatalf("denied = %v, want only the history's create and update", denied)
	}
	// A key with no version yet needs create on its data path.
	writes = s.RotationWrites("an", "an/main", "20260101T000000Z-abcdef", false)
	s.CheckWrites(ctx, writes)
	if writes[0].OK() || strings.Join(writes[0].Lacks, ",") != "create" {
		t.Fatalf("first version: %+v, want create lacking", writes[0])
	}
	if out := env.Dump(t, ""); len(out) != 0 {
		t.Fatalf("checking wrote something:\n%s", out)
	}
	// A root token may do everything.
	root := New(env.Client, m, "rekey")
	writes = root.RotationWrites("an", "an/main", "x", true)
	if err := root.CheckWrites(ctx, writes); err != nil {
		t.Fatal(err)
	}
	for _, w := range writes {
		if !w.OK() {
			t.Fatalf("root lacks %v on %s", w.Lacks, w.Path)
		}
	}
}

func TestSettings(t *testing.T) {
	env := vaulttest.New(t)
	env.Configure(t, map[string]any{"cas_required": true, "max_versions": 3})
	s := New(env.Client, env.Mount, "rekey")
	ctx := context.Background()
	st, err := s.Settings(ctx, "an/main")
	if err != nil || !st.CASRequired || st.MaxVersions != 3 || st.Kept() != 3 {
		t.Fatalf("settings = %+v (keeps %d), %v", st, st.Kept(), err)
	}
	if _, err := s.WriteKey(ctx, "an/main", secret.New("first-key-0123456789"), 0, nil); err != nil {
		t.Fatal(err)
	}
	two := 2
	if err := env.Client.KVv2(env.Mount).PatchMetadata(ctx, "an/main", vaultKVMetadataPatch(&two)); err != nil {
		t.Fatal(err)
	}
	if st, _ := s.Settings(ctx, "an/main"); st.KeyMaxVersions != 2 || st.Kept() != 2 {
		t.Fatalf("key settings = %+v (keeps %d), want 2 kept", st, st.Kept())
	}
	ro := New(vaulttest.NewClient(t, env.Addr, env.TokenWithPolicy(t, fmt.Sprintf(`path "%s/data/*" { capabilities = ["read"] }`, env.Mount))), env.Mount, "rekey")
	if _, err := ro.Settings(ctx, "an/main"); !errors.Is(err, failure.ErrUnauthorized) {
		t.Fatalf("settings without read on config: %v, want failure.ErrUnauthorized", err)
	}
}

func TestHistoryRoundTrip(t *testing.T) {
	env := vaulttest.New(t)
	env.Configure(t, map[string]any{"cas_required": true})
	s := New(env.Client, env.Mount, "rekey")
	ctx := context.Background()
	if _, _, err := s.History(ctx, "an"); !errors.Is(err, failure.ErrNotFound) {
		t.Fatalf("history before any: %v, want failure.ErrNotFound", err)
	}
	k1, k2 := secret.New("first-key-0123456789"), secret.New("second-key-0123456789")
	// Nothing changed: nothing written.
	if _, err := s.UpdateHistory(ctx, "an", func(*records.History) (bool, error) { return false, nil }); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.History(ctx, "an"); !errors.Is(err, failure.ErrNotFound) {
		t.Fatalf("an unchanged history was written: %v", err)
	}
	done := make(chan error)
	for i, k := range []secret.Key{k1, k2} {
		go func() {
			_, err := s.UpdateHistory(ctx, "an", func(h *records.History) (bool, error) {
				return h.Add(i+1, k, time.Time{}, records.StandingSuperseded, time.Now(), "")
			})
			done <- err
		}()
	}
	for range 2 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	h, _, err := New(env.Client, env.Mount, "rekey").History(ctx, "an")
	if err != nil || len(h.Versions) != 2 {
		t.Fatalf("history = %+v, %v; want both versions (written at once, check-and-set)", h, err)
	}
	for _, k := range []secret.Key{k1, k2} {
		if _, ok := h.Find(k); !ok {
			t.Fatalf("%s not in the history read back", k)
		}
	}
}

func vaultKVMetadataPatch(maxVersions *int) vault.KVMetadataPatchInput {
	return vault.KVMetadataPatchInput{MaxVersions: maxVersions}
}
