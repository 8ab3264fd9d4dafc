package failure

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"
)

func TestClassifyStatus(t *testing.T) {
	for _, tc := range []struct {
		code int
		want error
	}{
		{200, nil}, {204, nil}, {302, nil},
		{401, ErrUnauthorized}, {403, ErrUnauthorized},
		{404, ErrNotFound},
		{409, ErrConflict}, {412, ErrConflict},
		{408, ErrTransient}, {429, ErrTransient}, {500, ErrTransient}, {503, ErrTransient},
		{400, ErrInvalid}, {422, ErrInvalid},
	} {
		if got := ClassifyStatus(tc.code); got != tc.want {
			t.Errorf("ClassifyStatus(%d) = %v, want %v", tc.code, got, tc.want)
		}
	}
}

func TestStatusErrorRetryAfter(t *testing.T) {
	resp := &http.Response{StatusCode: 429, Header: http.Header{"Retry-After": {"7"}}}
	err := StatusError("x: put y", resp)
	if !IsTransient(err) || RetryAfter(err) != 7*time.Second {
		t.Fatalf("429 with Retry-After 7: transient %v, wait %v", IsTransient(err), RetryAfter(err))
	}
	// Retry-After on a permanent failure is not a reason to retry.
	resp = &http.Response{StatusCode: 403, Header: http.Header{"Retry-After": {"7"}}}
	if err := StatusError("x", resp); IsTransient(err) || RetryAfter(err) != 0 {
		t.Fatalf("403 classified transient: %v", err)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		h    string
		want time.Duration
	}{
		{"", 0}, {"junk", 0}, {"-5", 0}, {"30", 30 * time.Second},
		{"100000", 10 * time.Minute}, // capped
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
	} {
		if got := ParseRetryAfter(tc.h, now); got != tc.want {
			t.Errorf("ParseRetryAfter(%q) = %v, want %v", tc.h, got, tc.want)
		}
	}
}

func TestIsTransientAndClass(t *testing.T) {
	wrap := func(e error) error { return fmt.Errorf("vault: read x: %w", e) }
	for _, tc := range []struct {
		err       error
		transient bool
		class     string
	}{
		{wrap(ErrTransient), true, "transient"},
		{wrap(context.DeadlineExceeded), true, "transient"},
		{wrap(context.Canceled), false, "unclassified"},
		{wrap(ErrUnauthorized), false, "unauthorized"},
		{wrap(ErrNotFound), false, "not_found"},
		{wrap(ErrConflict), false, "conflict"},
		{wrap(ErrInvalid), false, "invalid"},
		{&RetryAfterError{After: time.Second, Err: errors.New("slow down")}, true, "transient"},
		{errors.New("plain"), false, "unclassified"},
	} {
		if got := IsTransient(tc.err); got != tc.transient {
			t.Errorf("IsTransient(%v) = %v", tc.err, got)
		}
		if got := Class(tc.err); got != tc.class {
			t.Errorf("Class(%v) = %q, want %q", tc.err, got, tc.class)
		}
	}
}
