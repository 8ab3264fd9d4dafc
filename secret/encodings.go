package secret

import (
	"encoding/base64"
	"strings"
)

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
			s = strings.TrimRight(s, "=")
			end := len(s)
			if (off+len(b))%3 != 0 {
				end-- // the last character mixes in padding bits
			}
			if end-start >= 8 {
				forms = append(forms, s[start:end])
			}
		}
	}
	return forms
}
