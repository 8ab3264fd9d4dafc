package scan

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"reflect"
	"slices"
	"testing"

	"github.com/rekey-dev/rekey/internal/leakcheck"

	"github.com/rekey-dev/rekey/secret"
)

// FuzzScanMatchesNaive holds the streaming matcher (sampled grams, chunks,
// carried overlap, line counting, raw-over-base64 rule) to the naive
// reference on random content with planted copies of two keys, for a
// random chunk size.
//
// plants is read three bytes at a time: where to insert (scaled to the
// content), what (raw, or standard/URL base64 at alignment 0-2, or a copy
// cut one byte short), and which key.
func FuzzScanMatchesNaive(f *testing.F) {
	f.Add([]byte("hello\nworld\n"), "an_live_0123456789", []byte{0, 0, 0, 128, 1, 1, 255, 4, 0}, uint16(3))
	f.Add([]byte(""), "12345678", []byte{0, 0, 0, 0, 0, 0}, uint16(0))
	f.Add([]byte("a\nb\nc\nd\ne\nf\n"), "abcdefghijklYWJj", []byte{10, 0, 0, 20, 2, 0, 200, 6, 1}, uint16(1))
	f.Fuzz(func(t *testing.T, data []byte, key string, plants []byte, chunk uint16) {
		if len(key) < MinKeyLen {
			key += "-padding"[:MinKeyLen-len(key)]
		}
		keys := []string{key, "other-key-" + key[:4]}
		m, err := compile([]Needle{
			{Key: secret.New(keys[0]), Label: "a"},
			{Key: secret.New(keys[1]), Label: "b"},
		})
		if err != nil {
			t.Fatal(err)
		}
		content := append([]byte(nil), data...)
		for i := 0; i+2 < len(plants) && i < 60; i += 3 {
			k := keys[plants[i+2]%2]
			var ins string
			switch kind := plants[i+1] % 8; {
			case kind == 0:
				ins = k
			case kind <= 3:
				ins = base64.StdEncoding.EncodeToString([]byte("xy"[:kind-1] + k))
			case kind <= 6:
				ins = base64.RawURLEncoding.EncodeToString([]byte("\xfb\xff"[:kind-4] + k))
			default:
				ins = k[1:]
			}
			at := int(plants[i]) * len(content) / 256
			content = append(content[:at], append([]byte(ins), content[at:]...)...)
		}
		want := naive(m, "f", content)
		for _, c := range []int{int(chunk)%97 + 1, defaultChunk} {
			if got := scanBytes(t, m, content, c); !reflect.DeepEqual(got, want) {
				t.Fatalf("chunk %d:\n got %+v\nwant %+v", c, got, want)
			}
		}
	})
}

