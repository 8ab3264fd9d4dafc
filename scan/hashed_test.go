package scan

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/rekey-dev/rekey/internal/leakcheck"
	"github.com/rekey-dev/rekey/secret"
)

func TestHashKey(t *testing.T) {
	h := mustHash(t, testSalt, keyAN)
	mac := hmac.New(sha256.New, testSalt)
	mac.Write([]byte(keyAN))
	if !bytes.Equal(h.Sum[:], mac.Sum(nil)) || h.Len != len(keyAN) || !bytes.Equal(h.Salt, testSalt) {
		t.Fatalf("HashKey is not HMAC-SHA-256(salt, key) with the key's length: %+v", h)
	}
	if !h.Matches(secret.New(keyAN)) {
		t.Error("Matches refuses the key the hash was made from")
	}
	for _, other := range []string{keyCur, keyAN[:31], keyAN + "0", strings.ToUpper(keyAN)} {
		if h.Matches(secret.New(other)) {
			t.Errorf("Matches accepts another key of %d bytes", len(other))
		}
	}
	if h2 := mustHash(t, []byte("another salt of 32 bytes, really"), keyAN); h2.Sum == h.Sum {
		t.Error("two salts give one hash")
	}
	if (KeyHash{}).Matches(secret.New(keyAN)) || !(KeyHash{}).IsZero() || h.IsZero() {
		t.Error("the zero KeyHash is not empty")
	}
	salt := slices.Clone(testSalt)
	h = mustHash(t, salt, keyAN)
	salt[0] ^= 1
	if !h.Matches(secret.New(keyAN)) {
		t.Error("HashKey keeps the caller's salt slice, not a copy")
	}

	for name, tc := range map[string]struct {
		salt []byte
		key  string
	}{
		"short salt": {testSalt[:MinSaltLen-1], keyAN},
		"no salt":    {nil, keyAN},
		"empty key":  {testSalt, ""},
	} {
		_, err := HashKey(tc.salt, secret.New(tc.key))
		if err == nil {
			t.Errorf("%s: no error", name)
			continue
		}
		leakcheck.Assert(t, name+" error", []byte(err.Error()), keyAN)
	}
}

func TestHashFindable(t *testing.T) {
	for _, tc := range []struct {
		key string
		ok  bool
	}{
		{keyAN, true},
		{keyCur, true},
		{"sk_live_51HxYzAbCdEfGhIjKlMnOpQr", true},
		{"xoxb-1234567890-0987654321-AbCdEfGhIjKlMnOp", true},
		{"SG.abcdefghijklmnop.qrstuvwxyz0123456789ABCDEFG", true},
		{"hvs.CAESIJ1example1token", true},
		{"12345678", true},
		{keyOld, false},                                     // '~', '?', '>'
		{"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", false}, // AWS secret keys hold '/' and '+'
		{"abcdefgh.", false},                                // a '.' must stand between two key characters
		{".abcdefgh", false},
		{"abcd..efgh", false},
		{"abc defgh", false},
		{"1234567", false},
		{strings.Repeat("a", MaxHashedKeyLen), true},
		{strings.Repeat("a", MaxHashedKeyLen+1), false},
	} {
		err := HashFindable(secret.New(tc.key))
		if (err == nil) != tc.ok {
			t.Errorf("HashFindable(%d-byte key %s) = %v, want ok %v", len(tc.key), secret.New(tc.key).Fingerprint(), err, tc.ok)
		}
		if err != nil {
			leakcheck.Assert(t, "error", []byte(err.Error()), tc.key)
		}
		// A findable key is found as a token: the definitions agree.
		if tc.ok && len(tc.key) <= 64 {
			toks := naiveTokens([]byte(" " + tc.key + " "))
			if len(toks) != 1 || toks[0] != [2]int{1, 1 + len(tc.key)} {
				t.Errorf("findable key %s is not one token: %v", secret.New(tc.key).Fingerprint(), toks)
			}
		}
	}
}

func TestHashedPlacements(t *testing.T) {
	bothWays(t, hashNeedles(t), testHashedPlacements)
}

