package leakcheck

import (
	"encoding/base64"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/rekey-dev/rekey/secret"
)

type fakeT struct{ failed int }

func (f *fakeT) Helper()               {}
func (f *fakeT) Errorf(string, ...any) { f.failed++ }

func TestFindsEveryEncoding(t *testing.T) {
	key := "an-key-0123456789abcdef"
	cases := map[string]string{
		"raw":            "x " + key + " y",
		"hex":            hex.EncodeToString([]byte("zz" + key)),
		"std base64 0":   base64.StdEncoding.EncodeToString([]byte(key)),
		"std base64 1":   base64.StdEncoding.EncodeToString([]byte("A=" + key + "\n")),
		"std base64 2":   base64.StdEncoding.EncodeToString([]byte("K=" + key + "\n")),
		"url base64 1":   base64.RawURLEncoding.EncodeToString([]byte("x" + key)),
		"std in dotenv":  base64.StdEncoding.EncodeToString([]byte("API_KEY=" + key + "\nOTHER=1\n")),
		"raw no padding": base64.RawStdEncoding.EncodeToString([]byte("ab" + key)),
	}
	for name, data := range cases {
		if len(Find([]byte(data), key)) == 0 {
			t.Errorf("%s: not found in %q", name, data)
		}
	}
	if got := Find([]byte("nothing here sha256:0123456789ab"), key); len(got) != 0 {
		t.Errorf("false positive: %v", got)
	}
	ft := &fakeT{}
	Assert(ft, "stdout", []byte(key), key)
	if ft.failed == 0 {
		t.Error("Assert did not fail on a raw key")
	}
	if label(12, 3) != "key #12 as base64 (form 3)" || label(0, 0) != "key #0 as raw (form 0)" {
		t.Errorf("labels: %q %q", label(12, 3), label(0, 0))
	}
}

func TestBase64FragmentsAtEveryAlignment(t *testing.T) {
	for _, key := range []string{"12345678", "an-key-0123456789abcdef", "??>>~~an_live_0123456789abcdef??>>~~"} {
		frags := secret.Base64Fragments(key)
		if len(frags) != 6 {
			t.Fatalf("%d-byte key: %d fragments, want 6", len(key), len(frags))
		}
		for i, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
			for pre := 0; pre < 3; pre++ {
				for post := 0; post < 3; post++ {
					stream := enc.EncodeToString([]byte("xyz"[:pre] + key + "uvw"[:post]))
					if !strings.Contains(stream, frags[i*3+pre]) {
						t.Errorf("%d-byte key, encoding %d, %d before, %d after: fragment missing", len(key), i, pre, post)
					}
				}
			}
		}
	}
	if secret.Base64Fragments("") != nil {
		t.Error("fragments of an empty key")
	}
}
