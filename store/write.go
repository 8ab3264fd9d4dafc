package store

import (
	"slices"
	"time"
)

// Write is one place a rotation writes (or reads back), with the
// capabilities its credentials need there and, once checked, those they
// lack.
type Write struct {
	Path  string   `json:"path"` // as the store names it (Vault: <mount>/data/...)
	What  string   `json:"what"` // what rekey keeps there
	Needs []string `json:"needs"`
	Lacks []string `json:"lacks,omitempty"`
	// Also lists more paths of the same record that need the same (the
	// pages of a record laid out over several entries). When one of them
	// lacks something, CheckWrites names it in Path.
	Also []string `json:"-"`
}

// OK reports whether the credentials may do everything the write needs.
func (w Write) OK() bool { return len(w.Lacks) == 0 }

// Paths is Path and Also.
func (w Write) Paths() []string { return append([]string{w.Path}, w.Also...) }

// Lacking fills in w.Lacks from have, what the credentials may do at each
// of w.Paths() (Vault's capability words: "root" may do anything, "deny"
// nothing), and names the first path that lacks something in w.Path.
func (w *Write) Lacking(have func(path string) []string) {
	w.Lacks = nil
	for _, p := range w.Paths() {
		caps := have(p)
		if slices.Contains(caps, "root") {
			continue
		}
		var lacks []string
		for _, c := range w.Needs {
			if !slices.Contains(caps, c) || slices.Contains(caps, "deny") {
				lacks = append(lacks, c)
			}
		}
		if len(lacks) > 0 {
			w.Path, w.Lacks = p, lacks
			return
		}
	}
}

// Settings are what a store says about check-and-set and how many
// versions of one key it keeps.
type Settings struct {
	// CASRequired: the store refuses a write without check-and-set.
	CASRequired bool `json:"cas_required"`
	// MaxVersions kept per key (0: the store's default, 10 for Vault).
	MaxVersions int `json:"max_versions"`
	// DeleteVersionAfter deletes versions that old (0: never).
	DeleteVersionAfter time.Duration `json:"delete_version_after_ns,omitempty"`
	// KeyCASRequired and KeyMaxVersions are the key's own settings.
	KeyCASRequired bool `json:"key_cas_required"`
	KeyMaxVersions int  `json:"key_max_versions"`
}

// Kept is how many versions of the key the store keeps: the key's own
// max_versions, else the store's, else 10.
func (st Settings) Kept() int {
	switch {
	case st.KeyMaxVersions > 0 && (st.MaxVersions == 0 || st.KeyMaxVersions < st.MaxVersions):
		return st.KeyMaxVersions
	case st.MaxVersions > 0:
		return st.MaxVersions
	}
	return 10
}

// Truncate cuts s to at most n bytes on a rune boundary, marking the cut.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - len("…")
	for cut > 0 && s[cut]&0xC0 == 0x80 {
		cut--
	}
	return s[:cut] + "…"
}