func testHashedPlacements(t *testing.T, needles []Needle) {
	m := mustCompile(t, needles)
	// The right sum under the wrong salt finds nothing.
	wrongSalt := needles[1].Hash
	wrongSalt.Salt = []byte("a different salt, same keys, 32B")
	other := mustCompile(t, []Needle{{Hash: wrongSalt}})
	cases := []struct {
		name string
		data string
		want []brief
	}{
		{"whole file", keyCur, []brief{{1, 0, EncodingRaw}}},
		{"file with newline", keyAN + "\n", []brief{{1, 1, EncodingRaw}}},
		{"dotenv", "A=1\nACTION_NETWORK_API_KEY=" + keyAN + "\n", []brief{{2, 1, EncodingRaw}}},
		{"export", "export ACTION_NETWORK_API_KEY='" + keyAN + "'", []brief{{1, 1, EncodingRaw}}},
		{"crlf", "A=1\r\nB=2\r\nKEY=\"" + keyLeak + "\"\r\n", []brief{{3, 2, EncodingRaw}}},
		{"json", `{"an": {"api_key": "` + keyAN + `"}}`, []brief{{1, 1, EncodingRaw}}},
		{"yaml", "an:\n  api_key: " + keyAN, []brief{{2, 1, EncodingRaw}}},
		{"inside a URL", "url: https://x.example/?key=" + keyCur + "&a=b", []brief{{1, 0, EncodingRaw}}},
		{"URL user", "url = https://" + keyLeak + "@git.example/x", []brief{{1, 2, EncodingRaw}}},
		{"header", "OSDI-API-Token: " + keyAN, []brief{{1, 1, EncodingRaw}}},
		{"end of a sentence", "The old key was " + keyAN + ". Do not use it.", []brief{{1, 1, EncodingRaw}}},
		{"after dots", "key..." + keyAN + "...", []brief{{1, 1, EncodingRaw}}},
		{"path segment", "/etc/keys/" + keyAN + "/x", []brief{{1, 1, EncodingRaw}}},
		{"plus-separated", "a+" + keyAN + "+b", []brief{{1, 1, EncodingRaw}}},
		{"twice on a line", keyAN + " " + keyAN, []brief{{1, 1, EncodingRaw}}},
		{"all versions", "\n\n" + keyLeak + "\n" + keyAN + " " + keyCur, []brief{{3, 2, EncodingRaw}, {4, 0, EncodingRaw}, {4, 1, EncodingRaw}}},
		{"raw and base64 on one line", "k=" + keyAN + " b=" + base64.StdEncoding.EncodeToString([]byte(keyAN)),
			[]brief{{1, 1, EncodingBase64}, {1, 1, EncodingRaw}}},
		// Not found: not a whole token, or not the key.
		{"glued before", "x" + keyAN, nil},
		{"glued after", keyAN + "x", nil},
		{"underscore-joined", "KEY_" + keyAN, nil},
		{"dot-joined", keyAN + ".json", nil},
		{"back to back", keyAN + keyAN, nil},
		{"truncated key", keyAN[:31] + "\n" + keyAN[1:], nil},
		{"one byte changed", strings.Replace(keyAN, "9c1f", "9c1e", 1), nil},
		{"upper case", strings.ToUpper(keyAN), nil},
		{"hex of the key", fmt.Sprintf("%x", keyAN), nil},
		{"empty", "", nil},
		{"short", "abc", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, chunk := range []int{1, 3, 17, defaultChunk} {
				if got := briefs(scanBytes(t, m, []byte(tc.data), chunk)); !equalBriefs(got, tc.want) {
					t.Errorf("chunk %d: got %v, want %v", chunk, got, tc.want)
				}
			}
			if got := briefs(naiveHashed(m, hashKeys, "f", []byte(tc.data))); !equalBriefs(got, tc.want) {
				t.Errorf("naive reference: got %v, want %v", got, tc.want)
			}
			if got := scanBytes(t, other, []byte(tc.data), defaultChunk); len(got) != 0 {
				t.Errorf("a hash with the wrong salt found %v", briefs(got))
			}
		})
	}
}

