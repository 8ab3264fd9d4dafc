package actionnetwork_test

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

	"github.com/rekey-dev/rekey/internal/ansim"
	"github.com/rekey-dev/rekey/internal/leakcheck"
	"github.com/rekey-dev/rekey/providers"
	"github.com/rekey-dev/rekey/providers/actionnetwork"
	"github.com/rekey-dev/rekey/secret"
)

// env is a simulated Action Network and a checker pointed at it.
type env struct {
	sim  *ansim.Sim
	srv  *httptest.Server
	logs *bytes.Buffer
	log  *slog.Logger // one handler, so writes to logs are serialised
	lim  *actionnetwork.Limiter
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{sim: ansim.New(), logs: &bytes.Buffer{}, lim: actionnetwork.NewLimiter(actionnetwork.DefaultRate, 1)}
	e.log = slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e.srv = httptest.NewServer(e.sim)
	t.Cleanup(e.srv.Close)
	return e
}

func (e *env) checker(opts actionnetwork.Options) *actionnetwork.Checker {
	if opts.BaseURL == "" {
		opts.BaseURL = e.srv.URL + "/api/v2/"
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = e.srv.Client()
	}
	opts.Logger = e.log
	if opts.Limiter == nil {
		opts.Limiter = e.lim
	}
	return actionnetwork.New(opts)
}

// noLeak runs leakcheck over everything a check produced that must not
// hold a key: the reason, every log line, and what the simulator logged
// about each request (so a key in the URL would be caught).
func noLeak(t *testing.T, e *env, r providers.Result, keys ...string) {
	t.Helper()
	leakcheck.Assert(t, "reason", []byte(r.Reason), keys...)
	leakcheck.Assert(t, "log", e.logs.Bytes(), keys...)
	leakcheck.Assert(t, "request log", []byte(fmt.Sprintf("%+v", e.sim.Requests())), keys...)
}

