package rotation

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rekey-dev/rekey/config"
	"github.com/rekey-dev/rekey/integrations"
	"github.com/rekey-dev/rekey/integrations/file"
	"github.com/rekey-dev/rekey/internal/sshpool"
	"github.com/rekey-dev/rekey/internal/sshtest"
)

// BenchmarkRotateRemoteFiles rotates a key across 50 .env files on 5
// hosts reached over SSH (one real sshd listening on 127.0.0.1 to
// 127.0.0.5: five addresses, so five hosts to the pool, each its own
// connection), and across the same 50 files as local file integrations.
// It reports both wall times, their ratio, and the connections the run
// made to each host (one).
func BenchmarkRotateRemoteFiles(b *testing.B) {
	const hosts, perHost = 5, 10
	addrs := make([]string, hosts)
	for i := range addrs {
		addrs[i] = fmt.Sprintf("127.0.0.%d", i+1)
	}
	srv := sshtest.Start(b, sshtest.Options{Addrs: addrs})
	store := benchStore(b)
	dir := b.TempDir()
	content := "# site\nAPP_ENV=production\nACTION_NETWORK_API_KEY=%s\nMAIL_FROM=team@example.org\n"
	var paths []string
	for i := range hosts * perHost {
		p := filepath.Join(dir, fmt.Sprintf("site-%02d.env", i))
		if err := os.WriteFile(p, []byte(fmt.Sprintf(content, "none")), 0o640); err != nil {
			b.Fatal(err)
		}
		paths = append(paths, p)
	}
	build := func(pool *sshpool.Pool, remote bool) []Target {
		cfg := &config.Config{File: "bench.yaml"}
		h := integrations.Host{Config: cfg, Getenv: func(string) string { return "" }, Logger: slog.New(slog.DiscardHandler), SSH: pool}
		var targets []Target
		for i, p := range paths {
			settings := map[string]any{"path": p, "format": "dotenv", "field": "ACTION_NETWORK_API_KEY"}
			if remote {
				settings["host"] = srv.Target(i % hosts)
			}
			in := config.Integration{ID: fmt.Sprintf("env-%02d", i), Key: "an", Type: file.Type, Settings: settings}
			cfg.Integrations = append(cfg.Integrations, in)
			integ, err := file.New(h, in)
			if err != nil {
				b.Fatal(err)
			}
			targets = append(targets, Target{Config: in, Integration: integ})
		}
		return targets
	}
	rotate := func(targets []Target) time.Duration {
		e := &Engine{Store: store, Concurrency: config.DefaultConcurrency, Timeout: 30 * time.Second, Retries: 1}
		start := time.Now()
		out, err := e.Rotate(context.Background(), benchJob(targets), randomKey(b))
		d := time.Since(start)
		if err != nil || !out.AllCurrent() {
			b.Fatalf("rotate: %v %+v", err, out)
		}
		return d
	}
	var remote, local time.Duration
	maxConns, minConns := 0, 1<<30
	b.ResetTimer()
	for range b.N {
		pool := sshpool.New(sshpool.Options{KnownHosts: srv.KnownHosts, IdentityFile: srv.Identity, Home: b.TempDir(), Getenv: func(string) string { return "" }, Sessions: config.DefaultConcurrency})
		remote += rotate(build(pool, true))
		conns := pool.Connections()
		if len(conns) != hosts {
			b.Fatalf("connections to %d hosts, want %d: %v", len(conns), hosts, conns)
		}
		for _, n := range conns {
			maxConns, minConns = max(maxConns, n), min(minConns, n)
		}
		pool.Close()
		local += rotate(build(nil, false))
	}
	b.StopTimer()
	if n := strings.Count(srv.Log(), "Accepted publickey"); n != hosts*b.N {
		b.Fatalf("sshd logged %d logins for %d runs on %d hosts", n, b.N, hosts)
	}
	b.ReportMetric(float64((remote / time.Duration(b.N)).Milliseconds()), "ms-remote")
	b.ReportMetric(float64((local / time.Duration(b.N)).Milliseconds()), "ms-local")
	b.ReportMetric(float64(remote)/float64(local), "x-local")
	b.ReportMetric(float64(maxConns), "max-conns/host")
	b.ReportMetric(float64(minConns), "min-conns/host")
}