func equalBriefs(a, b []brief) bool { return len(a) == 0 && len(b) == 0 || reflect.DeepEqual(a, b) }

func TestHashedFindsEveryBase64Form(t *testing.T) {
	hm := mustCompile(t, hashNeedles(t))
	km := mustCompile(t, keyedTwin(hashNeedles(t), hashKeys))
	encs := map[string]*base64.Encoding{
		"std": base64.StdEncoding, "url": base64.URLEncoding,
		"rawstd": base64.RawStdEncoding, "rawurl": base64.RawURLEncoding,
	}
	// What may sit around the key inside the encoded text, and around the
	// base64 in the file. "secrets/" and "Bearer_" are base64 characters,
	// so the stream starts one to three characters into its run.
	for name, enc := range encs {
		for ni, key := range hashKeys {
			for _, pre := range []string{"", "=", "A=1\n", "KEY: "} {
				for _, post := range []string{"", "\n", " x", ".\n"} {
					for _, around := range [][2]string{{"value: ", "\n"}, {`"`, `"`}, {"/srv/secrets/", ""}, {"Bearer_", " "}, {"a", ""}, {"ab", ""}, {"abc", ""}} {
						plain := pre + key + post
						data := "# header\n" + around[0] + enc.EncodeToString([]byte(plain)) + around[1] + "\n# end\n"
						want := []brief{{2, ni, EncodingBase64}}
						for _, chunk := range []int{5, 4096} { // 4096: the whole file at once
							if got := briefs(scanBytes(t, hm, []byte(data), chunk)); !reflect.DeepEqual(got, want) {
								t.Errorf("%s, key %d, %q+key+%q in %q: chunk %d: got %v, want %v", name, ni, pre, post, around, chunk, got, want)
							}
						}
						if got := briefs(scanBytes(t, km, []byte(data), 4096)); !reflect.DeepEqual(got, want) {
							t.Errorf("%s, key %d, %q+key+%q in %q: the keyed matcher got %v", name, ni, pre, post, around, got)
						}
					}
				}
			}
		}
	}
	// A whole dotenv file base64-encoded into a Kubernetes Secret.
	env := "A=1\nACTION_NETWORK_API_KEY=" + keyLeak + "\nB=2\n"
	k8s := "apiVersion: v1\nkind: Secret\ndata:\n  .env: " + base64.StdEncoding.EncodeToString([]byte(env)) + "\n"
	for _, chunk := range []int{1, 7, 64, defaultChunk} {
		if got, want := briefs(scanBytes(t, hm, []byte(k8s), chunk)), []brief{{4, 2, EncodingBase64}}; !reflect.DeepEqual(got, want) {
			t.Errorf("k8s secret, chunk %d: got %v, want %v", chunk, got, want)
		}
	}
	// Base64 of the key glued to other characters decodes to a longer
	// token: not found by hash (the keyed matcher finds it).
	glued := base64.StdEncoding.EncodeToString([]byte("x" + keyAN))
	if got := scanBytes(t, hm, []byte(glued), defaultChunk); len(got) != 0 {
		t.Errorf("base64 of x+key: got %v", briefs(got))
	}
}