func TestCheckStates(t *testing.T) {
	t.Parallel()
	bad := "deadbeefdeadbeefdeadbeefdeadbeef"
	for _, tc := range []struct {
		name     string
		setup    func(e *env, good string) // before the check
		key      string                    // "" means the simulator's valid key
		path     string                    // the API root's path; "" means /api/v2/
		retries  int
		timeout  time.Duration
		want     providers.Validity
		reason   string // a substring of the reason
		requests [2]int // bounds on requests seen by the simulator
		minGap   time.Duration
	}{
		{name: "200 is valid", want: providers.Valid,
			reason: "authenticated read of tags returned 200", requests: [2]int{1, 1}},
		{name: "401 is invalid", key: bad, want: providers.Invalid,
			reason: "Action Network refused the key (401)", requests: [2]int{1, 1}},
		{name: "403 is invalid", setup: func(e *env, _ string) { e.sim.FailWith(403, 1) },
			want: providers.Invalid, reason: "Action Network refused the key (403)", requests: [2]int{1, 1}},
		{name: "500 is unknown", setup: func(e *env, _ string) { e.sim.FailWith(500, 1) },
			want: providers.Unknown, reason: "Action Network answered 500 (server error)", requests: [2]int{1, 1}},
		{name: "503 is unknown", setup: func(e *env, _ string) { e.sim.FailWith(503, 1) },
			want: providers.Unknown, reason: "Action Network answered 503 (server error)", requests: [2]int{1, 1}},
		{name: "429 then 200 is valid after Retry-After", setup: func(e *env, _ string) { e.sim.Throttle(1) },
			want: providers.Valid, reason: "returned 200", requests: [2]int{2, 2}, minGap: time.Second},
		{name: "429 then 401 is invalid after Retry-After", key: bad, setup: func(e *env, _ string) { e.sim.Throttle(1) },
			want: providers.Invalid, reason: "refused the key (401)", requests: [2]int{2, 2}, minGap: time.Second},
		{name: "429 until the deadline is unknown", setup: func(e *env, _ string) { e.sim.Throttle(1000) },
			timeout: 1500 * time.Millisecond, want: providers.Unknown,
			reason: "Action Network answered 429 (rate limited); its Retry-After of 1s passes the deadline", requests: [2]int{2, 2}},
		{name: "429 with a long Retry-After gives up at once", setup: func(e *env, _ string) { e.sim.ThrottleFor(time.Hour) },
			timeout: 5 * time.Second, want: providers.Unknown, reason: "passes the deadline", requests: [2]int{1, 1}},
		{name: "429 retries are bounded", setup: func(e *env, _ string) { e.sim.Throttle(1000) }, retries: 1,
			want: providers.Unknown, reason: "Action Network answered 429 (rate limited) 2 times", requests: [2]int{2, 2}},
		{name: "429 with no retries", setup: func(e *env, _ string) { e.sim.Throttle(1) }, retries: -1,
			want: providers.Unknown, reason: "Action Network answered 429 (rate limited)", requests: [2]int{1, 1}},
		{name: "404 is unknown, not invalid", path: "/api/v1", want: providers.Unknown,
			reason: "Action Network answered 404", requests: [2]int{1, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			good := e.sim.Generate()
			key := tc.key
			if key == "" {
				key = good
			}
			if tc.setup != nil {
				tc.setup(e, good)
			}
			opts := actionnetwork.Options{MaxRetries: tc.retries}
			if tc.path != "" {
				opts.BaseURL = e.srv.URL + tc.path
			}
			timeout := tc.timeout
			if timeout == 0 {
				timeout = 10 * time.Second
			}
			ctx, cancel := context.WithTimeout(t.Context(), timeout)
			defer cancel()

			r := e.checker(opts).Check(ctx, secret.New(key))

			if r.Validity != tc.want || !strings.Contains(r.Reason, tc.reason) {
				t.Errorf("Check = %s %q, want %s and a reason holding %q", r.Validity, r.Reason, tc.want, tc.reason)
			}
			reqs := e.sim.Requests()
			if n := len(reqs); n < tc.requests[0] || n > tc.requests[1] {
				t.Errorf("simulator saw %d requests, want %d to %d", n, tc.requests[0], tc.requests[1])
			}
			for _, q := range reqs {
				if q.Method != "GET" || !strings.HasSuffix(q.Path, "/tags") || q.RawQuery != "per_page=1" ||
					q.Fingerprint != secret.Fingerprint([]byte(key)) {
					t.Errorf("unexpected request %+v", q)
				}
			}
			if tc.minGap > 0 && len(reqs) >= 2 {
				if gap := reqs[1].At.Sub(reqs[0].At); gap < tc.minGap {
					t.Errorf("retried after %s, before Retry-After's %s", gap, tc.minGap)
				}
			}
			noLeak(t, e, r, key, good)
		})
	}
}

func TestEntryPoint200DoesNotMakeABadKeyValid(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.sim.Generate()
	bad := "0badc0de0badc0de0badc0de0badc0de"

	// The simulator, like Action Network, welcomes a bad key at the entry point.
	req, _ := http.NewRequest("GET", e.srv.URL+"/api/v2/", nil)
	req.Header.Set(actionnetwork.Header, bad)
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("entry point answered %d to a bad key; the simulator no longer acts like Action Network", resp.StatusCode)
	}

	r := e.checker(actionnetwork.Options{}).Check(t.Context(), secret.New(bad))
	if r.Validity != providers.Invalid {
		t.Errorf("Check = %s %q, want invalid", r.Validity, r.Reason)
	}
	noLeak(t, e, r, bad)
}

