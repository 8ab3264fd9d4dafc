package httpcheck

import (
	"context"
	"errors"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// ErrPastDeadline means a wait would end after ctx's deadline, so it was
// not started.
var ErrPastDeadline = errors.New("httpcheck: wait would pass the deadline")

// Limiter paces requests per key, keyed by the key's fingerprint, so every
// check of one key in a process shares one budget. It also holds a key
// back for as long as a provider's Retry-After asked. Safe for concurrent
// use.
type Limiter struct {
	limit rate.Limit
	burst int

	mu   sync.Mutex
	keys map[string]*keyState
}

type keyState struct {
	rl        *rate.Limiter
	notBefore time.Time
}

// NewLimiter allows r requests a second per key with bursts of burst
// (at least 1).
func NewLimiter(r rate.Limit, burst int) *Limiter {
	return &Limiter{limit: r, burst: max(burst, 1), keys: map[string]*keyState{}}
}

func (l *Limiter) state(fp string) *keyState {
	l.mu.Lock()
	defer l.mu.Unlock()
	s, ok := l.keys[fp]
	if !ok {
		s = &keyState{rl: rate.NewLimiter(l.limit, l.burst)}
		l.keys[fp] = s
	}
	return s
}

// Wait blocks until one request with the key of fingerprint fp may be
// sent. It returns ErrPastDeadline at once, without waiting, when the wait
// would end after ctx's deadline, and ctx's error when ctx ends first.
func (l *Limiter) Wait(ctx context.Context, fp string) error {
	s := l.state(fp)
	l.mu.Lock()
	nb := s.notBefore
	l.mu.Unlock()
	if d := time.Until(nb); d > 0 {
		if dl, ok := ctx.Deadline(); ok && dl.Before(nb) {
			return ErrPastDeadline
		}
		if err := sleep(ctx, d); err != nil {
			return err
		}
	}
	if err := s.rl.Wait(ctx); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return ErrPastDeadline
	}
	return nil
}

// Defer holds back every request with the key of fingerprint fp for d
// from now (a provider's Retry-After). A shorter Defer does not shorten a
// longer one.
func (l *Limiter) Defer(fp string, d time.Duration) {
	s := l.state(fp)
	until := time.Now().Add(d)
	l.mu.Lock()
	if until.After(s.notBefore) {
		s.notBefore = until
	}
	l.mu.Unlock()
}
