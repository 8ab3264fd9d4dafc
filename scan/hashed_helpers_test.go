package scan

import (
	"bytes"
	"encoding/base64"
	"slices"
	"strings"
	"testing"

	"github.com/rekey-dev/rekey/secret"
)

// keyAN is shaped like an Action Network key: 32 hex digits.
const keyAN = "9c1f0e7a3b5d42c8a6e0f1b2c3d4e5f6"

// hashKeys are the test keys a hash can find (keyOld cannot: it holds
// '~', '?' and '>').
var hashKeys = []string{keyCur, keyAN, keyLeak}

var testSalt = []byte("0123456789abcdef0123456789abcdef")

func mustHash(t testing.TB, salt []byte, key string) KeyHash {
	t.Helper()
	h, err := HashKey(salt, secret.New(key))
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// hashNeedles are hashKeys as hashed needles, labelled and with states
// like testNeedles.
func hashNeedles(t testing.TB) []Needle {
	return []Needle{
		{Hash: mustHash(t, testSalt, keyCur), Label: "v3 hashed", State: "current"},
		{Hash: mustHash(t, testSalt, keyAN), Label: "v2 hashed", State: "superseded"},
		{Hash: mustHash(t, testSalt, keyLeak), Label: "v1 hashed", State: "compromised"},
	}
}

// withoutPrints is needles with their fingerprints removed, so that every
// token of a hashed length is HMAC'd.
func withoutPrints(needles []Needle) []Needle {
	out := slices.Clone(needles)
	for i := range out {
		out[i].Hash.Fingerprint = ""
	}
	return out
}

// bothWays runs f with needles as given and without fingerprints.
func bothWays(t *testing.T, needles []Needle, f func(t *testing.T, needles []Needle)) {
	t.Run("fingerprints", func(t *testing.T) { f(t, needles) })
	t.Run("hmac only", func(t *testing.T) { f(t, withoutPrints(needles)) })
}

// keyedTwin is the keyed needle for each of needles' keys, labelled alike.
func keyedTwin(needles []Needle, keys []string) []Needle {
	out := slices.Clone(needles)
	for i := range out {
		out[i].Hash, out[i].Key = KeyHash{}, secret.New(keys[i])
	}
	return out
}

func isTok(d []byte, i int) bool {
	if class[d[i]]&clsKey != 0 {
		return true
	}
	return d[i] == '.' && i > 0 && i+1 < len(d) && class[d[i-1]]&clsKey != 0 && class[d[i+1]]&clsKey != 0
}

// naiveTokens returns every maximal token of d as [start, end) pairs.
func naiveTokens(d []byte) [][2]int {
	var out [][2]int
	for i := 0; i < len(d); {
		if !isTok(d, i) {
			i++
			continue
		}
		j := i
		for j < len(d) && isTok(d, j) {
			j++
		}
		out = append(out, [2]int{i, j})
		i = j
	}
	return out
}

// naiveHashed is the reference the hashed matcher is held to, written
// for clarity: the whole content at once, every token compared with every
// key by value, every base64 run decoded whole by encoding/base64 at each
// of the four alignments, then one finding per line, needle and encoding.
func naiveHashed(m *matcher, keys []string, name string, data []byte) []Finding {
	var raws, b64s []span
	lineOf := func(i int) int { return 1 + bytes.Count(data[:i], newline) }
	match := func(tok []byte, s, e int, into *[]span) {
		for ni, k := range keys {
			if string(tok) == k {
				*into = append(*into, span{needle: ni, s: int64(s), e: int64(e), line: lineOf(s)})
			}
		}
	}
	for _, t := range naiveTokens(data) {
		match(data[t[0]:t[1]], t[0], t[1], &raws)
	}
	for i := 0; i < len(data); {
		if class[data[i]]&clsB64 == 0 {
			i++
			continue
		}
		j := i
		for j < len(data) && class[data[j]]&clsB64 != 0 {
			j++
		}
		for a := 0; a < 4 && i+a < j; a++ {
			q := i + a
			chars := strings.NewReplacer("-", "+", "_", "/").Replace(string(data[q:j]))
			if len(chars)%4 == 1 {
				chars = chars[:len(chars)-1]
			}
			dec, err := base64.RawStdEncoding.DecodeString(chars)
			if err != nil {
				panic(err) // the alphabet is right and the length too
			}
			for _, t := range naiveTokens(dec) {
				s, e := t[0], t[1]
				match(dec[s:e], q+s/3*4+s%3, q+(e-1)/3*4+(e-1)%3+2, &b64s)
			}
		}
		i = j
	}
	c := newCollector(m, name)
	for _, r := range raws {
		c.add(r, encRaw)
	}
	for _, b := range b64s {
		c.add(b, encBase64)
	}
	sortFindings(c.out)
	return c.out
}