func TestHashedLineNumbersAcrossChunkBoundaries(t *testing.T) {
	m := mustCompile(t, hashNeedles(t))
	var b strings.Builder
	var want []brief
	line := 1
	for i := range 300 {
		// Lines of every length from empty to longer than the keys, of
		// token characters, so that tokens end at every offset.
		fmt.Fprintf(&b, "%s", strings.Repeat("x", i%53))
		if i%7 == 3 {
			n := (i / 7) % 3
			key := hashKeys[n]
			switch i % 4 {
			case 0:
				b.WriteString(" raw " + key)
				want = append(want, brief{line, n, EncodingRaw})
			case 1:
				b.WriteString(" b64 " + base64.URLEncoding.EncodeToString([]byte("=\n "[:i%3]+key)))
				want = append(want, brief{line, n, EncodingBase64})
			case 2:
				b.WriteString(" raw " + key + ".")
				want = append(want, brief{line, n, EncodingRaw})
			case 3:
				b.WriteString(" b64 " + base64.RawStdEncoding.EncodeToString([]byte("A=\n"[:i%4]+key+"\n")))
				want = append(want, brief{line, n, EncodingBase64})
			}
		}
		b.WriteString("\n")
		if i%11 == 0 {
			b.WriteString("\n\n") // runs of empty lines
			line += 2
		}
		line++
	}
	data := []byte(b.String())
	if got := briefs(naiveHashed(m, hashKeys, "f", data)); !reflect.DeepEqual(got, want) {
		t.Fatalf("naive reference:\n got %v\nwant %v", got, want)
	}
	for chunk := 1; chunk <= 200; chunk++ {
		if got := briefs(scanBytes(t, m, data, chunk)); !reflect.DeepEqual(got, want) {
			t.Fatalf("chunk %d:\n got %v\nwant %v", chunk, got, want)
		}
	}
	if got := briefs(scanBytes(t, m, data, defaultChunk)); !reflect.DeepEqual(got, want) {
		t.Fatalf("default chunk:\n got %v\nwant %v", got, want)
	}
}

// TestHashedEveryOffsetAndChunk puts one copy at every offset of a short
// file, for every chunk size, so that every token and base64 run meets a
// chunk boundary at every place it can: at its edges, inside it, in the
// two bytes around it, with runs longer than a chunk.
func TestHashedEveryOffsetAndChunk(t *testing.T) {
	const key = "k3y.8-ch" // the shortest key: the smallest carry and stride
	m := mustCompile(t, []Needle{{Hash: mustHash(t, testSalt, key), Label: "k"}})
	// The first read fills chunk+carry bytes: start the plants after that,
	// so that chunk boundaries fall everywhere in and around them.
	lead := strings.Repeat(" ", m.carry) + "\n"
	plants := []string{
		key, key + ".", "." + key, key + ".x", "x." + key, // dots next to it: a longer token
		base64.StdEncoding.EncodeToString([]byte(key)),
		base64.RawURLEncoding.EncodeToString([]byte("=" + key)),
		"QUJD" + base64.StdEncoding.EncodeToString([]byte("=="+key+"\n")), // the stream starts four characters in
		"ab" + base64.RawStdEncoding.EncodeToString([]byte(key)),          // ... two characters in
	}
	fills := []string{"abcdefghijklmnopqrstuvwxyz0123", "ab+cd/ef_gh-ij.kl mn\nop", "...........", "\n\n\n\n"}
	found, cases := 0, 0
	for _, plant := range plants {
		for _, fill := range fills {
			for at := 0; at <= len(fill); at++ {
				cases++
				data := []byte(lead + fill[:at] + plant + fill[at:] + "\n" + fill)
				if at == len(fill) {
					data = []byte(lead + fill + plant) // the copy ends the file
				}
				want := naiveHashed(m, []string{key}, "f", data)
				if len(want) > 0 {
					found++
				}
				for chunk := 1; chunk <= len(data)-len(lead)+1; chunk++ {
					if got := scanBytes(t, m, data, chunk); !reflect.DeepEqual(got, want) {
						t.Fatalf("%q at %d in %q, chunk %d:\n got %v\nwant %v", plant, at, fill, chunk, briefs(got), briefs(want))
					}
				}
			}
		}
	}
	// Copies glued to the fill's letters are not tokens; the rest are.
	if found < cases/3 {
		t.Errorf("only %d of %d placements hold a copy: the test proves little", found, cases)
	}
	t.Logf("%d of %d placements hold a copy", found, cases)
}

// TestHashedSamplingPhases moves a copy past short words at every
// distance, so that the samples (one byte in every key length) land at
// every place in the words and the copy.
func TestHashedSamplingPhases(t *testing.T) {
	m := mustCompile(t, []Needle{{Hash: mustHash(t, testSalt, keyAN)}})
	l := len(keyAN)
	for lead := 0; lead <= l+1; lead++ {
		for gap := 1; gap <= l+1; gap++ {
			for _, word := range []string{"a", "ab", strings.Repeat("w", l-1)} {
				for _, copy := range []string{keyAN, base64.StdEncoding.EncodeToString([]byte(keyAN))} {
					data := []byte(strings.Repeat(" ", lead) + word + strings.Repeat(" ", gap) + copy + "\n")
					if got := scanBytes(t, m, data, 4096); len(got) != 1 {
						t.Errorf("%d, %q, %d, then the copy: got %v", lead, word, gap, briefs(got))
					}
				}
			}
		}
	}
}

