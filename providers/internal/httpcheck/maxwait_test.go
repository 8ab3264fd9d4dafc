package httpcheck

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/rekey-dev/rekey/providers"
	"github.com/rekey-dev/rekey/secret"
)

// A provider asking to wait longer than MaxWait is not waited for, even
// without a deadline (the preflight of `rekey rotate`, a person at the
// terminal): the check says unknown at once.
func TestLongRetryAfterIsNotWaitedWithoutDeadline(t *testing.T) {
	requests := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests++
		w.Header().Set("Retry-After", "600")
		w.WriteHeader(http.StatusTooManyRequests)
	}))
	defer srv.Close()
	p := Probe{Client: Client(srv.Client()), Logger: Logger(nil), MaxRetries: 3, Provider: "test", Who: "Test", URL: srv.URL, Header: "X-Key",
		Judge: func(*http.Response) providers.Result {
			return providers.Result{Validity: providers.Valid, Reason: "ok"}
		}}
	start := time.Now()
	r := p.Run(context.Background(), secret.New("k-0123456789"))
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("the check waited %s", d)
	}
	if r.Validity != providers.Unknown || !strings.Contains(r.Reason, "its Retry-After of 10m0s is longer than a check waits (1m0s)") {
		t.Fatalf("result = %s %q", r.Validity, r.Reason)
	}
	if requests != 1 {
		t.Fatalf("%d requests, want 1", requests)
	}
}
