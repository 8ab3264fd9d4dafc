// Package leakcheck finds key values in test output, in every encoding a
// careless line of code could produce: raw, standard and URL-safe base64
// (padded or not, at any alignment inside a longer stream), and hex.
package leakcheck

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"strconv"
	"strings"
)

// Forms returns the encodings of key that Find looks for: the key itself,
// lower and upper case hex, then Base64Fragments.
func Forms(key string) []string {
	if key == "" {
		return nil
	}
	b := []byte(key)
	forms := []string{key, hex.EncodeToString(b), strings.ToUpper(hex.EncodeToString(b))}
	return append(forms, Base64Fragments(key)...)
}

// Base64Fragments returns, for standard then URL-safe base64, the part of
// the encoding of key that does not depend on what surrounds it, for each
// of the three alignments the key can have inside a longer base64 stream.
// Any base64 text that encodes the key contains one of them. Fragments
// shorter than 8 characters are left out; a key of 8 bytes or more yields
// all six (identical ones included, when the encoding has no '+' or '/').
func Base64Fragments(key string) []string {
	if key == "" {
		return nil
	}
	b := []byte(key)
	var forms []string
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
		// The key may sit at any of three alignments inside a longer base64
		// stream; keep only the characters that depend on the key alone.
		for off := 0; off < 3; off++ {
			pre := make([]byte, off)
			s := enc.EncodeToString(append(pre, b...))
			start := 0
			if off > 0 {
				start = (off*8 + 5) / 6 // skip characters mixed with the prefix
			}
			end := len(s)
			s = strings.TrimRight(s, "=")
			if tail := (off + len(b)) % 3; tail != 0 {
				end = len(s) - 1 // the last character mixes in padding bits
			} else {
				end = len(s)
			}
			if end-start >= 8 {
				forms = append(forms, s[start:end])
			}
		}
	}
	return forms
}

// Find reports which forms of which keys appear in data, as
// "form N of key K" labels that never include the key itself.
func Find(data []byte, keys ...string) []string {
	var found []string
	for ki, k := range keys {
		for fi, f := range Forms(k) {
			if bytes.Contains(data, []byte(f)) {
				found = append(found, label(ki, fi))
			}
		}
	}
	return found
}

func label(ki, fi int) string {
	names := []string{"raw", "hex", "HEX"}
	name := "base64"
	if fi < len(names) {
		name = names[fi]
	}
	return "key #" + strconv.Itoa(ki) + " as " + name + " (form " + strconv.Itoa(fi) + ")"
}

// TB is the part of testing.TB that Assert needs.
type TB interface {
	Helper()
	Errorf(format string, args ...any)
}

// Assert fails the test if any form of any key appears in data. what names
// the data (for example "stdout" or "Vault record rekey/rotations/x").
func Assert(t TB, what string, data []byte, keys ...string) {
	t.Helper()
	for _, f := range Find(data, keys...) {
		t.Errorf("%s holds %s", what, f)
	}
}
