package records

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"slices"
	"time"

	"github.com/rekey-dev/rekey/secret"
)

// Standing is where one version of a key stands.
type Standing string

const (
	StandingCurrent     Standing = "current"     // the version Vault serves
	StandingSuperseded  Standing = "superseded"  // replaced by a rotation
	StandingCompromised Standing = "compromised" // replaced by `rekey leak`
)

// HashAlgorithm names how History hashes a key: HMAC-SHA-256 keyed with
// the history's salt, over the key's bytes.
const HashAlgorithm = "hmac-sha256"

// SaltLen is the length of a history's random salt, in bytes.
const SaltLen = 32

// History is rekey's own account of every version of one key that it has
// stored or replaced, kept whatever Vault retains (max_versions prunes,
// destroy erases). It holds, per version, a keyed hash of the key, never
// the key: enough to refuse an earlier version pasted again and to find
// copies of it, not enough to use it.
type History struct {
	// Salt is the key's random HMAC key, standard base64.
	Salt      string `json:"salt"`
	Algorithm string `json:"algorithm"`
	// Versions, oldest first. A value appears once, at the first version
	// that held it.
	Versions []HistoryVersion `json:"versions"`
}

// HistoryVersion is one version of a key as rekey remembers it.
type HistoryVersion struct {
	Version     int    `json:"version"`
	Hash        string `json:"hmac"` // hex HMAC-SHA-256(salt, key)
	Fingerprint string `json:"fingerprint"`
	Length      int    `json:"length"`
	// Standing and since when; Stored is when Vault created the version.
	Standing Standing  `json:"standing"`
	Since    time.Time `json:"since"`
	Stored   time.Time `json:"stored,omitzero"`
	// RotationID is the rotation that stored it, or last changed its standing.
	RotationID string `json:"rotation_id,omitempty"`
}

// NewHistory returns an empty history with a fresh random salt.
func NewHistory() (*History, error) {
	_, b64, err := newSalt("history")
	if err != nil {
		return nil, err
	}
	return &History{Salt: b64, Algorithm: HashAlgorithm}, nil
}

// SaltBytes returns the salt; an error when the history has none usable.
func (h *History) SaltBytes() ([]byte, error) { return saltBytes("history", h.Algorithm, h.Salt) }

// newSalt returns SaltLen random bytes and their standard base64.
func newSalt(what string) ([]byte, string, error) {
	salt := make([]byte, SaltLen)
	if _, err := rand.Read(salt); err != nil {
		return nil, "", fmt.Errorf("records: %s salt: %w", what, err)
	}
	return salt, base64.StdEncoding.EncodeToString(salt), nil
}

// saltBytes decodes a salt kept as standard base64 for algorithm; an
// error when it is not one rekey made.
func saltBytes(what, algorithm, b64 string) ([]byte, error) {
	if algorithm != HashAlgorithm {
		return nil, fmt.Errorf("records: %s hashed with %q, not %s", what, algorithm, HashAlgorithm)
	}
	salt, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(salt) < 16 {
		return nil, fmt.Errorf("records: %s has no usable salt", what)
	}
	return salt, nil
}

// Hash is the keyed hash of k in this history, in hex.
func (h *History) Hash(k secret.Key) (string, error) {
	salt, err := h.SaltBytes()
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(KeyedHash(salt, k)), nil
}

// KeyedHash is HMAC-SHA-256 of k's bytes keyed with salt (32 bytes).
func KeyedHash(salt []byte, k secret.Key) []byte {
	m := hmac.New(sha256.New, salt)
	m.Write([]byte(k.Reveal())) // hashed here, never stored or shown
	return m.Sum(nil)
}

// Find returns the version that held k, if any.
func (h *History) Find(k secret.Key) (HistoryVersion, bool) {
	want, err := h.Hash(k)
	if err != nil {
		return HistoryVersion{}, false
	}
	for _, v := range h.Versions {
		if hmac.Equal([]byte(v.Hash), []byte(want)) {
			return v, true
		}
	}
	return HistoryVersion{}, false
}

// Add records version, holding k, with standing since at, unless a
// version with the same value is known already. It reports whether the
// history changed.
func (h *History) Add(version int, k secret.Key, stored time.Time, standing Standing, at time.Time, rotationID string) (bool, error) {
	sum, err := h.Hash(k)
	if err != nil {
		return false, err
	}
	for _, v := range h.Versions {
		if hmac.Equal([]byte(v.Hash), []byte(sum)) {
			return false, nil
		}
	}
	h.Versions = append(h.Versions, HistoryVersion{
		Version: version, Hash: sum, Fingerprint: k.Fingerprint(), Length: k.Len(),
		Standing: standing, Since: at.UTC(), Stored: stored.UTC(), RotationID: rotationID,
	})
	slices.SortStableFunc(h.Versions, func(a, b HistoryVersion) int { return a.Version - b.Version })
	return true, nil
}

// SetStanding moves the version holding k to standing, since at. A
// compromised version stays compromised. It reports whether the history
// changed.
func (h *History) SetStanding(k secret.Key, standing Standing, at time.Time, rotationID string) bool {
	sum, err := h.Hash(k)
	if err != nil {
		return false
	}
	for i, v := range h.Versions {
		if !hmac.Equal([]byte(v.Hash), []byte(sum)) {
			continue
		}
		if v.Standing == standing || v.Standing == StandingCompromised {
			return false
		}
		h.Versions[i].Standing, h.Versions[i].Since, h.Versions[i].RotationID = standing, at.UTC(), rotationID
		return true
	}
	return false
}

// Retained is one version Vault holds, as CatchUp takes it.
type Retained struct {
	Version     int
	Key         secret.Key
	Stored      time.Time
	Current     bool   // Vault's current version
	Compromised bool   // on record as compromised (KeyState.Compromised)
	RotationID  string // the rotation that stored it or changed its standing, if any
}

// CatchUp adds every version Vault holds that the history lacks (all of
// them, the first time: the history is seeded from Vault), marks those on
// record as compromised so, and makes Vault's current version the only
// current one (a compromised version stays compromised, even when it is
// stored again). It reports whether the history changed.
func (h *History) CatchUp(vs []Retained, at time.Time) (bool, error) {
	changed := false
	var currentHash, currentRotation string
	for _, v := range vs {
		standing := StandingSuperseded
		switch {
		case v.Compromised:
			standing = StandingCompromised
		case v.Current:
			standing = StandingCurrent
		}
		added, err := h.Add(v.Version, v.Key, v.Stored, standing, at, v.RotationID)
		if err != nil {
			return changed, err
		}
		changed = changed || added
		if !added && v.Compromised {
			changed = h.SetStanding(v.Key, StandingCompromised, at, v.RotationID) || changed
		}
		if v.Current {
			currentHash, _ = h.Hash(v.Key)
			currentRotation = v.RotationID
		}
	}
	if currentHash == "" {
		return changed, nil
	}
	for i, hv := range h.Versions {
		isCurrent := hmac.Equal([]byte(hv.Hash), []byte(currentHash))
		switch {
		case hv.Standing == StandingCurrent && !isCurrent:
			h.Versions[i].Standing, h.Versions[i].Since = StandingSuperseded, at.UTC()
			if currentRotation != "" {
				h.Versions[i].RotationID = currentRotation
			}
			changed = true
		case hv.Standing == StandingSuperseded && isCurrent:
			h.Versions[i].Standing, h.Versions[i].Since = StandingCurrent, at.UTC()
			changed = true
		}
	}
	return changed, nil
}
