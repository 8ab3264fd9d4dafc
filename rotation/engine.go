// Package rotation is rekey's engine: it checks a new key, takes the key's
// lock, stores the key in Vault with check-and-set, applies it to every
// integration at once, verifies each, journals every step and reports.
// It does no I/O of its own beyond the interfaces it is given.
package rotation

import (
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"time"

	"github.com/rekey-dev/rekey/config"
	"github.com/rekey-dev/rekey/integrations"
	"github.com/rekey-dev/rekey/notifiers"
	"github.com/rekey-dev/rekey/providers"
	"github.com/rekey-dev/rekey/records"
	"github.com/rekey-dev/rekey/state"
	"github.com/rekey-dev/rekey/store"
)

// Target is one integration of the key being rotated.
type Target struct {
	Config      config.Integration
	Integration integrations.Integration
}

// Job is one key and everything needed to rotate it.
type Job struct {
	Key     config.Key
	Targets []Target
	Checker providers.Checker
	Reason  string // scheduled, manual or leak
	// RotationID, if set, is used for the new rotation (the CLI makes it
	// early so the first Slack message and the record share it).
	RotationID string
	// Leak marks the replaced version compromised once the new one is stored.
	Leak bool
	// Timeline holds incident marks made before the engine ran.
	Timeline []records.Mark
	// Identity, when set (TakeIdentity, in the preflight), is the
	// wrong-group guard: Check refuses a key of another group.
	Identity *IdentityCheck
}

// Engine runs rotations. Zero values of the tuning fields take defaults.
type Engine struct {
	Store    store.Store
	Notifier notifiers.Notifier // may be nil
	Logger   *slog.Logger       // may be nil
	// Progress, if set, is told of every state an integration enters.
	Progress func(integrationID string, s state.State, detail string)
	// Trace, if set, is told as a run passes each Step (for measuring
	// where the time goes).
	Trace func(Step)
	// Redact, if set, is applied to every reason and error the engine
	// records, reports or notifies (the second wall: secret.Redactor).
	Redact func(string) string
	// Handoffs, if set, makes, opens and follows hand-off codes for manual
	// integrations with a handoff (handoff.go).
	Handoffs *Handoffs

	Concurrency int
	Timeout     time.Duration // per attempt
	Retries     int           // on transient failures
	Backoff     time.Duration // first retry's wait; doubles, with jitter
	MaxBackoff  time.Duration
	LockTTL     time.Duration
	FlushEvery  time.Duration // how often the journal is written while applying
	// MaxRetryWait is the longest wait a target may ask for (Retry-After,
	// a rate limit's reset) that is honoured; a longer one fails the
	// integration at once, with the wait in its reason, for `rekey
	// resume` to pick up later.
	MaxRetryWait time.Duration
	// CheckTimeout bounds the provider check of a new key, waits for its
	// rate limit included. A check that cannot finish in time says unknown.
	CheckTimeout time.Duration

	// Operator is who runs the rotation (user, host, pid, command).
	Operator records.Lock
	// AllowUnverified stores a key the provider could not check (unknown).
	AllowUnverified bool

	Now func() time.Time
}

// Step is a point a rotation passes, as Engine.Trace is told.
type Step string

// The steps of a rotation, in order.
const (
	StepChecked   Step = "provider check" // the new key was checked, nothing written yet
	StepStored    Step = "vault write"    // the new key is stored and recorded
	StepFannedOut Step = "fan-out"        // every integration reached an outcome
	StepRecorded  Step = "final record"   // the outcome is recorded
)

func (e *Engine) trace(s Step) {
	if e.Trace != nil {
		e.Trace(s)
	}
}

func (e *Engine) now() time.Time {
	if e.Now != nil {
		return e.Now().UTC()
	}
	return time.Now().UTC()
}

func (e *Engine) redact(s string) string {
	if e.Redact == nil {
		return s
	}
	return e.Redact(s)
}

func (e *Engine) logger() *slog.Logger {
	if e.Logger != nil {
		return e.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// SetDefaults fills the tuning fields left zero. Every run does so
// itself; a caller that shares one Engine between goroutines calls it
// first, so that no run writes a field another is reading.
func (e *Engine) SetDefaults() { e.defaults() }

func (e *Engine) defaults() {
	if e.Concurrency <= 0 {
		e.Concurrency = config.DefaultConcurrency
	}
	if e.Timeout <= 0 {
		e.Timeout = config.DefaultTimeout.D()
	}
	if e.Backoff <= 0 {
		e.Backoff = 500 * time.Millisecond
	}
	if e.MaxBackoff <= 0 {
		e.MaxBackoff = 30 * time.Second
	}
	if e.LockTTL <= 0 {
		e.LockTTL = 2 * time.Minute
	}
	if e.FlushEvery <= 0 {
		e.FlushEvery = 200 * time.Millisecond
	}
	if e.MaxRetryWait <= 0 {
		e.MaxRetryWait = 5 * time.Minute
	}
}

func (e *Engine) checkTimeout() time.Duration {
	if e.CheckTimeout > 0 {
		return e.CheckTimeout
	}
	return time.Minute
}

// NewID returns a rotation id: UTC time and a random suffix.
func NewID(now time.Time) string {
	b := make([]byte, 3)
	rand.Read(b)
	return now.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b)
}

// Result is one integration's outcome.
type Result struct {
	ID     string      `json:"id"`
	Type   string      `json:"type"`
	State  state.State `json:"state"`
	Reason string      `json:"reason,omitempty"`
	Owner  string      `json:"owner,omitempty"`
	// Proof is how the state was proven (exact, timestamp, probe,
	// person, none); empty when it was not observed (a failed write).
	Proof state.Proof `json:"proof,omitempty"`
}

// Outcome is what a rotation, resume or confirm ended with.
type Outcome struct {
	Rotation *records.Rotation
	Results  []Result
	// RecordErr is set when the outcome could not be written to Vault
	// (unreachable, sealed): the integrations are as Results say, but
	// rekey's records lag behind until `rekey resume` runs again.
	RecordErr error
}

// AllCurrent reports whether every integration is current and that is on
// record in Vault.
func (o *Outcome) AllCurrent() bool {
	if o.RecordErr != nil {
		return false
	}
	for _, r := range o.Results {
		if r.State != state.Current {
			return false
		}
	}
	return true
}
