package scan

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/rekey-dev/rekey/internal/leakcheck"
	"github.com/rekey-dev/rekey/secret"
)

func TestStdAndURLFormsDiffer(t *testing.T) {
	// The URL-safe cases below only prove something if they differ.
	f := secret.Base64Fragments(keyOld)
	for i := range 3 {
		if f[i] == f[i+3] {
			t.Fatalf("alignment %d: standard and URL-safe fragments are equal", i)
		}
	}
}

func TestFindsEveryEncodingAtEveryAlignment(t *testing.T) {
	m := mustCompile(t, testNeedles())
	encs := map[string]*base64.Encoding{
		"std": base64.StdEncoding, "url": base64.URLEncoding,
		"rawstd": base64.RawStdEncoding, "rawurl": base64.RawURLEncoding,
	}
	for name, enc := range encs {
		for ni, key := range allKeys {
			for pre := range 3 {
				for post := range 3 {
					plain := "ABC"[:pre] + key + "xyz"[:post]
					data := "# header\nvalue: " + enc.EncodeToString([]byte(plain)) + "\n# end\n"
					got := briefs(scanBytes(t, m, []byte(data), defaultChunk))
					want := []brief{{2, ni, EncodingBase64}}
					if !reflect.DeepEqual(got, want) {
						t.Errorf("%s, key %d, %d before, %d after: got %v, want %v", name, ni, pre, post, got, want)
					}
				}
			}
		}
	}
	// A whole dotenv file base64-encoded into a Kubernetes Secret.
	env := "A=1\nACTION_NETWORK_API_KEY=" + keyLeak + "\nB=2\n"
	k8s := "apiVersion: v1\nkind: Secret\ndata:\n  .env: " + base64.StdEncoding.EncodeToString([]byte(env)) + "\n"
	if got, want := briefs(scanBytes(t, m, []byte(k8s), 64)), []brief{{4, 2, EncodingBase64}}; !reflect.DeepEqual(got, want) {
		t.Errorf("k8s secret: got %v, want %v", got, want)
	}
}

func TestRawPlacements(t *testing.T) {
	m := mustCompile(t, testNeedles())
	cases := []struct {
		name string
		data string
		want []brief
	}{
		{"whole file", keyCur, []brief{{1, 0, EncodingRaw}}},
		{"file with newline", keyCur + "\n", []brief{{1, 0, EncodingRaw}}},
		{"dotenv", "A=1\nKEY=" + keyOld + "\n", []brief{{2, 1, EncodingRaw}}},
		{"crlf", "A=1\r\nB=2\r\nKEY=\"" + keyLeak + "\"\r\n", []brief{{3, 2, EncodingRaw}}},
		{"inside a URL", "url: https://x.example/?key=" + keyCur + "&a=b", []brief{{1, 0, EncodingRaw}}},
		{"twice on a line", keyCur + " " + keyCur, []brief{{1, 0, EncodingRaw}}},
		{"back to back", keyCur + keyCur + keyCur, []brief{{1, 0, EncodingRaw}}},
		{"all versions", "\n\n" + keyLeak + "\n" + keyOld + keyCur, []brief{{3, 2, EncodingRaw}, {4, 0, EncodingRaw}, {4, 1, EncodingRaw}}},
		{"raw and a separate base64 copy on one line", "k=" + keyCur + " b=" + base64.StdEncoding.EncodeToString([]byte(keyCur)),
			[]brief{{1, 0, EncodingBase64}, {1, 0, EncodingRaw}}},
		{"truncated key", keyCur[:len(keyCur)-1] + "\n" + keyCur[1:], nil},
		{"one byte changed", strings.Replace(keyCur, "3f9c", "3f9d", 1), nil},
		{"empty", "", nil},
		{"shorter than a gram", "abc", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, chunk := range []int{1, 3, 17, defaultChunk} {
				got := briefs(scanBytes(t, m, []byte(tc.data), chunk))
				if len(got) == 0 && len(tc.want) == 0 {
					continue
				}
				if !reflect.DeepEqual(got, tc.want) {
					t.Errorf("chunk %d: got %v, want %v", chunk, got, tc.want)
				}
			}
		})
	}
}

