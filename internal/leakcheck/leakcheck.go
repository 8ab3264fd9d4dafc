// Package leakcheck finds key values in test output, in every encoding a
// careless line of code could produce: raw, standard and URL-safe base64
// (padded or not, at any alignment inside a longer stream), and hex.
package leakcheck

import (
	"bytes"
	"encoding/hex"
	"strconv"
	"strings"

	"github.com/rekey-dev/rekey/secret"
)

// Forms returns the encodings of key that Find looks for: the key itself,
// lower and upper case hex, then secret.Base64Fragments.
func Forms(key string) []string {
	if key == "" {
		return nil
	}
	b := []byte(key)
	forms := []string{key, hex.EncodeToString(b), strings.ToUpper(hex.EncodeToString(b))}
	return append(forms, secret.Base64Fragments(key)...)
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
