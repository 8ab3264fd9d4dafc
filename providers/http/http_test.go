package http_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rekey-dev/rekey/internal/leakcheck"
	"github.com/rekey-dev/rekey/providers"
	httpprovider "github.com/rekey-dev/rekey/providers/http"
	"github.com/rekey-dev/rekey/secret"
)

const header = "X-Api-Key"

// seen is one request the verify server received.
type seen struct {
	at       time.Time
	method   string
	uri      string // path and query: must never hold the key
	key      string // the value of header
	otherKey bool   // the key turned up in any other header
}

// server is a verify endpoint that answers the statuses it is given in
// turn (the last one forever), echoing the key in every error body, as
// careless APIs do.
type server struct {
	*httptest.Server
	mu       sync.Mutex
	statuses []int
	retry    string // Retry-After on 429; "-" for none
	got      []seen
}

func newServer(t *testing.T, retry string, statuses ...int) *server {
	s := &server{statuses: statuses, retry: retry}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

func (s *server) serve(w http.ResponseWriter, r *http.Request) {
	key := r.Header.Get(header)
	other := false
	for name, vs := range r.Header {
		if name != header && strings.Contains(strings.Join(vs, ","), key) && key != "" {
			other = true
		}
	}
	s.mu.Lock()
	s.got = append(s.got, seen{time.Now(), r.Method, r.URL.RequestURI(), key, other})
	status := s.statuses[0]
	if len(s.statuses) > 1 {
		s.statuses = s.statuses[1:]
	}
	s.mu.Unlock()

	w.Header().Set("Content-Type", "application/json")
	switch {
	case status == http.StatusTooManyRequests && s.retry != "-":
		w.Header().Set("Retry-After", s.retry)
	case status >= 300 && status < 400:
		w.Header().Set("Location", "/elsewhere")
	}
	w.WriteHeader(status)
	if status >= 300 {
		fmt.Fprintf(w, `{"message":"token %s is not accepted here"}`, key)
	} else {
		io.WriteString(w, `{"ok":true}`)
	}
}

func (s *server) requests() []seen {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]seen(nil), s.got...)
}

func TestCheckStates(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		statuses []int
		retry    string // Retry-After on 429; "" means "1"
		valid    int    // valid_status
		retries  int
		timeout  time.Duration
		want     providers.Validity
		reason   string // after the host
		requests int
		minGap   time.Duration
	}{
		{name: "200 is valid", statuses: []int{200}, want: providers.Valid,
			reason: " answered 200 to the verify request", requests: 1},
		{name: "valid_status 204", statuses: []int{204}, valid: 204, want: providers.Valid,
			reason: " answered 204 to the verify request", requests: 1},
		{name: "200 when 204 is agreed is unknown", statuses: []int{200}, valid: 204, want: providers.Unknown,
			reason: " answered 200, expected 204", requests: 1},
		{name: "401 is invalid", statuses: []int{401}, want: providers.Invalid,
			reason: " refused the key (401)", requests: 1},
		{name: "403 is invalid", statuses: []int{403}, want: providers.Invalid,
			reason: " refused the key (403)", requests: 1},
		{name: "500 is unknown", statuses: []int{500}, want: providers.Unknown,
			reason: " answered 500 (server error)", requests: 1},
		{name: "502 is unknown", statuses: []int{502}, want: providers.Unknown,
			reason: " answered 502 (server error)", requests: 1},
		{name: "408 is unknown", statuses: []int{408}, want: providers.Unknown,
			reason: " answered 408 (request timeout)", requests: 1},
		{name: "404 is unknown", statuses: []int{404}, want: providers.Unknown,
			reason: " answered 404, expected 200", requests: 1},
		{name: "400 is unknown", statuses: []int{400}, want: providers.Unknown,
			reason: " answered 400, expected 200", requests: 1},
		{name: "302 is unknown and not followed", statuses: []int{302}, want: providers.Unknown,
			reason: " answered 302 (a redirect, not followed)", requests: 1},
		{name: "429 then 200 is valid after Retry-After", statuses: []int{429, 200}, want: providers.Valid,
			reason: " answered 200 to the verify request", requests: 2, minGap: time.Second},
		{name: "429 without Retry-After waits a second", statuses: []int{429, 401}, retry: "-", want: providers.Invalid,
			reason: " refused the key (401)", requests: 2, minGap: time.Second},
		{name: "429 until the deadline is unknown", statuses: []int{429}, timeout: 1500 * time.Millisecond,
			want: providers.Unknown, reason: " answered 429 (rate limited); its Retry-After of 1s passes the deadline", requests: 2},
		{name: "429 retries are bounded", statuses: []int{429}, retries: 1,
			want: providers.Unknown, reason: " answered 429 (rate limited) 2 times", requests: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			retry := tc.retry
			if retry == "" {
				retry = "1"
			}
			srv := newServer(t, retry, tc.statuses...)
			var logs bytes.Buffer
			c, err := httpprovider.New(httpprovider.Options{
				URL: srv.URL + "/v1/me?fields=id", Header: header, ValidStatus: tc.valid,
				HTTPClient: srv.Client(), MaxRetries: tc.retries,
				Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
			})
			if err != nil {
				t.Fatal(err)
			}
			timeout := tc.timeout
			if timeout == 0 {
				timeout = 10 * time.Second
			}
			ctx, cancel := context.WithTimeout(t.Context(), timeout)
			defer cancel()
			key := "sk_live_" + strings.Repeat("7f3a", 8)

			r := c.Check(ctx, secret.New(key))

			host := strings.TrimPrefix(srv.URL, "http://")
			if want := host + tc.reason; r.Validity != tc.want || r.Reason != want {
				t.Errorf("Check = %s %q, want %s %q", r.Validity, r.Reason, tc.want, want)
			}
			got := srv.requests()
			if len(got) != tc.requests {
				t.Errorf("server saw %d requests, want %d", len(got), tc.requests)
			}
			for _, q := range got {
				if q.method != "GET" || q.uri != "/v1/me?fields=id" || q.key != key || q.otherKey {
					t.Errorf("unexpected request: %s %s, key in %s: %v, key elsewhere: %v",
						q.method, q.uri, header, q.key == key, q.otherKey)
				}
			}
			if tc.minGap > 0 && len(got) >= 2 {
				if gap := got[1].at.Sub(got[0].at); gap < tc.minGap {
					t.Errorf("retried after %s, before %s", gap, tc.minGap)
				}
			}
			leakcheck.Assert(t, "reason", []byte(r.Reason), key)
			leakcheck.Assert(t, "log", logs.Bytes(), key)
		})
	}
}