// TestBase64OfKeyCharactersHasNoPlusOrSlash checks the fact that lets
// hashed needles do without the overlap rule: no six bits taken from key
// characters, at any place in a base64 quantum, make '+' or '/'.
func TestBase64OfKeyCharactersHasNoPlusOrSlash(t *testing.T) {
	var keyChars []byte
	for c := range 256 {
		if class[c]&(clsKey|clsDot) != 0 {
			keyChars = append(keyChars, byte(c))
		}
	}
	for _, a := range keyChars {
		for _, b := range keyChars {
			for _, c := range keyChars {
				// a, b, c fill a quantum; the mixed characters at the edges
				// of a key's base64 are covered by the next check.
				if enc := base64.StdEncoding.EncodeToString([]byte{a, b, c}); strings.ContainsAny(enc, "+/") {
					t.Fatalf("%q encodes to %q", []byte{a, b, c}, enc)
				}
			}
		}
		// A key character first in a quantum, after any byte: the
		// character it shares with that byte is not '+' or '/' either.
		for p := range 256 {
			for off := 1; off <= 2; off++ {
				q := []byte{byte(p), byte(p), a}[2-off:]
				q = append(q, make([]byte, 3-len(q))...)
				if enc := base64.StdEncoding.EncodeToString(q); strings.ContainsAny(enc[off:off+1], "+/") {
					t.Fatalf("%q encodes to %q", q, enc)
				}
			}
		}
	}
}

func TestHashedTokensLongerThanAChunk(t *testing.T) {
	m := mustCompile(t, hashNeedles(t))
	long := strings.Repeat("abcdefghij", 500)                                          // a token far longer than any key
	blob := base64.StdEncoding.EncodeToString([]byte(long + " " + keyAN + " " + long)) // a base64 run many chunks long
	data := []byte(long + " " + keyLeak + " " + long + "\n" + blob + "\n" + long + keyCur)
	want := []brief{{1, 2, EncodingRaw}, {2, 1, EncodingBase64}}
	for _, chunk := range []int{1, 2, 3, 4, 5, 63, 64, 65, 1000, defaultChunk} {
		if got := briefs(scanBytes(t, m, data, chunk)); !reflect.DeepEqual(got, want) {
			t.Errorf("chunk %d: got %v, want %v", chunk, got, want)
		}
	}
}

func TestMixedKeyedAndHashedNeedles(t *testing.T) {
	needles := []Needle{
		{Key: secret.New(keyCur), Label: "v3", State: "current"},
		{Hash: mustHash(t, testSalt, keyAN), Label: "v2", State: "superseded"},
		{Key: secret.New(keyOld), Label: "v1", State: "superseded"},
		{Hash: mustHash(t, []byte("the salt of another key, 32 byte"), keyLeak), Label: "other v1", State: "compromised"},
		{Hash: mustHash(t, testSalt, keyAN), Label: "v2 again", State: "superseded"},
	}
	data := "A=" + keyCur + "\nB=" + keyAN + "\nC=" + keyOld + "\nD=" + base64.StdEncoding.EncodeToString([]byte(keyLeak)) + "\n" + keyCur + " " + keyAN
	for _, chunk := range []int{1, 13, defaultChunk} {
		got := scanBytes(t, mustCompile(t, needles), []byte(data), chunk)
		want := []Finding{
			{Path: "f", Line: 1, Needle: 0, Label: "v3", State: "current", Encoding: EncodingRaw},
			{Path: "f", Line: 2, Needle: 1, Label: "v2", State: "superseded", Encoding: EncodingRaw},
			{Path: "f", Line: 2, Needle: 4, Label: "v2 again", State: "superseded", Encoding: EncodingRaw},
			{Path: "f", Line: 3, Needle: 2, Label: "v1", State: "superseded", Encoding: EncodingRaw},
			{Path: "f", Line: 4, Needle: 3, Label: "other v1", State: "compromised", Encoding: EncodingBase64},
			{Path: "f", Line: 5, Needle: 0, Label: "v3", State: "current", Encoding: EncodingRaw},
			{Path: "f", Line: 5, Needle: 1, Label: "v2", State: "superseded", Encoding: EncodingRaw},
			{Path: "f", Line: 5, Needle: 4, Label: "v2 again", State: "superseded", Encoding: EncodingRaw},
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("chunk %d:\n got %+v\nwant %+v", chunk, got, want)
		}
	}
	// With no Label, a hashed needle is named by the start of its HMAC.
	h := mustHash(t, testSalt, keyAN)
	got, err := ScanReader(context.Background(), "f", strings.NewReader(keyAN), []Needle{{Hash: h}})
	if err != nil || len(got) != 1 || got[0].Label != "hmac:"+fmt.Sprintf("%x", h.Sum[:6]) {
		t.Fatalf("got %+v, %v", got, err)
	}
}

