// Package httpcheck runs one provider check over HTTP, the part that the
// actionnetwork and http providers share: it paces requests per key, sends
// the key in one header, follows no redirect (a redirect could carry the
// header to another host), honours Retry-After on 429 within ctx a bounded
// number of times, and never reads a response body into a result or a log
// line (error bodies can echo the key).
package httpcheck

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/internal/neterr"
	"github.com/rekey-dev/rekey/providers"
	"github.com/rekey-dev/rekey/secret"
)

const (
	// DefaultMaxRetries is how many times a 429 is retried.
	DefaultMaxRetries = 3
	// DefaultRetryAfter is the wait after a 429 that carries no Retry-After.
	DefaultRetryAfter = time.Second
	// MaxWait is the longest Retry-After a check waits out, even when its
	// context has no deadline: a provider that asks for longer is
	// answering "unknown" for now, and a person waiting at a terminal
	// should hear so, not wait ten minutes.
	MaxWait = time.Minute
	// DefaultTimeout bounds one request when the caller gives no client.
	DefaultTimeout = 30 * time.Second
	// UserAgent is sent with every check.
	UserAgent = "rekey (+https://github.com/rekey-dev/rekey)"

	maxDrain = 64 << 10
)

// Client returns a copy of c (a default one when c is nil) that never
// follows a redirect: the caller gets the 3xx response itself.
func Client(c *http.Client) *http.Client {
	var cp http.Client
	if c != nil {
		cp = *c
	} else {
		cp.Timeout = DefaultTimeout
	}
	cp.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &cp
}

// Logger returns l, or a logger that discards everything when l is nil.
func Logger(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}

// Retries turns an option into a retry count: 0 means DefaultMaxRetries,
// a negative number means none.
func Retries(n int) int {
	switch {
	case n == 0:
		return DefaultMaxRetries
	case n < 0:
		return 0
	}
	return n
}

// Probe is one kind of check: a GET to URL with the key in Header.
type Probe struct {
	Client     *http.Client // from Client: redirects are not followed
	Logger     *slog.Logger // never nil
	Limiter    *Limiter     // nil: requests are not paced
	MaxRetries int          // retries after a 429
	Provider   string       // names the provider in log lines: "actionnetwork"
	Who        string       // names the far side in reasons: "Action Network"
	URL        string
	Header     string

	// Judge turns a response other than 429 into a result. It may read at
	// most what it needs of the body to parse a success; it never puts any
	// of the body in Reason. Run drains and closes the body afterwards.
	Judge func(resp *http.Response) providers.Result
}

// Run checks key, retrying only a 429, and only within ctx.
func (p *Probe) Run(ctx context.Context, key secret.Key) providers.Result {
	fp := key.Fingerprint()
	log := p.Logger.With("provider", p.Provider, "key", fp)
	finish := func(r providers.Result) providers.Result {
		log.Debug("provider check", "validity", string(r.Validity), "reason", r.Reason)
		return r
	}
	for attempt := 1; ; attempt++ {
		if p.Limiter != nil {
			if err := p.Limiter.Wait(ctx, fp); err != nil {
				return finish(unknown("not sent: " + waitReason(ctx, err)))
			}
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.URL, nil)
		if err != nil {
			return finish(unknown(fmt.Sprintf("cannot build a request to %s", p.Who)))
		}
		req.Header.Set(p.Header, key.Reveal())
		req.Header.Set("Accept", "application/json")
		req.Header.Set("User-Agent", UserAgent)
		resp, err := p.Client.Do(req)
		if err != nil {
			return finish(unknown(NetworkReason(ctx, err)))
		}
		log.Debug("provider answered", "status", resp.StatusCode, "attempt", attempt)
		if resp.StatusCode != http.StatusTooManyRequests {
			r := p.Judge(resp)
			discard(resp)
			return finish(r)
		}

		discard(resp)
		wait := failure.ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
		if wait <= 0 {
			wait = DefaultRetryAfter
		}
		if p.Limiter != nil {
			p.Limiter.Defer(fp, wait)
		}
		limited := p.Who + " answered 429 (rate limited)"
		if attempt > p.MaxRetries {
			if attempt > 1 {
				limited = fmt.Sprintf("%s %d times", limited, attempt)
			}
			return finish(unknown(limited))
		}
		if dl, ok := ctx.Deadline(); ok && time.Now().Add(wait).After(dl) {
			return finish(unknown(fmt.Sprintf("%s; its Retry-After of %s passes the deadline", limited, wait)))
		}
		if wait > MaxWait {
			return finish(unknown(fmt.Sprintf("%s; its Retry-After of %s is longer than a check waits (%s)", limited, wait, MaxWait)))
		}
		log.Info("provider rate limited; waiting", "retry_after", wait, "attempt", attempt)
		if err := sleep(ctx, wait); err != nil {
			return finish(unknown(limited + "; " + waitReason(ctx, err)))
		}
	}
}

func unknown(reason string) providers.Result {
	return providers.Result{Validity: providers.Unknown, Reason: reason}
}

// discard drains a bounded part of the body, so the connection can be
// reused, and closes it. What was read is thrown away.
func discard(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrain))
	_ = resp.Body.Close()
}

// NetworkReason describes a request that got no response in fixed words
// (package neterr): the error's own text can quote the answer, a
// redirect's Location or the URL, and the answer may echo the key.
func NetworkReason(ctx context.Context, err error) string {
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return "no answer before the deadline"
	case errors.Is(ctx.Err(), context.Canceled):
		return "check cancelled"
	}
	desc, _ := neterr.Describe(err)
	return "network error: " + desc
}

func waitReason(ctx context.Context, err error) string {
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return "the deadline passed while waiting"
	case errors.Is(ctx.Err(), context.Canceled):
		return "check cancelled while waiting"
	case errors.Is(err, ErrPastDeadline):
		return "waiting for the rate limit would pass the deadline"
	}
	return "rate limit wait failed"
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
