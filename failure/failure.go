// Package failure is rekey's one vocabulary of failures. Every family
// (integrations, providers, notifiers, stores) classifies an error once,
// where it is born, by wrapping one of these classes; callers decide what
// to do with errors.Is and IsTransient, never by reading messages.
//
// It imports nothing of rekey's, so any package may use it.
package failure

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"
)

// Classes of failure. Wrap one where the error is born:
// fmt.Errorf("github: put secret %s: status %d: %w", name, code, failure.ErrTransient).
var (
	// ErrTransient: worth trying again (a timeout, 429, 5xx, a network error,
	// Vault sealed or unreachable).
	ErrTransient = errors.New("transient failure")
	// ErrUnauthorized: the credential was refused (401, 403, permission denied).
	ErrUnauthorized = errors.New("unauthorized")
	// ErrNotFound: the target or record does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict: someone else changed it first (check-and-set, 409, 412).
	ErrConflict = errors.New("conflict")
	// ErrInvalid: the request can never succeed as it is.
	ErrInvalid = errors.New("invalid")
)

// RetryAfterError is a transient failure that says how long to wait.
type RetryAfterError struct {
	After time.Duration
	Err   error
}

func (e *RetryAfterError) Error() string {
	return fmt.Sprintf("%v (retry after %s)", e.Err, e.After.Round(time.Millisecond))
}

func (e *RetryAfterError) Unwrap() []error { return []error{e.Err, ErrTransient} }

// IsTransient reports whether err is worth retrying: classified transient,
// a network error, or a deadline that ran out on one attempt.
func IsTransient(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, ErrTransient) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	if errors.Is(err, ErrUnauthorized) || errors.Is(err, ErrNotFound) ||
		errors.Is(err, ErrConflict) || errors.Is(err, ErrInvalid) || errors.Is(err, context.Canceled) {
		return false
	}
	var ne net.Error
	return errors.As(err, &ne)
}

// RetryAfter returns the wait a *RetryAfterError asks for, or 0.
func RetryAfter(err error) time.Duration {
	var ra *RetryAfterError
	if errors.As(err, &ra) {
		return ra.After
	}
	return 0
}

// ClassifyStatus maps an HTTP status to a class: 401 and 403 unauthorized,
// 404 not found, 409 and 412 conflict, 408, 429 and 5xx transient, other
// 4xx invalid, anything below 400 nil.
func ClassifyStatus(code int) error {
	switch {
	case code < 400:
		return nil
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		return ErrUnauthorized
	case code == http.StatusNotFound:
		return ErrNotFound
	case code == http.StatusConflict || code == http.StatusPreconditionFailed:
		return ErrConflict
	case code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500:
		return ErrTransient
	default:
		return ErrInvalid
	}
}

// StatusError builds the error for an HTTP response that failed, from its
// status and headers only (never its body): classified by ClassifyStatus,
// and a *RetryAfterError when the response carries Retry-After.
func StatusError(prefix string, resp *http.Response) error {
	class := ClassifyStatus(resp.StatusCode)
	if class == nil {
		return nil
	}
	err := fmt.Errorf("%s: status %d: %w", prefix, resp.StatusCode, class)
	if d := ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now()); d > 0 && errors.Is(class, ErrTransient) {
		return &RetryAfterError{After: d, Err: err}
	}
	return err
}

// ParseRetryAfter reads a Retry-After header (seconds or an HTTP date).
// It returns 0 when the header is absent or unreadable, and caps the wait
// at ten minutes.
func ParseRetryAfter(h string, now time.Time) time.Duration {
	if h == "" {
		return 0
	}
	var d time.Duration
	if s, err := strconv.Atoi(h); err == nil {
		d = time.Duration(s) * time.Second
	} else if t, err := http.ParseTime(h); err == nil {
		d = t.Sub(now)
	}
	if d < 0 {
		return 0
	}
	return min(d, 10*time.Minute)
}

// Class names err's class for people and metrics: transient,
// unauthorized, not_found, conflict, invalid, or unclassified.
func Class(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrUnauthorized):
		return "unauthorized"
	case errors.Is(err, ErrNotFound):
		return "not_found"
	case errors.Is(err, ErrConflict):
		return "conflict"
	case errors.Is(err, ErrInvalid):
		return "invalid"
	case IsTransient(err):
		return "transient"
	}
	return "unclassified"
}
