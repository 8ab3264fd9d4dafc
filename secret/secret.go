// Package secret holds the one type that carries key material.
//
// A Key never prints its value: String, GoString, Format, LogValue,
// MarshalJSON and MarshalText all give its fingerprint. The bytes come out
// only through Reveal, which only wire code (an HTTP request, a file write,
// a child's stdin, a Vault write) may call. Grep for Reveal to audit it.
package secret

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"log/slog"
)

// Key is one value of an API key. The zero Key is empty.
type Key struct {
	v string
}

// New wraps a key value. It does not trim or check it.
func New(value string) Key { return Key{v: value} }

// Reveal returns the key's value. Call it only where the value goes on the
// wire to its destination; never to print, log, store in a record or pass
// in argv or a child's environment.
func (k Key) Reveal() string { return k.v }

// Len is the key's length in bytes.
func (k Key) Len() int { return len(k.v) }

// IsZero reports whether the key is empty.
func (k Key) IsZero() bool { return k.v == "" }

// Equal compares two keys in constant time.
func (k Key) Equal(o Key) bool {
	return subtle.ConstantTimeCompare([]byte(k.v), []byte(o.v)) == 1
}

// Fingerprint is "sha256:" and the first 12 hex digits of SHA-256 of the
// key; "" for an empty key.
func (k Key) Fingerprint() string {
	if k.v == "" {
		return ""
	}
	return Fingerprint([]byte(k.v))
}

// Fingerprint of raw key bytes, in the form used everywhere rekey shows a key.
func Fingerprint(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])[:12]
}

func (k Key) redacted() string {
	if k.v == "" {
		return "<empty key>"
	}
	return "<key " + k.Fingerprint() + ">"
}

// String gives the fingerprint, never the value.
func (k Key) String() string { return k.redacted() }

// GoString gives the fingerprint, never the value.
func (k Key) GoString() string { return "secret.Key(" + k.redacted() + ")" }

// Format prints the fingerprint for every verb, including %x, %q and %v.
func (k Key) Format(f fmt.State, _ rune) { fmt.Fprint(f, k.redacted()) }

// LogValue gives slog the fingerprint.
func (k Key) LogValue() slog.Value { return slog.StringValue(k.redacted()) }

// MarshalJSON gives the fingerprint as a JSON string.
func (k Key) MarshalJSON() ([]byte, error) { return []byte(`"` + k.redacted() + `"`), nil }

// MarshalText gives the fingerprint.
func (k Key) MarshalText() ([]byte, error) { return []byte(k.redacted()), nil }