// Servers that answer 200 to everything prove nothing about a key.
func TestA200ThatIsNotACollectionIsUnknown(t *testing.T) {
	t.Parallel()
	key := "c0ffeec0ffeec0ffeec0ffeec0ffee00"
	for name, body := range map[string]string{
		"entry point": `{"motd":"Welcome to the Action Network OSDI API v2 Entry Point!","_links":{"self":{"href":"x"},"osdi:people":{"href":"y"}}}`,
		"html":        `<html><body>Sign in to ` + key + `</body></html>`,
		"json array":  `["` + key + `"]`,
		"empty":       ``,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var got atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				got.Add(1)
				if r.Header.Get(actionnetwork.Header) != key {
					t.Errorf("request did not carry the key in %s", actionnetwork.Header)
				}
				io.WriteString(w, body)
			}))
			defer srv.Close()
			var logs bytes.Buffer
			c := actionnetwork.New(actionnetwork.Options{
				BaseURL: srv.URL + "/api/v2", HTTPClient: srv.Client(),
				Logger:  slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
				Limiter: actionnetwork.NewLimiter(actionnetwork.DefaultRate, 1),
			})
			r := c.Check(t.Context(), secret.New(key))
			if r.Validity != providers.Unknown || r.Reason != "authenticated read of tags returned 200 but not an OSDI collection" {
				t.Errorf("Check = %s %q", r.Validity, r.Reason)
			}
			if got.Load() != 1 {
				t.Errorf("%d requests, want 1", got.Load())
			}
			leakcheck.Assert(t, "reason", []byte(r.Reason), key)
			leakcheck.Assert(t, "log", logs.Bytes(), key)
		})
	}
}

func TestNetworkFailuresAreUnknown(t *testing.T) {
	t.Parallel()
	key := "feedfacefeedfacefeedfacefeedface"

	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close()

	hang := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(hang); slow.Close() })

	cancelled, cancel := context.WithCancel(t.Context())
	cancel()

	for _, tc := range []struct {
		name   string
		base   string
		ctx    func() (context.Context, context.CancelFunc)
		reason string
	}{
		{"connection refused", closedURL + "/api/v2/", nil, "network error: connection refused"},
		{"no answer before the deadline", slow.URL + "/api/v2/", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(t.Context(), 200*time.Millisecond)
		}, "no answer before the deadline"},
		{"cancelled", slow.URL + "/api/v2/", func() (context.Context, context.CancelFunc) {
			return cancelled, func() {}
		}, "cancelled"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var logs bytes.Buffer
			c := actionnetwork.New(actionnetwork.Options{
				BaseURL: tc.base,
				Logger:  slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
				Limiter: actionnetwork.NewLimiter(actionnetwork.DefaultRate, 1),
			})
			ctx := t.Context()
			if tc.ctx != nil {
				var cancel context.CancelFunc
				ctx, cancel = tc.ctx()
				defer cancel()
			}
			r := c.Check(ctx, secret.New(key))
			if r.Validity != providers.Unknown || !strings.Contains(r.Reason, tc.reason) {
				t.Errorf("Check = %s %q, want unknown and %q", r.Validity, r.Reason, tc.reason)
			}
			leakcheck.Assert(t, "reason", []byte(r.Reason), key)
			leakcheck.Assert(t, "log", logs.Bytes(), key)
		})
	}
}

// A redirect would carry OSDI-API-Token to wherever it points.
func TestRedirectIsNotFollowed(t *testing.T) {
	t.Parallel()
	key := "abad1deaabad1deaabad1deaabad1dea"
	var elsewhere atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		elsewhere.Add(1)
	}))
	defer other.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+r.URL.Path, http.StatusFound)
	}))
	defer srv.Close()

	c := actionnetwork.New(actionnetwork.Options{BaseURL: srv.URL + "/api/v2/", Limiter: actionnetwork.NewLimiter(10, 1)})
	r := c.Check(t.Context(), secret.New(key))
	if r.Validity != providers.Unknown || r.Reason != "Action Network answered 302 (a redirect, not followed)" {
		t.Errorf("Check = %s %q", r.Validity, r.Reason)
	}
	if n := elsewhere.Load(); n != 0 {
		t.Errorf("the redirect target got %d requests", n)
	}
}

