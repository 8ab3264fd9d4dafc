package conformance

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/integrations"
	"github.com/rekey-dev/rekey/secret"
)

// The tests of the suite itself: it passes a correct in-memory
// integration, and fails each deliberately broken one in the check that
// should catch it.

// recorder is a T that records failures instead of failing the test.
type recorder struct {
	name     string
	mu       *sync.Mutex
	failures *[]string
	failed   bool
}

func newRecorder() *recorder { return &recorder{mu: &sync.Mutex{}, failures: &[]string{}} }

func (r *recorder) Helper()                   {}
func (r *recorder) Logf(string, ...any)       {}
func (r *recorder) Fatalf(f string, a ...any) { r.Errorf(f, a...); runtime.Goexit() }
func (r *recorder) Errorf(f string, a ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failed = true
	*r.failures = append(*r.failures, r.name+": "+fmt.Sprintf(f, a...))
}

// Run runs f as a subtest, on its own goroutine so Fatalf can end it.
func (r *recorder) Run(name string, f func(T)) bool {
	child := &recorder{name: r.name + "/" + name, mu: r.mu, failures: r.failures}
	done := make(chan struct{})
	go func() { defer close(done); f(child) }()
	<-done
	return !child.failed
}

func (r *recorder) all() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), *r.failures...)
}

// mem is an integration whose target is a variable. bug breaks it.
type mem struct {
	bug string

	mu       sync.Mutex
	held     secret.Key
	asked    secret.Key // the last key Apply was given
	writes   int
	fail     Failure
	hang     bool
	hangDone chan struct{}
	logs     bytes.Buffer
}

type memReader struct{ *mem }

var (
	_ integrations.Integration = (*mem)(nil)
	_ integrations.Reader      = memReader{}
)

func (m *mem) ID() string { return "mem" }

func (m *mem) Apply(ctx context.Context, req integrations.ApplyRequest) (integrations.ApplyResult, error) {
	if m.bug != "ignores context" && ctx.Err() != nil {
		return integrations.ApplyResult{}, fmt.Errorf("mem: apply: %w", ctx.Err())
	}
	if err := m.wait(ctx); err != nil {
		return integrations.ApplyResult{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.asked = req.Key
	if m.bug == "logs the key" {
		fmt.Fprintf(&m.logs, "applying %s\n", hex.EncodeToString([]byte(req.Key.Reveal())))
	}
	switch f := m.fail; {
	case f == 0:
	case m.bug == "puts the key in its error":
		m.fail = 0
		return integrations.ApplyResult{}, fmt.Errorf("mem: target refused %q: %w", req.Key.Reveal(), failure.ErrTransient)
	case m.bug == "misclassifies" && f == Transient:
		m.fail = 0
		return integrations.ApplyResult{}, errors.New("mem: target busy")
	case f == Transient:
		m.fail = 0
		return integrations.ApplyResult{}, fmt.Errorf("mem: target busy: %w", failure.ErrTransient)
	default:
		m.fail = 0
		return integrations.ApplyResult{}, fmt.Errorf("mem: target refused: %w", failure.ErrUnauthorized)
	}
	if m.held.Equal(req.Key) && m.bug != "writes every time" {
		return integrations.ApplyResult{Changed: false, At: time.Now()}, nil
	}
	if m.bug != "says it wrote but did not" {
		m.held = req.Key
	}
	m.writes++
	return integrations.ApplyResult{Changed: true, At: time.Now()}, nil
}

// wait hangs when told to: until ctx ends, or, with the "ignores
// context" bug, until the test is over.
func (m *mem) wait(ctx context.Context) error {
	m.mu.Lock()
	hang := m.hang
	m.hang = false
	m.mu.Unlock()
	if !hang {
		return nil
	}
	if m.bug == "ignores context" {
		<-m.hangDone
		return errors.New("mem: gave up")
	}
	<-ctx.Done()
	return fmt.Errorf("mem: %w", ctx.Err())
}

func (r memReader) Read(ctx context.Context) (secret.Key, error) {
	if err := r.wait(ctx); err != nil {
		return secret.Key{}, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.bug == "reads what it was asked to write" && !r.asked.IsZero() {
		return r.asked, nil
	}
	if r.held.IsZero() {
		return secret.Key{}, fmt.Errorf("mem: holds nothing: %w", failure.ErrNotFound)
	}
	return r.held, nil
}

func (m *mem) Writes() int             { m.mu.Lock(); defer m.mu.Unlock(); return m.writes }
func (m *mem) Holds(T) secret.Key      { m.mu.Lock(); defer m.mu.Unlock(); return m.held }
func (m *mem) Logs() []byte            { m.mu.Lock(); defer m.mu.Unlock(); return bytes.Clone(m.logs.Bytes()) }
func (m *mem) FailNext(f Failure) bool { m.mu.Lock(); defer m.mu.Unlock(); m.fail = f; return true }
func (m *mem) HangNext() bool          { m.mu.Lock(); defer m.mu.Unlock(); m.hang = true; return true }
func (m *mem) SetHolds(_ T, k secret.Key) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.held = k
	return true
}

func memTarget(t *testing.T, bug string) Target {
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	return TargetFunc(func(_ T, initial secret.Key) (integrations.Integration, Probe) {
		m := &mem{bug: bug, held: initial, hangDone: done}
		return memReader{m}, m
	})
}

func TestSuitePassesACorrectIntegration(t *testing.T) {
	Run(t, memTarget(t, ""))

	r := newRecorder()
	Run(r, memTarget(t, ""))
	if f := r.all(); len(f) > 0 {
		t.Fatalf("the suite failed a correct integration:\n%s", strings.Join(f, "\n"))
	}
}

func TestSuiteFailsBrokenIntegrations(t *testing.T) {
	defer func(d time.Duration) { promptly = d }(promptly)
	promptly = 300 * time.Millisecond // the broken one never returns; don't wait long for it

	cases := []struct {
		bug  string
		want []string // substrings of failures, each in some failure
	}{
		{"writes every time", []string{"/idempotent: Apply 2 of the key the target holds: Changed true"}},
		{"says it wrote but did not", []string{"/apply: after Apply the target holds <empty key>"}},
		{"puts the key in its error", []string{"/classify: errors, states and logs holds key"}},
		{"logs the key", []string{"/apply: errors, states and logs holds key", "as hex"}},
		{"misclassifies", []string{"/classify: a transient failure gave mem: target busy, which the engine would not retry"}},
		{"ignores context", []string{"/cancel: Apply with a cancelled context: <nil>", "/cancel: Apply against a hung target did not return"}},
		{"reads what it was asked to write", []string{"/stale: someone put the superseded version back: Observe = current"}},
	}
	for _, c := range cases {
		t.Run(c.bug, func(t *testing.T) {
			r := newRecorder()
			Run(r, memTarget(t, c.bug))
			failures := r.all()
			all := strings.Join(failures, "\n")
			for _, w := range c.want {
				if !strings.Contains(all, w) {
					t.Errorf("no failure says %q; failures:\n%s", w, all)
				}
			}
		})
	}
}