func TestNetworkFailuresAreUnknown(t *testing.T) {
	t.Parallel()
	closed := httptest.NewServer(http.NotFoundHandler())
	url := closed.URL
	closed.Close()
	var logs bytes.Buffer
	c, err := httpprovider.New(httpprovider.Options{URL: url + "/verify", Header: header,
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	key := "pk_" + strings.Repeat("c1d2", 8)
	r := c.Check(t.Context(), secret.New(key))
	if r.Validity != providers.Unknown || r.Reason != "network error: connection refused" {
		t.Errorf("connection refused: Check = %s %q", r.Validity, r.Reason)
	}
	leakcheck.Assert(t, "reason", []byte(r.Reason), key)
	leakcheck.Assert(t, "log", logs.Bytes(), key)
}

func TestRedirectTargetGetsNothing(t *testing.T) {
	t.Parallel()
	var elsewhere atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { elsewhere.Add(1) }))
	defer other.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+"/steal", http.StatusTemporaryRedirect)
	}))
	defer srv.Close()
	c, err := httpprovider.New(httpprovider.Options{URL: srv.URL, Header: header})
	if err != nil {
		t.Fatal(err)
	}
	if r := c.Check(t.Context(), secret.New("k-0123456789")); r.Validity != providers.Unknown {
		t.Errorf("Check = %s %q", r.Validity, r.Reason)
	}
	if n := elsewhere.Load(); n != 0 {
		t.Errorf("redirect target got %d requests", n)
	}
}

func TestEmptyKeySendsNothing(t *testing.T) {
	t.Parallel()
	srv := newServer(t, "1", 200)
	c, err := httpprovider.New(httpprovider.Options{URL: srv.URL, Header: header})
	if err != nil {
		t.Fatal(err)
	}
	if r := c.Check(t.Context(), secret.Key{}); r.Validity != providers.Invalid {
		t.Errorf("Check = %s %q", r.Validity, r.Reason)
	}
	if n := len(srv.requests()); n != 0 {
		t.Errorf("%d requests sent", n)
	}
}

func TestNewRefusesWhatCannotWork(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		opts httpprovider.Options
		want string
	}{
		{httpprovider.Options{Header: header}, "verify_url is required"},
		{httpprovider.Options{URL: "ftp://h/x", Header: header}, "want an http or https URL"},
		{httpprovider.Options{URL: "/relative", Header: header}, "want an http or https URL"},
		{httpprovider.Options{URL: "https://", Header: header}, "has no host"},
		{httpprovider.Options{URL: "https://u:p@h/x", Header: header}, "user information"},
		{httpprovider.Options{URL: "https://h/x"}, "not a header name"},
		{httpprovider.Options{URL: "https://h/x", Header: "X Api"}, "not a header name"},
		{httpprovider.Options{URL: "https://h/x", Header: "X-Api:"}, "not a header name"},
		{httpprovider.Options{URL: "https://h/x", Header: header, ValidStatus: 42}, "not an HTTP status"},
		{httpprovider.Options{URL: "https://h/x", Header: header, ValidStatus: 401}, "cannot mean a working key"},
		{httpprovider.Options{URL: "https://h/x", Header: header, ValidStatus: 429}, "cannot mean a working key"},
	} {
		_, err := httpprovider.New(tc.opts)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "http provider: ") {
			t.Errorf("New(%+v) = %v, want an error holding %q", tc.opts, err, tc.want)
		}
	}
	if _, err := httpprovider.New(httpprovider.Options{URL: "https://api.example.com/v1/me", Header: "Authorization"}); err != nil {
		t.Errorf("good options: %v", err)
	}
}