func TestRawSuppressesOverlappingBase64(t *testing.T) {
	// A key whose tail is the head of its own base64 encoding, so that a
	// raw copy and a base64 copy can share bytes: "P" + "K" + the rest of
	// the base64 fragment.
	p := "abcdefghijkl"
	key := p + base64.StdEncoding.EncodeToString([]byte(p))[:4]
	frag := secret.Base64Fragments(key)[0]
	if !strings.HasPrefix(frag, key[len(p):]) {
		t.Fatal("test key does not overlap its own encoding")
	}
	m := mustCompile(t, []Needle{{Key: secret.New(key), Label: "v1"}})
	overlapping := p + frag // the raw key ends inside the fragment
	if !strings.Contains(overlapping, key) || !strings.Contains(overlapping, frag) {
		t.Fatal("bad test data")
	}
	for _, chunk := range []int{1, 2, 5, 9, defaultChunk} {
		if got, want := briefs(scanBytes(t, m, []byte(overlapping), chunk)), []brief{{1, 0, EncodingRaw}}; !reflect.DeepEqual(got, want) {
			t.Errorf("overlapping, chunk %d: got %v, want %v", chunk, got, want)
		}
		for _, apart := range []string{key + " " + frag, key + frag, frag + key} {
			if got, want := briefs(scanBytes(t, m, []byte(apart), chunk)), []brief{{1, 0, EncodingBase64}, {1, 0, EncodingRaw}}; !reflect.DeepEqual(got, want) {
				t.Errorf("apart %q, chunk %d: got %v, want %v", apart, chunk, got, want)
			}
		}
	}
}