func TestCompileRefusesUnusableHashedNeedles(t *testing.T) {
	good := mustHash(t, testSalt, keyAN)
	shortSalt := good
	shortSalt.Salt = good.Salt[:MinSaltLen-1]
	tooShort, tooLong := good, good
	tooShort.Len, tooLong.Len = MinKeyLen-1, MaxHashedKeyLen+1
	badPrint, shortPrint := good, good
	badPrint.Fingerprint, shortPrint.Fingerprint = "md5:"+good.Fingerprint[7:], good.Fingerprint[:15]
	for name, needles := range map[string][]Needle{
		"both":        {{Key: secret.New(keyAN), Hash: good, Label: "v1"}},
		"neither":     {{Hash: good}, {Label: "v2"}},
		"short salt":  {{Hash: shortSalt}},
		"short key":   {{Hash: tooShort}},
		"long key":    {{Hash: tooLong}},
		"bad print":   {{Hash: badPrint}},
		"short print": {{Hash: shortPrint}},
	} {
		_, err := compile(needles)
		if err == nil {
			t.Errorf("%s: no error", name)
			continue
		}
		leakcheck.Assert(t, name+" error", []byte(err.Error()), keyAN)
	}
}

// TestHashedScanTree runs Scan with the keys given by hash over the tree
// the keyed scan is tested on: the same findings for the keys a hash can
// find, the same files skipped for the same reasons, and no key in the
// findings, the skips or the log.
func TestHashedScanTree(t *testing.T) {
	root, _ := tree(t)
	keyed := testNeedles()
	hashed := []Needle{
		{Hash: mustHash(t, testSalt, keyCur), Label: keyed[0].Label, State: keyed[0].State},
		{Key: secret.New(keyOld), Label: keyed[1].Label, State: keyed[1].State}, // no hash can find it
		{Hash: mustHash(t, testSalt, keyLeak), Label: keyed[2].Label, State: keyed[2].State},
	}
	var logs bytes.Buffer
	opts := Options{MaxFileSize: 10000, Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	want, err := Scan(context.Background(), []string{root}, keyed, opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, workers := range []int{1, 3} {
		opts.Workers = workers
		got, err := Scan(context.Background(), []string{root}, hashed, opts)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("workers %d:\n got %+v\nwant %+v", workers, got, want)
		}
		if len(got.Findings) < 5 || len(got.Skipped) < 4 {
			t.Errorf("the tree did not exercise the scan: %+v", got)
		}
		leakcheck.Assert(t, "result", fmt.Appendf(nil, "%#v", got), allKeys...)
	}
	leakcheck.Assert(t, "log", logs.Bytes(), allKeys...)
}

// TestHashedAgreesWithKeyedOnGeneratedText: on the benchmark's text, with
// the keys known, the hashed and the keyed matchers find the same copies.
func TestHashedAgreesWithKeyedOnGeneratedText(t *testing.T) {
	bothWays(t, hashNeedles(t), testAgreesOnGeneratedText)
}

func testAgreesOnGeneratedText(t *testing.T, hashed []Needle) {
	data, planted := genCorpus(2<<20, 64<<10)
	hm := mustCompile(t, hashed)
	km := mustCompile(t, keyedTwin(hashed, hashKeys))
	got, want := scanBytes(t, hm, data, defaultChunk), scanBytes(t, km, data, defaultChunk)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("hashed:\n %v\nkeyed:\n %v", briefs(got), briefs(want))
	}
	if n := planted[keyCur] + planted[keyAN] + planted[keyLeak]; len(got) != n {
		t.Errorf("%d findings, %d copies planted", len(got), n)
	}
	if small := scanBytes(t, hm, data, 4093); !reflect.DeepEqual(small, got) {
		t.Errorf("chunks of 4093 bytes: %v", briefs(small))
	}
}

