package scan

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/rekey-dev/rekey/secret"
)

// corpusSize is the size of the generated text the throughput benchmark
// reads.
const corpusSize = 64 << 20

var corpus = sync.OnceValues(func() ([]byte, int) { return genCorpus(corpusSize) })

// genCorpus makes size bytes of text that looks like what a scan meets on
// a server: config files (dotenv, YAML, JSON), logs full of hex ids and
// base64 tokens, and code. Every 4 MiB or so it plants a copy of one of
// the keys, raw or base64. It returns the text and how many copies it
// planted (each on its own line).
func genCorpus(size int) ([]byte, int) {
	r := rand.New(rand.NewPCG(1, 2))
	words := strings.Fields(`the request user people event tag action network api key token session
		cache worker queue retry timeout config server client error warn info debug handler
		context value field member donation form petition email list sync update delete create`)
	word := func() string { return words[r.IntN(len(words))] }
	rnd := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		return b
	}
	var b bytes.Buffer
	b.Grow(size + 4096)
	planted := 0
	next := 1 << 20
	for b.Len() < size {
		if b.Len() >= next {
			next += 4 << 20
			k := allKeys[planted%3]
			switch planted % 4 {
			case 0:
				fmt.Fprintf(&b, "ACTION_NETWORK_API_KEY=%s\n", k)
			case 1:
				fmt.Fprintf(&b, "  api_key: %q\n", k)
			case 2:
				fmt.Fprintf(&b, "  .env: %s\n", base64.StdEncoding.EncodeToString([]byte("A=1\nKEY="+k+"\n")))
			case 3:
				fmt.Fprintf(&b, "token=%s\n", base64.RawURLEncoding.EncodeToString([]byte(k)))
			}
			planted++
		}
		switch r.IntN(10) {
		case 0, 1, 2, 3: // log line
			fmt.Fprintf(&b, "2025-%02d-%02dT%02d:%02d:%02d.%03dZ %s [%s-%d] %s %s id=%s trace=%s status=%d dur=%dms\n",
				1+r.IntN(12), 1+r.IntN(28), r.IntN(24), r.IntN(60), r.IntN(60), r.IntN(1000),
				[]string{"INFO", "WARN", "DEBUG", "ERROR"}[r.IntN(4)], word(), r.IntN(16), word(), word(),
				hex.EncodeToString(rnd(16)), base64.RawURLEncoding.EncodeToString(rnd(24)), 200+r.IntN(300), r.IntN(5000))
		case 4: // dotenv
			fmt.Fprintf(&b, "%s_%s=%s\n", strings.ToUpper(word()), strings.ToUpper(word()), base64.StdEncoding.EncodeToString(rnd(8+r.IntN(40))))
		case 5: // YAML
			fmt.Fprintf(&b, "%s%s_%s: %s\n", strings.Repeat("  ", r.IntN(4)), word(), word(), word())
		case 6: // JSON
			fmt.Fprintf(&b, "    %q: {%q: %d, %q: %q},\n", word(), word(), r.IntN(100000), word(), hex.EncodeToString(rnd(20)))
		default: // code
			fmt.Fprintf(&b, "%sif err := %s.%s(ctx, %s); err != nil {\n%s\treturn fmt.Errorf(\"%s: %%w\", err)\n%s}\n",
				strings.Repeat("\t", 1+r.IntN(3)), word(), strings.ToUpper(word()[:1])+word(), word(),
				strings.Repeat("\t", 1+r.IntN(3)), word(), strings.Repeat("\t", 1+r.IntN(3)))
		}
	}
	return b.Bytes(), planted
}

// BenchmarkScanThroughput is the matcher on one core: 64 MiB of text in
// memory, three versions (each raw plus six base64 fragments), read in
// the default chunk size as from a file.
func BenchmarkScanThroughput(b *testing.B) {
	data, planted := corpus()
	m := mustCompile(b, testNeedles())
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		found := scanBytes(b, m, data, defaultChunk)
		if len(found) != planted {
			b.Fatalf("%d findings, %d planted", len(found), planted)
		}
	}
}

// BenchmarkNaiveIndex is what the sampled filter replaces: bytes.Index
// for each pattern over the same text (no line counting, no chunks).
func BenchmarkNaiveIndex(b *testing.B) {
	data, _ := corpus()
	m := mustCompile(b, testNeedles())
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for b.Loop() {
		n := 0
		for _, p := range m.pats {
			for off := 0; ; {
				i := bytes.Index(data[off:], p.text)
				if i < 0 {
					break
				}
				n++
				off += i + 1
			}
		}
		if n == 0 {
			b.Fatal("nothing found")
		}
	}
}

// BenchmarkScanTree is a whole scan of a directory tree: 1024 files of
// 32 KiB in 32 directories (in the page cache after the first pass), with
// one worker and with GOMAXPROCS workers.
func BenchmarkScanTree(b *testing.B) {
	data, _ := corpus()
	root := b.TempDir()
	const files, size = 1024, 32 << 10
	for i := range files {
		p := filepath.Join(root, fmt.Sprintf("d%02d", i%32), fmt.Sprintf("f%04d.log", i))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(p, data[i*size:(i+1)*size], 0o644); err != nil {
			b.Fatal(err)
		}
	}
	for _, workers := range slices.Compact([]int{1, runtime.GOMAXPROCS(0)}) {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			b.SetBytes(files * size)
			for b.Loop() {
				res, err := Scan(context.Background(), []string{root}, testNeedles(), Options{Workers: workers})
				if err != nil || res.Files != files {
					b.Fatalf("%v, %d files", err, res.Files)
				}
			}
		})
	}
}

// BenchmarkScanThroughputShortKeys is the worst case for the sampled
// filter: 8-byte keys leave a stride of 1, so every position is hashed.
func BenchmarkScanThroughputShortKeys(b *testing.B) {
	data, _ := corpus()
	m := mustCompile(b, []Needle{
		{Key: secret.New("k3-8byte"), Label: "v3"},
		{Key: secret.New("k2-8byte"), Label: "v2"},
		{Key: secret.New("k1-8byte"), Label: "v1"},
	})
	if m.stride != 1 {
		b.Fatalf("stride %d", m.stride)
	}
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		scanBytes(b, m, data, defaultChunk)
	}
}
