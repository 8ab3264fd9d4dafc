package vaultstore

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"time"
)

// Write is one path a rotation of a key writes (or reads back), with the
// capabilities its token needs there and, once checked, those it lacks.
type Write struct {
	Path  string   `json:"path"` // as Vault's API names it: <mount>/data/...
	What  string   `json:"what"` // what rekey keeps there
	Needs []string `json:"needs"`
	Lacks []string `json:"lacks,omitempty"`
}

// OK reports whether the token may do everything the write needs.
func (w Write) OK() bool { return len(w.Lacks) == 0 }

// RotationWrites lists every path a rotation of keyID, stored at
// vaultPath, writes, with the capabilities each needs: the key (a new
// version: update, or create when the key has none yet), its metadata
// (patch), and each of rekey's records (the lock, the key's state and
// history, the rotation's record and its journal parts), which are
// created, read back and updated. rotationID names the rotation's own
// records; any id of the same form gives the same answer.
func (s *Store) RotationWrites(keyID, vaultPath, rotationID string, keyExists bool) []Write {
	data := s.mount + "/data/"
	keyNeeds := []string{"read", "update"}
	if !keyExists {
		keyNeeds = []string{"read", "create"}
	}
	rec := []string{"read", "create", "update"}
	return []Write{
		{Path: data + vaultPath, What: "the key", Needs: keyNeeds},
		{Path: s.mount + "/metadata/" + vaultPath, What: "the key's metadata", Needs: []string{"read", "patch"}},
		{Path: data + s.RecordPath("keys", keyID, "lock"), What: "the rotation lock", Needs: rec},
		{Path: data + s.RecordPath("keys", keyID, "state"), What: "the key's state", Needs: rec},
		{Path: data + s.RecordPath(historyPath(keyID)), What: "the key's version history", Needs: rec},
		{Path: data + s.RecordPath("keys", keyID, "rotations", rotationID), What: "the rotation's record", Needs: rec},
		{Path: data + s.RecordPath(journalPath(keyID, rotationID, 0)), What: "the rotation's journal parts", Needs: rec},
	}
}

// CheckWrites asks Vault, in one request and changing nothing, what this
// token may do on each write's path (sys/capabilities-self), and fills in
// what it lacks. It fails only when Vault cannot be asked: an error
// wrapping failure.ErrUnauthorized (the token may not ask) or
// failure.ErrTransient (Vault unreachable, sealed).
func (s *Store) CheckWrites(ctx context.Context, writes []Write) error {
	paths := make([]string, len(writes))
	for i, w := range writes {
		paths[i] = w.Path
	}
	sec, err := s.c.Logical().WriteWithContext(ctx, "sys/capabilities-self", map[string]any{"paths": paths})
	if err != nil {
		return classify(ctx, "vault: ask what the token may do (sys/capabilities-self)", err)
	}
	if sec == nil || sec.Data == nil {
		return fmt.Errorf("vault: sys/capabilities-self gave no answer")
	}
	for i, w := range writes {
		raw, _ := sec.Data[w.Path].([]any)
		var have []string
		for _, c := range raw {
			if s, ok := c.(string); ok {
				have = append(have, s)
			}
		}
		writes[i].Lacks = nil
		if slices.Contains(have, "root") {
			continue
		}
		for _, c := range w.Needs {
			if !slices.Contains(have, c) || slices.Contains(have, "deny") {
				writes[i].Lacks = append(writes[i].Lacks, c)
			}
		}
	}
	return nil
}

// Settings are what a KV v2 mount, and one key on it, say about
// check-and-set and how many versions Vault keeps.
type Settings struct {
	// CASRequired: the mount refuses a write without check-and-set.
	CASRequired bool `json:"cas_required"`
	// MaxVersions the mount keeps per path (0: Vault's default, 10).
	MaxVersions int `json:"max_versions"`
	// DeleteVersionAfter deletes versions that old (0: never).
	DeleteVersionAfter time.Duration `json:"delete_version_after_ns,omitempty"`
	// KeyCASRequired and KeyMaxVersions are the key path's own settings.
	KeyCASRequired bool `json:"key_cas_required"`
	KeyMaxVersions int  `json:"key_max_versions"`
}

// Kept is how many versions of the key Vault keeps: the key's own
// max_versions, else the mount's, else 10.
func (st Settings) Kept() int {
	switch {
	case st.KeyMaxVersions > 0 && (st.MaxVersions == 0 || st.KeyMaxVersions < st.MaxVersions):
		return st.KeyMaxVersions
	case st.MaxVersions > 0:
		return st.MaxVersions
	}
	return 10
}

// Settings reads the mount's configuration (<mount>/config, which needs
// read there) and the key's metadata settings, changing nothing. A key
// that does not exist yet has none of its own. A token that may not read
// the configuration gets an error wrapping failure.ErrUnauthorized.
func (s *Store) Settings(ctx context.Context, vaultPath string) (Settings, error) {
	var st Settings
	sec, err := s.c.Logical().ReadWithContext(ctx, s.mount+"/config")
	if err != nil {
		return st, classify(ctx, "vault: read "+s.mount+"/config", err)
	}
	if sec == nil || sec.Data == nil {
		return st, fmt.Errorf("vault: read %s/config: no answer (is %s a KV version 2 mount?)", s.mount, s.mount)
	}
	st.CASRequired, _ = sec.Data["cas_required"].(bool)
	st.MaxVersions = jsonInt(sec.Data["max_versions"])
	if d, ok := sec.Data["delete_version_after"].(string); ok {
		st.DeleteVersionAfter, _ = time.ParseDuration(d)
	}
	md, err := s.c.KVv2(s.mount).GetMetadata(ctx, vaultPath)
	if err == nil && md != nil {
		st.KeyCASRequired, st.KeyMaxVersions = md.CASRequired, md.MaxVersions
	}
	return st, nil
}

func jsonInt(v any) int {
	switch n := v.(type) {
	case json.Number:
		i, _ := n.Int64()
		return int(i)
	case float64:
		return int(n)
	case string:
		i, _ := strconv.Atoi(n)
		return i
	}
	return 0
}