// FuzzHashedMatchesKeyed holds the hashed matcher, on random content with
// planted copies of two keys and for a random chunk size, to
//
//   - the naive token reference (naiveHashed): the very same findings;
//   - the keyed matcher, with the keys known: every planted copy that is a
//     whole token, raw or in base64, is found by both, on the same line in
//     the same encoding; and the hashed matcher finds nothing the keyed one
//     does not (but where the keyed one dropped a base64 copy for a raw one
//     on that line, or the line mixes the two base64 alphabets, which only
//     the hashed matcher decodes).
//
// The fuzzer's key is mapped onto the key alphabet. plants is read three
// bytes at a time: where (scaled to the content), what, and which key.
// Plants go between pieces of the content, never into another plant.
func FuzzHashedMatchesKeyed(f *testing.F) {
	f.Add([]byte("hello\nworld\n"), "an_live_0123456789", []byte{0, 0, 0, 128, 3, 1, 255, 6, 0}, uint16(3), true)
	f.Add([]byte(""), "12345678", []byte{0, 1, 0, 0, 4, 1}, uint16(0), false)
	f.Add([]byte("a\nb\nc\nd\ne\nf\n"), "sk.live.abc", []byte{10, 2, 0, 20, 5, 1, 200, 7, 0, 90, 0, 1}, uint16(1), true)
	f.Add([]byte("x+y/z_w-v.u QUJD"), "9c1f0e7a3b5d42c8a6e0f1b2c3d4e5f6", []byte{3, 3, 0, 9, 6, 1, 12, 5, 0}, uint16(40), false)
	f.Fuzz(func(t *testing.T, data []byte, key string, plants []byte, chunk uint16, prints bool) {
		key = findable(key)
		keys := []string{key, findable("other-" + key[:min(len(key), 10)])} // the second cut may end in a dot
		needles := []Needle{
			{Hash: mustHash(t, testSalt, keys[0]), Label: "a"},
			{Hash: mustHash(t, []byte("the salt of another key, 32 byte"), keys[1]), Label: "b"},
		}
		if !prints {
			needles = withoutPrints(needles)
		}
		hm := mustCompile(t, needles)
		km := mustCompile(t, keyedTwin(needles, keys))

		type plant struct{ at, kind, key int }
		var ps []plant
		for i := 0; i+2 < len(plants) && i < 60; i += 3 {
			ps = append(ps, plant{int(plants[i]) * len(data) / 256, int(plants[i+1]) % 8, int(plants[i+2]) % 2})
		}
		slices.SortStableFunc(ps, func(a, b plant) int { return a.at - b.at })
		var content []byte
		var want []brief // what every plant of a whole token must give
		last := 0
		for _, p := range ps {
			content = append(content, data[last:p.at]...)
			last = p.at
			k := keys[p.key]
			line := 1 + bytes.Count(content, newline)
			switch p.kind {
			case 0:
				content = append(content, "\n"+k+"\n"...)
				want = append(want, brief{line + 1, p.key, EncodingRaw})
			case 1:
				content = append(content, " "+k+". "...)
				want = append(want, brief{line, p.key, EncodingRaw})
			case 2:
				content = append(content, `"`+k+`"`...)
				want = append(want, brief{line, p.key, EncodingRaw})
			case 3, 4, 5:
				pre := []string{"", "=", "A=1\nKEY="}[p.kind-3]
				content = append(content, " "+base64.StdEncoding.EncodeToString([]byte(pre+k+"\n"))+"\n"...)
				want = append(want, brief{line, p.key, EncodingBase64})
			case 6:
				content = append(content, "="+base64.RawURLEncoding.EncodeToString([]byte("x "+k))+","...)
				want = append(want, brief{line, p.key, EncodingBase64})
			case 7: // glued to other text: only the keyed matcher finds it
				content = append(content, "x"+k+"y"...)
			}
		}
		content = append(content, data[last:]...)

		got := scanBytes(t, hm, content, defaultChunk)
		if ref := naiveHashed(hm, keys, "f", content); !reflect.DeepEqual(got, ref) {
			t.Fatalf("hashed:\n got %v\nnaive reference %v", briefs(got), briefs(ref))
		}
		if small := scanBytes(t, hm, content, int(chunk)%97+1); !reflect.DeepEqual(small, got) {
			t.Fatalf("chunk %d:\n got %v\nwant %v", int(chunk)%97+1, briefs(small), briefs(got))
		}
		keyed := briefs(scanBytes(t, km, content, defaultChunk))
		hashed := briefs(got)
		for _, w := range want {
			if !slices.Contains(hashed, w) || !slices.Contains(keyed, w) {
				t.Errorf("planted %v: hashed found %v, keyed %v", w, hashed, keyed)
			}
		}
		lines := bytes.Split(content, newline)
		for _, h := range hashed {
			if slices.Contains(keyed, h) {
				continue
			}
			l := lines[h.Line-1]
			mixed := bytes.ContainsAny(l, "+/") && bytes.ContainsAny(l, "-_")
			if h.Encoding != EncodingBase64 || !(mixed || slices.Contains(keyed, brief{h.Line, h.Needle, EncodingRaw})) {
				t.Errorf("hashed found %v, keyed did not: keyed %v", h, keyed)
			}
		}
		leakcheck.Assert(t, "findings", fmt.Appendf(nil, "%#v", got), keys...)
	})
}

// findable maps s onto a key that HashFindable accepts: 8 to 64 bytes of
// [A-Za-z0-9_-], keeping a '.' of s where it stands between two of them.
func findable(s string) string {
	const alpha = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
	s = (s + "-padding")[:max(MinKeyLen, min(len(s), 64))]
	b := []byte(s)
	for i, c := range b {
		if c != '.' || i == 0 || i == len(b)-1 || b[i-1] == '.' {
			b[i] = alpha[c%64]
		}
	}
	for i := len(b) - 2; i > 0; i-- { // a '.' before another is not between two key characters
		if b[i] == '.' && b[i+1] == '.' {
			b[i] = 'x'
		}
	}
	return string(b)
}
