package records

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/rekey-dev/rekey/internal/leakcheck"
	"github.com/rekey-dev/rekey/secret"
)

func TestHistoryKnowsEveryVersionByHashOnly(t *testing.T) {
	h, err := NewHistory()
	if err != nil {
		t.Fatal(err)
	}
	other, _ := NewHistory()
	if h.Salt == other.Salt {
		t.Fatal("two histories share a salt")
	}
	v1, v2, v3 := secret.New("first-key-aaaaaaaaaaaa"), secret.New("second-key-bbbbbbbbbbb"), secret.New("third-key-cccccccccccc")
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

	// Seeded from what Vault holds: v1 superseded, v2 current.
	changed, err := h.CatchUp([]Retained{{Version: 1, Key: v1, Stored: t0}, {Version: 2, Key: v2, Stored: t0, Current: true}}, t0)
	if err != nil || !changed || len(h.Versions) != 2 {
		t.Fatalf("seed: changed %v, %v, %+v", changed, err, h.Versions)
	}
	if changed, _ := h.CatchUp([]Retained{{Version: 1, Key: v1}, {Version: 2, Key: v2, Current: true}}, t0); changed {
		t.Fatal("catching up with nothing new changed the history")
	}
	// A leak replaces v2 by v3; Vault then prunes v1 and v2.
	t1 := t0.Add(time.Hour)
	if _, err := h.CatchUp([]Retained{{Version: 2, Key: v2, Compromised: true, RotationID: "r2"}, {Version: 3, Key: v3, Current: true, RotationID: "r2"}}, t1); err != nil {
		t.Fatal(err)
	}
	want := map[int]Standing{1: StandingSuperseded, 2: StandingCompromised, 3: StandingCurrent}
	for _, v := range h.Versions {
		if v.Standing != want[v.Version] {
			t.Errorf("version %d is %s, want %s", v.Version, v.Standing, want[v.Version])
		}
	}
	for i, k := range []secret.Key{v1, v2, v3} {
		v, ok := h.Find(k)
		if !ok || v.Version != i+1 || v.Fingerprint != k.Fingerprint() || v.Length != k.Len() {
			t.Errorf("Find(version %d) = %+v, %v", i+1, v, ok)
		}
	}
	if v, _ := h.Find(v2); !v.Since.Equal(t1) || v.RotationID != "r2" {
		t.Errorf("the leaked version's standing since %v by %q, want %v by r2", v.Since, v.RotationID, t1)
	}
	if _, ok := h.Find(secret.New("never-stored-dddddddddd")); ok {
		t.Fatal("a key never stored was found")
	}
	if _, ok := other.Find(v1); ok {
		t.Fatal("another key's history (another salt) found it")
	}

	// The leaked key stored again stays compromised.
	if _, err := h.CatchUp([]Retained{{Version: 3, Key: v3}, {Version: 4, Key: v2, Current: true}}, t1); err != nil {
		t.Fatal(err)
	}
	if v, _ := h.Find(v2); v.Standing != StandingCompromised {
		t.Fatalf("the leaked key stored again is %s", v.Standing)
	}
	if v, _ := h.Find(v3); v.Standing != StandingSuperseded {
		t.Fatalf("the replaced version is %s, want superseded", v.Standing)
	}

	b, _ := json.Marshal(h)
	leakcheck.Assert(t, "history record", b, v1.Reveal(), v2.Reveal(), v3.Reveal())
	if !strings.Contains(string(b), `"algorithm":"hmac-sha256"`) {
		t.Fatalf("record does not name its algorithm: %s", b)
	}
}

func TestHistoryRefusesUnusableSalt(t *testing.T) {
	for _, h := range []*History{{}, {Salt: "c2hvcnQ=", Algorithm: HashAlgorithm}, {Salt: "!!", Algorithm: HashAlgorithm}} {
		if _, err := h.Add(1, secret.New("some-key-aaaaaaaaaaaa"), time.Time{}, StandingCurrent, time.Time{}, ""); err == nil {
			t.Errorf("history %+v hashed a key", h)
		}
	}
}

func TestHandoffSalt(t *testing.T) {
	salt, rec, err := NewHandoffSalt()
	if err != nil || len(salt) != SaltLen {
		t.Fatalf("NewHandoffSalt: %d bytes, %v", len(salt), err)
	}
	if got, err := rec.Bytes(); err != nil || !bytes.Equal(got, salt) {
		t.Fatalf("Bytes of a new salt's record: %x, %v; want %x", got, err, salt)
	}
	if other, _, _ := NewHandoffSalt(); bytes.Equal(other, salt) {
		t.Fatal("two new salts are the same")
	}
	for name, bad := range map[string]HandoffSalt{
		"another algorithm": {Salt: rec.Salt, Algorithm: "sha1"},
		"too short":         {Salt: "c2hvcnQ=", Algorithm: HashAlgorithm},
		"not base64":        {Salt: "!!!", Algorithm: HashAlgorithm},
	} {
		if _, err := bad.Bytes(); err == nil {
			t.Errorf("Bytes of a salt record with %s: no error", name)
		}
	}
}
