package scan

import (
	"encoding/base64"
	"reflect"
	"testing"

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
