package rotation

import (
	"bytes"
	"context"
	"fmt"
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
		want       LeakState
		checks     int
	}{
		{"dead at once", an, []providers.Validity{providers.Invalid}, time.Minute, LeakDead, 1},
		{"revoked while checking", an, []providers.Validity{providers.Valid, providers.Unknown, providers.Invalid}, 3 * time.Second, LeakDead, 3},
		{"no window: one check", an, []providers.Validity{providers.Valid}, 0, LeakWorks, 1},
		{"unknown with no window", an, []providers.Validity{providers.Unknown}, 0, LeakUnknown, 1},
		{"provider none is never asked", &config.Key{ID: "k", Provider: "none"}, []providers.Validity{providers.Valid}, time.Minute, LeakUnchecked, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var errs bytes.Buffer
			sc := &script{answers: tt.answers}
			job := Job{Key: *tt.key, Checker: sc}
			got := (&Engine{}).RecheckLeaked(context.Background(), job, secret.New(testLeaked), tt.recheckFor, func() {
				fmt.Fprintf(&errs, "rekey: the leaked key still works; checking again for up to %s\n", tt.recheckFor)
			})
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
	job := Job{Key: config.Key{ID: "k", Provider: "actionnetwork"}, Checker: &script{answers: []providers.Validity{providers.Valid}}}
	got := (&Engine{}).RecheckLeaked(ctx, job, secret.New(testLeaked), time.Hour, nil)
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
		want LeakState
	}{
		{an, providers.Valid, LeakWorks},
		{an, providers.Invalid, LeakDead},
		{an, providers.Unknown, LeakUnknown},
		{config.Key{Provider: "none"}, providers.Valid, LeakUnchecked},
	} {
		if got := Verdict(tt.key, providers.Result{Validity: tt.v}, time.Now()).State; got != tt.want {
			t.Errorf("verdict(%s, %s) = %s, want %s", tt.key.Provider, tt.v, got, tt.want)
		}
	}
}
