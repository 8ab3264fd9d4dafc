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

var corpus = sync.OnceValues(func() ([]byte, map[string]int) { return genCorpus(corpusSize, 4<<20) })

// plantedKeys are the keys genCorpus plants copies of, in turn.
var plantedKeys = []string{keyCur, keyOld, keyLeak, keyAN}

// genCorpus makes size bytes of text that looks like what a scan meets on
// a server and in a source tree: logs full of hex ids and base64 tokens,
// config files (dotenv, YAML, JSON), code, minified JavaScript (long lines,
// now and then an inline base64 image), lockfiles and checksum lists
// (package-lock.json integrity, go.sum, Cargo.lock, yarn.lock, md5sum
// output: hex and base64 of every length a key has). From 1 MiB on, every
// `every` bytes or so, it plants a copy of one of plantedKeys, raw or
// base64, each on its own line and as a whole token. It returns the text
// and how many copies of each key it planted.
func genCorpus(size, every int) ([]byte, map[string]int) {
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
	ident := func() string { // a minifier's identifier
		const a = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_$"
		n := 1 + r.IntN(2)
		b := make([]byte, n)
		for i := range b {
			b[i] = a[r.IntN(len(a))]
		}
		return string(b)
	}
	pkg := func() string { return word() + "-" + word() }
	ver := func() string { return fmt.Sprintf("%d.%d.%d", r.IntN(10), r.IntN(30), r.IntN(50)) }
	var b bytes.Buffer
	b.Grow(size + 16<<10)
	planted := map[string]int{}
	n := 0
	next := min(1<<20, every)
	for b.Len() < size {
		if b.Len() >= next {
			next += every
			k := plantedKeys[n%len(plantedKeys)]
			switch n % 5 {
			case 0:
				fmt.Fprintf(&b, "ACTION_NETWORK_API_KEY=%s\n", k)
			case 1:
				fmt.Fprintf(&b, "  api_key: %q\n", k)
			case 2:
				fmt.Fprintf(&b, "  .env: %s\n", base64.StdEncoding.EncodeToString([]byte("A=1\nKEY="+k+"\n")))
			case 3:
				fmt.Fprintf(&b, "token=%s\n", base64.RawURLEncoding.EncodeToString([]byte(k)))
			case 4:
				fmt.Fprintf(&b, "      headers: {'OSDI-API-Token': '%s'},\n", k)
			}
			planted[k]++
			n++
		}
		switch r.IntN(20) {
		case 0, 1, 2, 3, 4, 5: // log line
			fmt.Fprintf(&b, "2025-%02d-%02dT%02d:%02d:%02d.%03dZ %s [%s-%d] %s %s id=%s trace=%s status=%d dur=%dms\n",
				1+r.IntN(12), 1+r.IntN(28), r.IntN(24), r.IntN(60), r.IntN(60), r.IntN(1000),
				[]string{"INFO", "WARN", "DEBUG", "ERROR"}[r.IntN(4)], word(), r.IntN(16), word(), word(),
				hex.EncodeToString(rnd(16)), base64.RawURLEncoding.EncodeToString(rnd(24)), 200+r.IntN(300), r.IntN(5000))
		case 6, 7: // dotenv
			fmt.Fprintf(&b, "%s_%s=%s\n", strings.ToUpper(word()), strings.ToUpper(word()), base64.StdEncoding.EncodeToString(rnd(8+r.IntN(40))))
		case 8: // YAML
			fmt.Fprintf(&b, "%s%s_%s: %s\n", strings.Repeat("  ", r.IntN(4)), word(), word(), word())
		case 9: // JSON
			fmt.Fprintf(&b, "    %q: {%q: %d, %q: %q},\n", word(), word(), r.IntN(100000), word(), hex.EncodeToString(rnd(20)))
		case 10, 11, 12: // code
			fmt.Fprintf(&b, "%sif err := %s.%s(ctx, %s); err != nil {\n%s\treturn fmt.Errorf(\"%s: %%w\", err)\n%s}\n",
				strings.Repeat("\t", 1+r.IntN(3)), word(), strings.ToUpper(word()[:1])+word(), word(),
				strings.Repeat("\t", 1+r.IntN(3)), word(), strings.Repeat("\t", 1+r.IntN(3)))
		case 13, 14: // minified JavaScript: one long line
			for range 20 + r.IntN(60) {
				switch r.IntN(12) {
				case 0:
					fmt.Fprintf(&b, `%s.prototype.%s=function(%s,%s){return this.%s(%s)||%s.%s},`, ident(), word(), ident(), ident(), word(), ident(), ident(), word())
				case 1:
					fmt.Fprintf(&b, `var %s=%s("%s"),%s=%s(%d);`, ident(), ident(), pkg(), ident(), ident(), r.IntN(9000))
				case 2:
					if r.IntN(8) == 0 { // an inline image
						fmt.Fprintf(&b, `%s.src="data:image/png;base64,%s";`, ident(), base64.StdEncoding.EncodeToString(rnd(100+r.IntN(1500))))
					} else {
						fmt.Fprintf(&b, `%s.className="%s-%s %s__%s--%s";`, ident(), word(), word(), word(), word(), word())
					}
				default:
					fmt.Fprintf(&b, `function %s(%s,%s){if(!%s)throw new Error("%s %s");%s.%s=%s[%d]}`, ident(), ident(), ident(), ident(), word(), word(), ident(), word(), ident(), r.IntN(100))
				}
			}
			b.WriteString("\n")
		case 15, 16: // package-lock.json
			p, v := pkg(), ver()
			fmt.Fprintf(&b, "    \"node_modules/%s\": {\n      \"version\": %q,\n      \"resolved\": \"https://registry.npmjs.org/%s/-/%s-%s.tgz\",\n      \"integrity\": \"sha512-%s\"\n    },\n",
				p, v, p, p, v, base64.StdEncoding.EncodeToString(rnd(64)))
		case 17: // go.sum, Cargo.lock, yarn.lock
			p, v := pkg(), ver()
			fmt.Fprintf(&b, "github.com/%s/%s v%s h1:%s\n", word(), p, v, base64.StdEncoding.EncodeToString(rnd(32)))
			fmt.Fprintf(&b, "[[package]]\nname = %q\nversion = %q\nchecksum = \"%s\"\n", p, v, hex.EncodeToString(rnd(32)))
			fmt.Fprintf(&b, "  resolved \"https://registry.yarnpkg.com/%s/-/%s-%s.tgz#%s\"\n", p, p, v, hex.EncodeToString(rnd(20)))
		case 18: // md5sum output: 32 hex digits, an Action Network key's shape
			fmt.Fprintf(&b, "%s  ./static/%s/%s.%s\n", hex.EncodeToString(rnd(16)), word(), word(), []string{"js", "css", "png"}[r.IntN(3)])
		default: // Python
			fmt.Fprintf(&b, "%sdef %s_%s(self, %s=None):\n%s    return self._%s.get(%q, %s)\n",
				strings.Repeat("    ", r.IntN(2)), word(), word(), word(), strings.Repeat("    ", r.IntN(2)), word(), word(), word())
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
	want := planted[keyCur] + planted[keyOld] + planted[keyLeak]
	throughput(b, data, func() {
		if found := scanBytes(b, m, data, defaultChunk); len(found) != want {
			b.Fatalf("%d findings, %d planted", len(found), want)
		}
	})
}

// throughput runs scan in b.Loop over data and reports, beside the wall
// clock's MB/s, MB/s-cpu: data over the CPU time the process used, which
// is the throughput of one core even when other work shares the machine.
func throughput(b *testing.B, data []byte, scan func()) {
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	cpu0, ok := cpuTime()
	b.ResetTimer()
	for b.Loop() {
		scan()
	}
	b.StopTimer()
	if cpu1, _ := cpuTime(); ok && cpu1 > cpu0 {
		b.ReportMetric(float64(len(data))*float64(b.N)/1e6/(cpu1-cpu0).Seconds(), "MB/s-cpu")
	}
}

// BenchmarkScanHashedThroughput is the hashed matcher on one core over
// the same text: three versions of one key known by hash alone (32 and 40
// bytes: the text's md5 sums, request ids and JSON ids have those lengths
// and are all HMAC'd), and a 32-byte version of a second key under its own
// salt, so that tokens of 32 bytes are HMAC'd twice.
func BenchmarkScanHashedThroughput(b *testing.B) { benchHashed(b, benchHashNeedles(b)) }

// BenchmarkScanHashedNoFingerprints is the same without the needles'
// fingerprints: every token of a hashed length is HMAC'd, once per salt.
func BenchmarkScanHashedNoFingerprints(b *testing.B) {
	benchHashed(b, withoutPrints(benchHashNeedles(b)))
}

func benchHashNeedles(b *testing.B) []Needle {
	return append(hashNeedles(b), Needle{Hash: mustHash(b, []byte("the salt of another key, 32 byte"), "0f1e2d3c4b5a69788796a5b4c3d2e1f0"), Label: "other"})
}

func benchHashed(b *testing.B, needles []Needle) {
	data, planted := corpus()
	m := mustCompile(b, needles)
	want := planted[keyCur] + planted[keyAN] + planted[keyLeak]
	throughput(b, data, func() {
		if found := scanBytes(b, m, data, defaultChunk); len(found) != want {
			b.Fatalf("%d findings, %d planted", len(found), want)
		}
	})
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