func TestHashedMemoryStaysFlat(t *testing.T) {
	m := mustCompile(t, hashNeedles(t))
	// One base64 line of 12 MiB, then the key: a run far longer than a
	// chunk, decoded as it goes.
	blob := io.MultiReader(base64Stream(12<<20), strings.NewReader("\n"+keyAN+"\n"))
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	got, err := scanReader(context.Background(), m, "big", blob, defaultChunk)
	runtime.ReadMemStats(&after)
	if err != nil || !reflect.DeepEqual(briefs(got), []brief{{2, 1, EncodingRaw}}) {
		t.Fatalf("got %+v, %v", got, err)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 4<<20 {
		t.Errorf("allocated %d bytes", alloc)
	}
}

// base64Stream produces n bytes of base64 of random bytes, on one line
// (64 KiB of it, over and over).
func base64Stream(n int) io.Reader {
	r := rand.New(rand.NewPCG(3, 4))
	raw := make([]byte, 48<<10)
	for i := range raw {
		raw[i] = byte(r.Uint32())
	}
	block := []byte(base64.StdEncoding.EncodeToString(raw))
	var parts []io.Reader
	for ; n > 0; n -= len(block) {
		parts = append(parts, bytes.NewReader(block[:min(n, len(block))]))
	}
	return io.MultiReader(parts...)
}

func TestFingerprintsOnlyFilter(t *testing.T) {
	h := mustHash(t, testSalt, keyAN)
	if h.Fingerprint != secret.New(keyAN).Fingerprint() {
		t.Fatalf("HashKey's fingerprint %q is not the key's", h.Fingerprint)
	}
	data := []byte("A=" + keyAN + "\nB=" + base64.StdEncoding.EncodeToString([]byte(keyAN)) + "\n")
	want := []brief{{1, 0, EncodingRaw}, {2, 0, EncodingBase64}}
	wrong := h
	wrong.Fingerprint = secret.New(keyCur).Fingerprint()
	for name, tc := range map[string]struct {
		needles []Needle
		want    []brief
	}{
		"with":  {[]Needle{{Hash: h}}, want},
		"none":  {withoutPrints([]Needle{{Hash: h}}), want},
		"wrong": {[]Needle{{Hash: wrong}}, nil}, // as documented: hidden from the scan
		// A group where one version has no fingerprint HMACs every token.
		"mixed": {[]Needle{{Hash: h}, {Hash: withoutPrints([]Needle{{Hash: mustHash(t, testSalt, keyCur)}})[0].Hash}}, want},
		// The fingerprint of one key's version lets the other key's pass.
		"two keys": {[]Needle{{Hash: mustHash(t, []byte("the salt of another key, 32 byte"), keyCur)}, {Hash: h}},
			[]brief{{1, 1, EncodingRaw}, {2, 1, EncodingBase64}}},
	} {
		for _, chunk := range []int{3, defaultChunk} {
			if got := briefs(scanBytes(t, mustCompile(t, tc.needles), data, chunk)); !equalBriefs(got, tc.want) {
				t.Errorf("%s, chunk %d: got %v, want %v", name, chunk, got, tc.want)
			}
		}
	}
}
