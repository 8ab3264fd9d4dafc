package httpcheck

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"
)

func TestLimiterPacesPerKey(t *testing.T) {
	l := NewLimiter(2, 1) // one request every 500ms per key
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()

	if err := l.Wait(ctx, "sha256:aaaaaaaaaaaa"); err != nil {
		t.Fatalf("first wait: %v", err)
	}
	// The second request of that key needs ~500ms: more than ctx has.
	if err := l.Wait(ctx, "sha256:aaaaaaaaaaaa"); !errors.Is(err, ErrPastDeadline) {
		t.Errorf("second wait of one key: %v, want ErrPastDeadline", err)
	}
	// Another key has its own budget.
	if err := l.Wait(ctx, "sha256:bbbbbbbbbbbb"); err != nil {
		t.Errorf("other key: %v", err)
	}
}

func TestLimiterDefer(t *testing.T) {
	l := NewLimiter(1000, 10)
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()

	l.Defer("sha256:cccccccccccc", time.Hour)
	l.Defer("sha256:cccccccccccc", time.Millisecond) // does not shorten the hour
	if err := l.Wait(ctx, "sha256:cccccccccccc"); !errors.Is(err, ErrPastDeadline) {
		t.Errorf("deferred key: %v, want ErrPastDeadline", err)
	}
	if err := l.Wait(ctx, "sha256:dddddddddddd"); err != nil {
		t.Errorf("other key: %v", err)
	}

	l.Defer("sha256:eeeeeeeeeeee", 20*time.Millisecond)
	if err := l.Wait(ctx, "sha256:eeeeeeeeeeee"); err != nil {
		t.Errorf("short defer within the deadline: %v", err)
	}

	cancelled, stop := context.WithCancel(t.Context())
	stop()
	l.Defer("sha256:ffffffffffff", time.Minute)
	if err := l.Wait(cancelled, "sha256:ffffffffffff"); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled ctx: %v", err)
	}
}

func TestRetries(t *testing.T) {
	for in, want := range map[int]int{0: DefaultMaxRetries, -1: 0, -7: 0, 1: 1, 5: 5} {
		if got := Retries(in); got != want {
			t.Errorf("Retries(%d) = %d, want %d", in, got, want)
		}
	}
}

func TestClientFollowsNoRedirectAndLeavesTheOriginal(t *testing.T) {
	orig := &http.Client{Timeout: 5 * time.Second}
	c := Client(orig)
	if orig.CheckRedirect != nil {
		t.Error("Client changed the caller's client")
	}
	if c.Timeout != 5*time.Second {
		t.Errorf("timeout %s not kept", c.Timeout)
	}
	if err := c.CheckRedirect(nil, nil); !errors.Is(err, http.ErrUseLastResponse) {
		t.Errorf("CheckRedirect = %v", err)
	}
	if d := Client(nil); d.Timeout != DefaultTimeout || d.CheckRedirect == nil {
		t.Errorf("default client: timeout %s", d.Timeout)
	}
}
