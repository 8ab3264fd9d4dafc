package rotation

// Benchmarks of the engine against a real Vault (internal/vaulttest).
// They run only with -bench; scripts/bench runs them and prints a table
// with the ratios to the targets in docs/PERFORMANCE.md.
//
//	go test ./rotation -run '^$' -bench 'RotateHTTP' -benchtime 1x
//
// Per-integration latency: an `http` integration with `apply` and `verify`
// makes two round trips, one after the other (POST the key, then GET the
// probe), and the test server answers each after 50 ms, so one
// integration takes 100 ms. The ideal wall time of a rotation is
// ceil(N / concurrency) × 100 ms; the Vault reads and writes before and
// after the fan out are part of the measured wall time, not the ideal.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rekey-dev/rekey/config"
	"github.com/rekey-dev/rekey/integrations"
	"github.com/rekey-dev/rekey/integrations/file"
	httpint "github.com/rekey-dev/rekey/integrations/http"
	"github.com/rekey-dev/rekey/internal/vaulttest"
	"github.com/rekey-dev/rekey/secret"
	"github.com/rekey-dev/rekey/state"
	"github.com/rekey-dev/rekey/vaultstore"
)

const (
	benchLatency     = 50 * time.Millisecond // each answer of the test server
	benchRoundTrips  = 2                     // apply, then verify
	benchConcurrency = 64
)

// perIntegration is the ideal time one integration takes.
const perIntegration = benchRoundTrips * benchLatency

func randomKey(tb testing.TB) secret.Key {
	b := make([]byte, 16)
	rand.Read(b)
	return secret.New("bench-" + hex.EncodeToString(b))
}

// slowServer answers every request after benchLatency: 200 to a POST of
// the key (apply) and to a GET of the status probe (verify). It counts
// the applies it saw.
type slowServer struct {
	*httptest.Server
	applies atomic.Int64
}

