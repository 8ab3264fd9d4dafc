package e2e

// The whole `rekey rotate` process across N http integrations, timed from
// outside it: a rekey binary built from this checkout, a real Vault dev
// server, and one test server answering every request after 50 ms. It
// runs only with -bench; scripts/bench runs it and prints a table.
//
//	go test ./internal/e2e -run '^$' -bench RotateProcess -benchtime 1x

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rekey-dev/rekey/internal/vaulttest"
	"github.com/rekey-dev/rekey/secret"
	"github.com/rekey-dev/rekey/vaultstore"
)

const (
	processN           = 1000
	processConcurrency = 64
	processLatency     = 50 * time.Millisecond // each answer; apply then verify: 100 ms
)

// buildRekey builds cmd/rekey into dir and returns the binary's path;
// $REKEY_BENCH_BIN names another binary to measure instead (an earlier
// build, to compare: one that marks no steps gets no breakdown).
func buildRekey(b *testing.B, dir string) string {
	b.Helper()
	if bin := os.Getenv("REKEY_BENCH_BIN"); bin != "" {
		return bin
	}
	bin := filepath.Join(dir, "rekey")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/rekey-dev/rekey/cmd/rekey")
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// phases are the steps rekey marks in $REKEY_TRACE, in order, with what
// each span is called in the breakdown (the span from the step before).
var phases = []struct{ step, name string }{
	{"config", "start-up and configuration"},
	{"vault", "Vault connection"},
	{"preflight", "preflight"},
	{"provider check", "provider check"},
	{"vault write", "Vault write"},
	{"fan-out", "fan-out"},
	{"final record", "final record"},
}

// BenchmarkRotateProcess runs `rekey rotate` across 1,000 http
// integrations (50 ms per request, apply and verify, concurrency 64) and
// reports the wall time from starting the process to its exit against
// the ideal ceil(N/64) × 100 ms (target ≤ 1.10), and where the time went.
func BenchmarkRotateProcess(b *testing.B) {
	dir := b.TempDir()
	bin := buildRekey(b, dir)
	env := vaulttest.New(b)
	store := vaultstore.New(env.Client, env.Mount, "rekey")
	var requests atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		time.Sleep(processLatency)
		w.WriteHeader(http.StatusOK)
	}))
	b.Cleanup(srv.Close)

	var cfg strings.Builder
	fmt.Fprintf(&cfg, "vault: {mount: %s}\nrotation: {concurrency: %d, timeout: 30s}\n", env.Mount, processConcurrency)
	cfg.WriteString("keys:\n  - {id: an, provider: none, vault_path: an/main}\nintegrations:\n")
	for i := range processN {
		id := fmt.Sprintf("web-%04d", i)
		fmt.Fprintf(&cfg, "  - {id: %s, key: an, type: http, apply: {method: POST, url: %q, body: '{\"api_key\": \"{{key}}\"}'}, verify: {url: %q}}\n",
			id, srv.URL+"/settings/"+id, srv.URL+"/status/"+id)
	}
	cfgPath := filepath.Join(dir, "rekey.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg.String()), 0o600); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	ideal := time.Duration(math.Ceil(float64(processN)/processConcurrency)) * 2 * processLatency
	spans := map[string]time.Duration{}
	var wall, exit time.Duration
	var reqs int64
	for i := range b.N {
		cur, err := store.ReadKey(ctx, "an/main")
		cas := cur.Version
		if err != nil {
			cas = 0
		}
		if _, err := store.WriteKey(ctx, "an/main", secret.New(fmt.Sprintf("an-old-%032d", i)), cas, nil); err != nil {
			b.Fatal(err)
		}
		keyFile, trace := filepath.Join(dir, "new-key"), filepath.Join(dir, fmt.Sprintf("trace-%d", i))
		if err := os.WriteFile(keyFile, []byte(fmt.Sprintf("an-new-%032d\n", i)), 0o600); err != nil {
			b.Fatal(err)
		}
		cmd := exec.Command(bin, "rotate", "an", "--yes", "--new-key-file", keyFile, "--config", cfgPath)
		cmd.Env = append(os.Environ(), "VAULT_ADDR="+env.Addr, "VAULT_TOKEN="+env.Token, "REKEY_TRACE="+trace)
		requests.Store(0)
		start := time.Now()
		out, err := cmd.CombinedOutput()
		took := time.Since(start)
		if err != nil {
			b.Fatalf("rekey rotate: %v\n%s", err, tail(out))
		}
		n := requests.Load()
		if n < 2*processN {
			b.Fatalf("%d requests, want at least %d (apply and verify each)", n, 2*processN)
		}
		reqs += n
		wall += took
		marks := readTrace(b, trace)
		if len(marks) == 0 && os.Getenv("REKEY_BENCH_BIN") != "" {
			continue // an earlier build: the wall time only
		}
		prev := start
		for _, p := range phases {
			at, ok := marks[p.step]
			if !ok {
				b.Fatalf("rekey did not mark %q: %v", p.step, marks)
			}
			spans[p.name] += at.Sub(prev)
			prev = at
		}
		exit += start.Add(took).Sub(prev)
	}
	b.StopTimer()
	n := time.Duration(b.N)
	b.ReportMetric(float64((wall / n).Milliseconds()), "ms-wall")
	b.ReportMetric(float64(ideal.Milliseconds()), "ms-ideal")
	b.ReportMetric(float64(wall/n)/float64(ideal), "x-ideal")
	for _, p := range phases {
		b.ReportMetric(float64((spans[p.name]/n).Microseconds())/1000, "ms-"+strings.ReplaceAll(p.name, " ", "-"))
	}
	b.ReportMetric(float64((exit/n).Microseconds())/1000, "ms-release-and-exit")
	// Requests per run: apply and verify of each integration, and what the
	// preflight asks of each (an http integration's preflight runs its
	// read and verify).
	b.ReportMetric(float64(reqs)/float64(b.N), "requests")
}

// readTrace reads the steps rekey marked in $REKEY_TRACE.
func readTrace(b *testing.B, path string) map[string]time.Time {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	marks := map[string]time.Time{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m struct {
			Step string `json:"step"`
			At   int64  `json:"at_ns"`
		}
		if err := json.Unmarshal(sc.Bytes(), &m); err == nil {
			if _, seen := marks[m.Step]; !seen {
				marks[m.Step] = time.Unix(0, m.At)
			}
		}
	}
	return marks
}

func tail(b []byte) string {
	if len(b) > 2000 {
		return string(b[len(b)-2000:])
	}
	return string(b)
}