func TestLineNumbersAcrossChunkBoundaries(t *testing.T) {
	m := mustCompile(t, testNeedles())
	var b strings.Builder
	var want []brief
	line := 1
	for i := range 300 {
		// Lines of every length from empty to longer than the keys.
		fmt.Fprintf(&b, "%s", strings.Repeat("x", i%53))
		if i%7 == 3 {
			n := (i / 7) % 3
			key := allKeys[n]
			if i%2 == 0 {
				b.WriteString(" raw " + key)
				want = append(want, brief{line, n, EncodingRaw})
			} else {
				b.WriteString(" b64 " + base64.URLEncoding.EncodeToString([]byte("xy"[:i%3]+key)))
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
	for chunk := 1; chunk <= 130; chunk++ {
		if got := briefs(scanBytes(t, m, data, chunk)); !reflect.DeepEqual(got, want) {
			t.Fatalf("chunk %d:\n got %v\nwant %v", chunk, got, want)
		}
	}
	if got := briefs(scanBytes(t, m, data, defaultChunk)); !reflect.DeepEqual(got, want) {
		t.Fatalf("default chunk:\n got %v\nwant %v", got, want)
	}
	if got := briefs(naive(m, "f", data)); !reflect.DeepEqual(got, want) {
		t.Fatalf("naive reference:\n got %v\nwant %v", got, want)
	}
}

func TestSameKeyTwoNeedles(t *testing.T) {
	m := mustCompile(t, []Needle{
		{Key: secret.New(keyCur), Label: "v3", State: "current"},
		{Key: secret.New(keyCur), Label: "v3 again", State: "superseded"},
	})
	got := scanBytes(t, m, []byte("x="+keyCur), defaultChunk)
	want := []Finding{
		{Path: "f", Line: 1, Needle: 0, Label: "v3", State: "current", Encoding: EncodingRaw},
		{Path: "f", Line: 1, Needle: 1, Label: "v3 again", State: "superseded", Encoding: EncodingRaw},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

func TestCompileRefusesUnusableNeedles(t *testing.T) {
	short := "1234567"
	for name, needles := range map[string][]Needle{
		"none":  nil,
		"empty": {{Label: "v1"}},
		"short": {{Key: secret.New(keyCur), Label: "v2"}, {Key: secret.New(short), Label: "v1"}},
	} {
		_, err := compile(needles)
		if err == nil {
			t.Errorf("%s: no error", name)
			continue
		}
		leakcheck.Assert(t, name+" error", []byte(err.Error()), short, keyCur)
	}
	if _, err := compile([]Needle{{Key: secret.New("12345678")}}); err != nil {
		t.Errorf("8-byte key refused: %v", err)
	}
}

// cancelReader cancels its context on its first read.
type cancelReader struct {
	r      io.Reader
	cancel context.CancelFunc
}

func (c cancelReader) Read(p []byte) (int, error) {
	c.cancel()
	return c.r.Read(p)
}

func TestScanReaderHonoursContext(t *testing.T) {
	m := mustCompile(t, testNeedles())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	data := strings.Repeat("some text\n", 1000) + keyCur
	_, err := scanReader(ctx, m, "stdin", cancelReader{strings.NewReader(data), cancel}, 64)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	leakcheck.Assert(t, "error", []byte(err.Error()), allKeys...)
}

type failingReader struct{ n int }

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n == 0 {
		return 0, errors.New("disk on fire")
	}
	f.n--
	return copy(p, keyCur), nil
}

func TestScanReaderReportsReadErrors(t *testing.T) {
	_, err := ScanReader(context.Background(), "stdin", &failingReader{n: 3}, testNeedles())
	if err == nil || !strings.Contains(err.Error(), "disk on fire") || !strings.Contains(err.Error(), "stdin") {
		t.Fatalf("err = %v", err)
	}
	leakcheck.Assert(t, "error", []byte(err.Error()), allKeys...)
}

func TestScanReaderPublic(t *testing.T) {
	got, err := ScanReader(context.Background(), "-", bytes.NewReader([]byte("a\n"+keyLeak)), testNeedles())
	if err != nil {
		t.Fatal(err)
	}
	want := []Finding{{Path: "-", Line: 2, Needle: 2, Label: testNeedles()[2].Label, State: "compromised", Encoding: EncodingRaw}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
	leakcheck.Assert(t, "findings", fmt.Appendf(nil, "%#v", got), allKeys...)
}

func TestOverlapRuleWhenMatchesArriveOutOfOrder(t *testing.T) {
	// Occurrences arrive in order of a sampled position, not of their
	// start. Build a text where a base64 copy of key, a raw copy of key
	// sharing its first 6 bytes, and a raw copy of another key (the end of
	// the first plus "ZZ") starting just after the base64 one can meet at
	// one sample, and slide it over every sampling phase.
	q := "0123456789abcdefghijklmnopqrstuvwxyz"[:30]
	tail := base64.StdEncoding.EncodeToString([]byte("xxxxxx" + q))
	key := tail[len(tail)-6:] + q // its encoding ends with its own first 6 bytes
	frag := secret.Base64Fragments(key)[0]
	if !strings.HasSuffix(frag, key[:6]) {
		t.Fatal("test key does not overlap its own encoding")
	}
	other := key[8:] + "ZZ"
	m := mustCompile(t, []Needle{{Key: secret.New(other), Label: "other"}, {Key: secret.New(key), Label: "key"}})
	want := []brief{{2, 0, EncodingRaw}, {2, 1, EncodingRaw}}
	for pad := range 3 * m.stride {
		data := []byte("x\n" + strings.Repeat("-", pad) + frag + q + "ZZ\n" + strings.Repeat("y", 200))
		if got := briefs(naive(m, "f", data)); !reflect.DeepEqual(got, want) {
			t.Fatalf("naive reference, pad %d: got %v, want %v", pad, got, want)
		}
		for _, chunk := range []int{1, 7, 40, 64, defaultChunk} {
			if got := briefs(scanBytes(t, m, data, chunk)); !reflect.DeepEqual(got, want) {
				t.Errorf("pad %d, chunk %d: got %v, want %v", pad, chunk, got, want)
			}
		}
	}
}

func TestOverlapRuleAcrossChunks(t *testing.T) {
	// As above, with the third key a short piece from inside the first, so
	// that it ends before a chunk boundary that the raw copy straddles.
	q := "0123456789abcdefghijklmnopqrstuvwxyz"[:30]
	tail := base64.StdEncoding.EncodeToString([]byte("xxxxxx" + q))
	key := tail[len(tail)-6:] + q
	frag := secret.Base64Fragments(key)[0]
	m := mustCompile(t, []Needle{{Key: secret.New(key[13:25]), Label: "piece"}, {Key: secret.New(key), Label: "key"}})
	for pad := range 2 * m.stride {
		data := []byte("x\n" + strings.Repeat("-", pad) + frag + q + "\n" + strings.Repeat("y", 200))
		want := naive(m, "f", data)
		if slices.Contains(briefs(want), brief{2, 1, EncodingBase64}) || !slices.Contains(briefs(want), brief{2, 1, EncodingRaw}) {
			t.Fatalf("naive reference, pad %d: %v", pad, briefs(want))
		}
		for chunk := 1; chunk < 150; chunk++ {
			if got := scanBytes(t, m, data, chunk); !reflect.DeepEqual(got, want) {
				t.Fatalf("pad %d, chunk %d: got %v, want %v", pad, chunk, briefs(got), briefs(want))
			}
		}
	}
}

func TestDefaultLabelIsTheFingerprint(t *testing.T) {
	k := secret.New(keyCur)
	got, err := ScanReader(context.Background(), "f", strings.NewReader(keyCur), []Needle{{Key: k, State: "current"}})
	if err != nil || len(got) != 1 || got[0].Label != k.Fingerprint() {
		t.Fatalf("got %+v, %v", got, err)
	}
}

// textReader produces n bytes of log-like lines without holding them.
type textReader struct{ n, off int }

func (r *textReader) Read(p []byte) (int, error) {
	if r.off >= r.n {
		return 0, io.EOF
	}
	const line = "2025-03-01T12:00:00Z INFO request id=9f1c2e7a status=200 dur=12ms\n"
	n := 0
	for n < len(p) && r.off < r.n {
		c := copy(p[n:min(len(p), n+r.n-r.off)], line[r.off%len(line):])
		n += c
		r.off += c
	}
	return n, nil
}

func TestMemoryStaysFlat(t *testing.T) {
	m := mustCompile(t, testNeedles())
	const size = 128 << 20
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	got, err := scanReader(context.Background(), m, "big", io.MultiReader(&textReader{n: size}, strings.NewReader(keyCur)), defaultChunk)
	runtime.ReadMemStats(&after)
	if err != nil || len(got) != 1 {
		t.Fatalf("got %+v, %v", got, err)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 4<<20 {
		t.Errorf("allocated %d bytes to scan %d", alloc, size)
	}
}