func TestEmptyKeyAndBadBaseURL(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	if r := e.checker(actionnetwork.Options{}).Check(t.Context(), secret.Key{}); r.Validity != providers.Invalid {
		t.Errorf("empty key: %s %q", r.Validity, r.Reason)
	}
	if n := len(e.sim.Requests()); n != 0 {
		t.Errorf("empty key sent %d requests", n)
	}
	for _, base := range []string{"ftp://actionnetwork.org/api/v2/", "/api/v2/", "https://actionnetwork.org/api/v2/?x=1", "://"} {
		if err := actionnetwork.ValidateBaseURL(base); err == nil {
			t.Errorf("ValidateBaseURL(%q) accepted it", base)
		}
		r := actionnetwork.New(actionnetwork.Options{BaseURL: base}).Check(t.Context(), secret.New("k"))
		if r.Validity != providers.Unknown || !strings.Contains(r.Reason, "provider_url") {
			t.Errorf("BaseURL %q: Check = %s %q", base, r.Validity, r.Reason)
		}
	}
	for _, base := range []string{actionnetwork.DefaultBaseURL, "http://127.0.0.1:8080/api/v2"} {
		if err := actionnetwork.ValidateBaseURL(base); err != nil {
			t.Errorf("ValidateBaseURL(%q): %v", base, err)
		}
	}
}

// Many concurrent checks of one key, from several Checkers sharing one
// Limiter, never exceed Action Network's 4 requests a second: the
// simulator enforces that limit and would have answered 429.
func TestConcurrentChecksStayUnderTheRateLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// The simulator allows one more request a second than Action Network
	// does, so that requests rekey sent well apart but which arrived
	// bunched up on a loaded machine are not refused; the spacing rekey
	// keeps is checked below, with room for that jitter.
	e.sim.SetRateLimit(ansim.DefaultRateLimit+1, time.Second)
	key := e.sim.Generate()
	checkers := []*actionnetwork.Checker{
		e.checker(actionnetwork.Options{}), e.checker(actionnetwork.Options{}), e.checker(actionnetwork.Options{}),
	}
	const checks = 9
	results := make([]providers.Result, checks)
	var wg sync.WaitGroup
	for i := range checks {
		wg.Go(func() {
			results[i] = checkers[i%len(checkers)].Check(t.Context(), secret.New(key))
		})
	}
	wg.Wait()

	for i, r := range results {
		if r.Validity != providers.Valid {
			t.Errorf("check %d: %s %q", i, r.Validity, r.Reason)
		}
		leakcheck.Assert(t, "reason", []byte(r.Reason), key)
	}
	reqs := e.sim.Requests()
	if len(reqs) != checks {
		t.Errorf("simulator saw %d requests, want %d (a 429 makes a retry)", len(reqs), checks)
	}
	for _, q := range reqs {
		if q.Limited {
			t.Errorf("simulator rate-limited a request at %s", q.At.Format(time.StampMilli))
		}
	}
	// No five requests fall inside one second: rekey paces them at 3.5 a
	// second, so five span 1.14s when sent; allow 290ms of arrival jitter.
	for i := 0; i+ansim.DefaultRateLimit < len(reqs); i++ {
		if d := reqs[i+ansim.DefaultRateLimit].At.Sub(reqs[i].At); d < 850*time.Millisecond {
			t.Errorf("requests %d to %d came within %s", i, i+ansim.DefaultRateLimit, d)
		}
	}
	noLeak(t, e, providers.Result{}, key)
}

// The form the provider states is the one keys have: every key the
// simulator mints (as Action Network's API & Sync page does) fits it.
func TestKeyFormFitsMintedKeys(t *testing.T) {
	sim := ansim.New()
	var f providers.Former = actionnetwork.New(actionnetwork.Options{})
	if f.KeyForm() != actionnetwork.KeyForm || !actionnetwork.KeyForm.Valid() {
		t.Fatalf("KeyForm() = %v", f.KeyForm())
	}
	for range 200 {
		if k := secret.New(sim.Generate()); !f.KeyForm().Fits(k) {
			t.Fatalf("a minted key of %d bytes does not fit %v", k.Len(), f.KeyForm())
		}
	}
}
