package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/rekey-dev/rekey/config"
	"github.com/rekey-dev/rekey/internal/leakcheck"
	"github.com/rekey-dev/rekey/providers"
	"github.com/rekey-dev/rekey/secret"
)

const testLeaked = "an_live_0123456789abcdef0123456789abcdef"

// script answers each check with the next result, then the last one
// again, and counts the checks.
type script struct {
	mu      sync.Mutex
	answers []providers.Validity
	n       int
}

func (s *script) Check(_ context.Context, k secret.Key) providers.Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.answers[min(s.n, len(s.answers)-1)]
	s.n++
	return providers.Result{Validity: v, Reason: "scripted " + string(v)}
}

func TestRecheckLeaked(t *testing.T) {
	an := &config.Key{ID: "k", Provider: "actionnetwork"}
	tests := []struct {
		name       string
		key        *config.Key
		answers    []providers.Validity
		recheckFor time.Duration
		want       string
		checks     int
	}{
		{"dead at once", an, []providers.Validity{providers.Invalid}, time.Minute, leakDead, 1},
		{"revoked while checking", an, []providers.Validity{providers.Valid, providers.Unknown, providers.Invalid}, 3 * time.Second, leakDead, 3},
		{"no window: one check", an, []providers.Validity{providers.Valid}, 0, leakWorks, 1},
		{"unknown with no window", an, []providers.Validity{providers.Unknown}, 0, leakUnknown, 1},
		{"provider none is never asked", &config.Key{ID: "k", Provider: "none"}, []providers.Validity{providers.Valid}, time.Minute, leakUnchecked, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var errs bytes.Buffer
			a := &app{s: Streams{Err: &errs}}
			sc := &script{answers: tt.answers}
			got := a.recheckLeaked(context.Background(), tt.key, sc, secret.New(testLeaked), tt.recheckFor)
			if got.State != tt.want || got.Checks != tt.checks || sc.n != tt.checks {
				t.Errorf("state %s after %d checks (checker asked %d times), want %s after %d", got.State, got.Checks, sc.n, tt.want, tt.checks)
			}
			leakcheck.Assert(t, "stderr", errs.Bytes(), testLeaked)
			leakcheck.Assert(t, "reason", []byte(got.Reason), testLeaked)
		})
	}
}

func TestRecheckLeakedStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	a := &app{s: Streams{Err: &bytes.Buffer{}}}
	got := a.recheckLeaked(ctx, &config.Key{ID: "k", Provider: "actionnetwork"}, &script{answers: []providers.Validity{providers.Valid}}, secret.New(testLeaked), time.Hour)
	if got.Checks != 1 {
		t.Errorf("checked %d times after the context ended, want 1", got.Checks)
	}
}

func TestRecheckInterval(t *testing.T) {
	for _, tt := range []struct{ window, want time.Duration }{
		{0, 100 * time.Millisecond},
		{500 * time.Millisecond, 100 * time.Millisecond},
		{5 * time.Second, 500 * time.Millisecond},
		{30 * time.Second, 2 * time.Second},
		{time.Hour, 2 * time.Second},
	} {
		if got := recheckInterval(tt.window); got != tt.want {
			t.Errorf("recheckInterval(%v) = %v, want %v", tt.window, got, tt.want)
		}
	}
}

func TestVerdict(t *testing.T) {
	an := config.Key{Provider: "actionnetwork"}
	for _, tt := range []struct {
		key  config.Key
		v    providers.Validity
		want string
	}{
		{an, providers.Valid, leakWorks},
		{an, providers.Invalid, leakDead},
		{an, providers.Unknown, leakUnknown},
		{config.Key{Provider: "none"}, providers.Valid, leakUnchecked},
	} {
		if got := verdict(tt.key, providers.Result{Validity: tt.v}, time.Now()).State; got != tt.want {
			t.Errorf("verdict(%s, %s) = %s, want %s", tt.key.Provider, tt.v, got, tt.want)
		}
	}
}

func TestSamePath(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "site", ".env")
	if err := os.MkdirAll(filepath.Dir(real), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(real, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "site"), filepath.Join(dir, "www")); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{filepath.Join(dir, "www", ".env"), filepath.Join(dir, "site", "..", "site", ".env")} {
		if samePath(p) != samePath(real) {
			t.Errorf("samePath(%s) = %s, want %s", p, samePath(p), samePath(real))
		}
	}
	if samePath(filepath.Join(dir, "other")) == samePath(real) {
		t.Error("two files compare equal")
	}
}
