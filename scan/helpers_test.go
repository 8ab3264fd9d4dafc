package scan

import (
	"bytes"
	"context"
	"slices"
	"testing"

	"github.com/rekey-dev/rekey/secret"
)

// Three versions of one key. keyOld's base64 holds '+' and '/' at every
// alignment, so its standard and URL-safe forms differ.
const (
	keyCur  = "an_live_3f9c2b7d1e8a4f6b0c5d9e2a7b1c4d8f"
	keyOld  = "an~~~~??????>>>>>>0123456789abcdef"
	keyLeak = "an_live_deadbeefcafe0000111122223333aaaa"
)

var allKeys = []string{keyCur, keyOld, keyLeak}

func testNeedles() []Needle {
	return []Needle{
		{Key: secret.New(keyCur), Label: "v3 " + secret.New(keyCur).Fingerprint(), State: "current"},
		{Key: secret.New(keyOld), Label: "v2 " + secret.New(keyOld).Fingerprint(), State: "superseded"},
		{Key: secret.New(keyLeak), Label: "v1 " + secret.New(keyLeak).Fingerprint(), State: "compromised"},
	}
}

func mustCompile(t testing.TB, needles []Needle) *matcher {
	t.Helper()
	m, err := compile(needles)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func scanBytes(t testing.TB, m *matcher, data []byte, chunk int) []Finding {
	t.Helper()
	got, err := scanReader(context.Background(), m, "f", bytes.NewReader(data), chunk)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// naive is the reference the fast matcher is held to: bytes.Index for
// every pattern over the whole content, then the same rules (a base64
// occurrence overlapping a raw one of the same needle is dropped; one
// finding per line, needle and encoding).
func naive(m *matcher, name string, data []byte) []Finding {
	var raws, b64s []span
	for _, p := range m.pats {
		for off := 0; ; {
			i := bytes.Index(data[off:], p.text)
			if i < 0 {
				break
			}
			s := off + i
			for _, h := range p.hits {
				sp := span{needle: h.needle, s: int64(s), e: int64(s + len(p.text)), line: 1 + bytes.Count(data[:s], newline)}
				if h.enc == encRaw {
					raws = append(raws, sp)
				} else {
					b64s = append(b64s, sp)
				}
			}
			off = s + 1
		}
	}
	c := newCollector(m, name)
	for _, r := range raws {
		c.add(r, encRaw)
	}
	for _, b := range b64s {
		if !slices.ContainsFunc(raws, func(r span) bool { return overlap(r, b) }) {
			c.add(b, encBase64)
		}
	}
	sortFindings(c.out)
	return c.out
}

// brief is what a finding says, for comparing with a want list.
type brief struct {
	Line     int
	Needle   int
	Encoding string
}

func briefs(fs []Finding) []brief {
	out := make([]brief, 0, len(fs))
	for _, f := range fs {
		out = append(out, brief{f.Line, f.Needle, f.Encoding})
	}
	return out
}