func newSlowServer(tb testing.TB) *slowServer {
	s := &slowServer{}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(benchLatency)
		switch {
		case r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/settings/"):
			s.applies.Add(1)
			w.WriteHeader(http.StatusOK)
		case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/status/"):
			w.WriteHeader(http.StatusOK)
		default:
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	// No limit on connections (net/http has none by default); keep-alives
	// on so the client reuses them.
	s.Config.SetKeepAlivesEnabled(true)
	s.Start()
	tb.Cleanup(s.Close)
	return s
}

// benchClient is what a host gives HTTP integrations: one that keeps
// enough idle connections to the one test server that the client is not
// the bottleneck (the default keeps 2 per host).
func benchClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = 1024
	tr.MaxIdleConnsPerHost = 1024
	tr.DialContext = (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// httpTargets builds n `http` integrations against srv through the real
// integrations/http factory.
func httpTargets(tb testing.TB, srv *slowServer, n int, client *http.Client) []Target {
	cfg := &config.Config{File: "bench.yaml"}
	host := integrations.Host{Config: cfg, HTTPClient: client, Getenv: func(string) string { return "" }}
	targets := make([]Target, n)
	for i := range n {
		id := fmt.Sprintf("web-%04d", i)
		in := config.Integration{ID: id, Key: "an", Type: httpint.Type, Settings: map[string]any{
			"apply":  map[string]any{"method": "POST", "url": srv.URL + "/settings/" + id, "body": `{"api_key": "{{key}}"}`},
			"verify": map[string]any{"url": srv.URL + "/status/" + id},
		}}
		cfg.Integrations = append(cfg.Integrations, in)
		integ, err := httpint.New(host, in)
		if err != nil {
			tb.Fatal(err)
		}
		targets[i] = Target{Config: in, Integration: integ}
	}
	return targets
}

func benchStore(tb testing.TB) *vaultstore.Store {
	tb.Helper()
	env := vaulttest.New(tb)
	s := vaultstore.New(env.Client, env.Mount, "rekey")
	if _, err := s.WriteKey(context.Background(), "an/main", randomKey(tb), 0, nil); err != nil {
		tb.Fatal(err)
	}
	return s
}

func benchJob(targets []Target) Job {
	return Job{Key: config.Key{ID: "an", VaultPath: "an/main", Provider: "none"}, Targets: targets, Checker: validChecker{}, Reason: "scheduled"}
}

// heapPeak samples the heap in use until stop is called and returns the
// highest value seen.
func heapPeak() (stop func() uint64) {
	const name = "/memory/classes/heap/objects:bytes"
	sample := []metrics.Sample{{Name: name}}
	var peak atomic.Uint64
	read := func() {
		metrics.Read(sample)
		if v := sample[0].Value.Uint64(); v > peak.Load() {
			peak.Store(v)
		}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			read()
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	})
	return func() uint64 {
		close(done)
		wg.Wait()
		read()
		return peak.Load()
	}
}

// vmHWM is the process's peak resident set (VmHWM) in bytes, or 0.
func vmHWM() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseUint(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// BenchmarkRotateHTTP rotates a key across N http integrations whose
// server answers after 50 ms, 64 at once. It reports the wall time, the
// ideal ceil(N/64) × 100 ms, their ratio (target ≤ 1.15 at N = 1,000),
// when the last integration had the key (apply done: the end of the
// outage), the time doing the same requests one after another would take
// (N × 100 ms), and the peak heap during the rotation.
func BenchmarkRotateHTTP(b *testing.B) {
	store := benchStore(b)
	srv := newSlowServer(b)
	client := benchClient()
	for _, n := range []int{10, 200, 1000} {
		b.Run(fmt.Sprintf("N=%d", n), func(b *testing.B) {
			targets := httpTargets(b, srv, n, client)
			ideal := time.Duration(math.Ceil(float64(n)/benchConcurrency)) * perIntegration
			var wall, applied time.Duration
			var peak uint64
			b.ResetTimer()
			for range b.N {
				key := randomKey(b)
				var lastApplied atomic.Int64
				e := &Engine{Store: store, Concurrency: benchConcurrency, Timeout: 30 * time.Second, Retries: 1}
				start := time.Now()
				e.Progress = func(id string, st state.State, detail string) {
					if st == state.Verifying {
						lastApplied.Store(int64(time.Since(start)))
					}
				}
				stop := heapPeak()
				out, err := e.Rotate(context.Background(), benchJob(targets), key)
				wall += time.Since(start)
				peak = max(peak, stop())
				applied += time.Duration(lastApplied.Load())
				if err != nil || !out.AllCurrent() {
					b.Fatalf("rotate: %v %+v", err, out)
				}
			}
			b.StopTimer()
			avg := wall / time.Duration(b.N)
			b.ReportMetric(float64(avg.Milliseconds()), "ms-wall")
			b.ReportMetric(float64(ideal.Milliseconds()), "ms-ideal")
			b.ReportMetric(float64(avg)/float64(ideal), "x-ideal")
			b.ReportMetric(float64((applied / time.Duration(b.N)).Milliseconds()), "ms-applied")
			b.ReportMetric(float64((time.Duration(n) * perIntegration).Milliseconds()), "ms-sequential")
			b.ReportMetric(float64(peak)/(1<<20), "MB-heap-peak")
			b.ReportMetric(float64(vmHWM())/(1<<20), "MB-VmHWM")
		})
	}
}

// BenchmarkRotateHTTPLarge is BenchmarkRotateHTTP for one key held by
// 10,000 http integrations, 256 at once: the wall time against the ideal
// ceil(N/256) × 100 ms (target ≤ 1.15), and the largest entry written to
// Vault (target < 256 KiB, whatever the number of integrations).
func BenchmarkRotateHTTPLarge(b *testing.B) {
	const n, concurrency = 10000, 256
	store := benchStore(b)
	srv := newSlowServer(b)
	targets := httpTargets(b, srv, n, benchClient())
	ideal := time.Duration(math.Ceil(float64(n)/concurrency)) * perIntegration
	var wall time.Duration
	var peak uint64
	b.ResetTimer()
	for range b.N {
		e := &Engine{Store: store, Concurrency: concurrency, Timeout: 30 * time.Second, Retries: 1}
		stop := heapPeak()
		start := time.Now()
		out, err := e.Rotate(context.Background(), benchJob(targets), randomKey(b))
		wall += time.Since(start)
		peak = max(peak, stop())
		if err != nil || !out.AllCurrent() {
			b.Fatalf("rotate: %v %+v", err, out)
		}
	}
	b.StopTimer()
	avg := wall / time.Duration(b.N)
	b.ReportMetric(float64(avg.Milliseconds()), "ms-wall")
	b.ReportMetric(float64(ideal.Milliseconds()), "ms-ideal")
	b.ReportMetric(float64(avg)/float64(ideal), "x-ideal")
	b.ReportMetric(float64(store.Largest())/1024, "KiB-largest-entry")
	b.ReportMetric(float64(peak)/(1<<20), "MB-heap-peak")
}

// BenchmarkRotateHTTPSequential is BenchmarkRotateHTTP with concurrency
// 1: the same requests one after another.
func BenchmarkRotateHTTPSequential(b *testing.B) {
	store := benchStore(b)
	srv := newSlowServer(b)
	client := benchClient()
	for _, n := range []int{10, 200} {
		b.Run(fmt.Sprintf("N=%d", n), func(b *testing.B) {
			targets := httpTargets(b, srv, n, client)
			var wall time.Duration
			for range b.N {
				e := &Engine{Store: store, Concurrency: 1, Timeout: 30 * time.Second}
				start := time.Now()
				out, err := e.Rotate(context.Background(), benchJob(targets), randomKey(b))
				wall += time.Since(start)
				if err != nil || !out.AllCurrent() {
					b.Fatalf("rotate: %v %+v", err, out)
				}
			}
			avg := wall / time.Duration(b.N)
			b.ReportMetric(float64(avg.Milliseconds()), "ms-wall")
			b.ReportMetric(float64((time.Duration(n) * perIntegration).Milliseconds()), "ms-ideal")
			b.ReportMetric(float64(avg)/float64(time.Duration(n)*perIntegration), "x-ideal")
		})
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkEngineOverhead rotates across N in-memory integrations that
// answer at once (read back included), so the CPU time the process spends
// (getrusage, user + system) is the engine's: planning, the goroutine and
// journal entries per integration, and the Vault client's share of
// writing the record. Target: under 1 ms per integration.
func BenchmarkEngineOverhead(b *testing.B) {
	store := benchStore(b)
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("N=%d", n), func(b *testing.B) {
			targets := make([]Target, n)
			for i := range targets {
				m := &memTarget{id: fmt.Sprintf("mem-%05d", i)}
				targets[i] = Target{Config: config.Integration{ID: m.id, Key: "an", Type: "mem"}, Integration: m}
			}
			var cpu, wall time.Duration
			var peak uint64
			for range b.N {
				e := &Engine{Store: store, Concurrency: benchConcurrency}
				stop := heapPeak()
				start, c0 := time.Now(), cpuTime()
				out, err := e.Rotate(context.Background(), benchJob(targets), randomKey(b))
				cpu += cpuTime() - c0
				wall += time.Since(start)
				peak = max(peak, stop())
				if err != nil || !out.AllCurrent() {
					b.Fatalf("rotate: %v", err)
				}
			}
			per := cpu / time.Duration(b.N*n)
			b.ReportMetric(float64(per.Microseconds()), "µs-cpu/integration")
			b.ReportMetric(float64((wall / time.Duration(b.N)).Milliseconds()), "ms-wall")
			b.ReportMetric(float64(peak)/(1<<20), "MB-heap-peak")
		})
	}
}

// BenchmarkAuditFiles audits 10,000 dotenv `file` integrations on tmp
// files (Engine.Audit, what `rekey audit` runs): each is read back and
// its fingerprint compared.
func BenchmarkAuditFiles(b *testing.B) {
	const n = 10000
	store := benchStore(b)
	ctx := context.Background()
	cur, err := store.ReadKey(ctx, "an/main")
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	cfg := &config.Config{File: "bench.yaml"}
	host := integrations.Host{Config: cfg, Getenv: func(string) string { return "" }}
	targets := make([]Target, n)
	content := "# site\nAPP_ENV=production\nACTION_NETWORK_API_KEY=" + cur.Key.Reveal() + "\nMAIL_FROM=team@example.org\n"
	for i := range n {
		id := fmt.Sprintf("env-%05d", i)
		p := filepath.Join(dir, id+".env")
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			b.Fatal(err)
		}
		in := config.Integration{ID: id, Key: "an", Type: file.Type, Settings: map[string]any{"path": p, "format": "dotenv", "field": "ACTION_NETWORK_API_KEY"}}
		integ, err := file.New(host, in)
		if err != nil {
			b.Fatal(err)
		}
		targets[i] = Target{Config: in, Integration: integ}
	}
	b.ResetTimer()
	var wall time.Duration
	for range b.N {
		e := &Engine{Store: store, Concurrency: config.DefaultConcurrency}
		start := time.Now()
		ka := e.Audit(ctx, benchJob(targets))
		wall += time.Since(start)
		if !ka.AllCurrent() {
			b.Fatalf("audit: %s %+v", ka.Error, ka.Integrations[0])
		}
	}
	avg := wall / time.Duration(b.N)
	b.ReportMetric(float64(avg.Milliseconds()), "ms-wall")
	b.ReportMetric(float64(avg.Microseconds())/n, "µs/integration")
}
