// Package apitest is what rekey's hosted-platform test servers (herokutest,
// rendertest, netlifytest, verceltest, gitlabtest, k8stest) share: one
// accepted token, injected failures, rate limits and hangs answered in the
// platform's own words, a log of every request with credentials and the
// key's slot taken out, and protocol violations reported to the test.
//
// Each server decides what its platform says (error bodies, rate-limit
// headers, how a token is sent) through Hooks; Base does the rest.
package apitest

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math/big"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Hooks say how one platform answers.
type Hooks struct {
	// Authorized reports whether r carries the token. nil: the header
	// "Authorization: Bearer <token>".
	Authorized func(r *http.Request, token string) bool
	// Error writes the platform's answer for a failure with status code.
	Error func(w http.ResponseWriter, r *http.Request, code int)
	// Throttled writes the platform's rate-limit answer asking the client
	// to come back after wait.
	Throttled func(w http.ResponseWriter, r *http.Request, wait time.Duration)
	// Headers sets headers every answer carries (rate-limit counters).
	Headers func(w http.ResponseWriter)
	// Redact returns a request body as it may be logged, every value that
	// may hold a key replaced. nil: bodies are not logged.
	Redact func(r *http.Request, body []byte) []byte
	// Credentials lists the request headers that carry credentials, logged
	// as <token>. Authorization is always one.
	Credentials []string
}

// Base is the shared state of a test server.
type Base struct {
	// Token is the one token the server accepts.
	Token string

	hooks  Hooks
	report func(format string, args ...any)
	done   chan struct{}
	once   sync.Once

	mu           sync.Mutex
	failNext     []int
	failWrite    []int
	hangNext     int
	throttle     int
	throttleWait time.Duration
	requests     int
	log          bytes.Buffer
	violations   []string
}

// NewBase returns a Base accepting token, reporting protocol violations to
// t (nil: kept for Violations).
func NewBase(t testing.TB, token string, hooks Hooks) *Base {
	b := &Base{Token: token, hooks: hooks, done: make(chan struct{})}
	b.report = b.violation
	if t != nil {
		b.report = t.Errorf
	}
	return b
}

// Close releases requests that hang.
func (b *Base) Close() { b.once.Do(func() { close(b.done) }) }

// Report records that a client broke the protocol.
func (b *Base) Report(format string, args ...any) { b.report(format, args...) }

func (b *Base) violation(format string, args ...any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.violations = append(b.violations, fmt.Sprintf(format, args...))
}

// Violations lists what clients did wrong (for servers started without a test).
func (b *Base) Violations() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.violations)
}

// FailNext answers the next request, whatever it is, with status code and
// the platform's error for it.
func (b *Base) FailNext(code int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.failNext = append(b.failNext, code)
}

// FailNextWrite answers the next request that is not a GET with status
// code and the platform's error for it.
func (b *Base) FailNextWrite(code int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.failWrite = append(b.failWrite, code)
}

// HangNext makes the next request wait, unanswered, until the client gives
// up or the server closes.
func (b *Base) HangNext() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.hangNext++
}

// Throttle answers the next n requests as the platform does when the
// client is over its rate limit, asking it to come back after wait.
func (b *Base) Throttle(n int, wait time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.throttle, b.throttleWait = n, wait
}

// Requests is how many requests the server saw.
func (b *Base) Requests() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.requests
}

// Log is every request the server saw: method, path, headers (credentials
// replaced by <token>), the body with every value that may hold a key
// taken out, and the status it answered.
func (b *Base) Log() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.log.Bytes())
}

// Handler serves route behind the shared gate: injected hangs, rate
// limits and failures, then the token check.
func (b *Base) Handler(route func(w http.ResponseWriter, r *http.Request, body []byte)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		rec := &recorder{ResponseWriter: w, code: http.StatusOK}
		hung := b.serve(rec, r, body, route)
		if hung {
			rec.code = 0
		}
		b.record(r, body, rec.code)
		if hung {
			// Never answered: drop the connection rather than let net/http
			// send an empty 200 once the handler returns.
			panic(http.ErrAbortHandler)
		}
	})
}

// serve answers r, and reports whether it hung instead.
func (b *Base) serve(w http.ResponseWriter, r *http.Request, body []byte, route func(http.ResponseWriter, *http.Request, []byte)) (hung bool) {
	b.mu.Lock()
	b.requests++
	hang := b.hangNext > 0
	if hang {
		b.hangNext--
	}
	throttled := !hang && b.throttle > 0
	if throttled {
		b.throttle--
	}
	wait := b.throttleWait
	fail := 0
	if !hang && !throttled {
		if len(b.failNext) > 0 {
			fail, b.failNext = b.failNext[0], b.failNext[1:]
		} else if r.Method != http.MethodGet && len(b.failWrite) > 0 {
			fail, b.failWrite = b.failWrite[0], b.failWrite[1:]
		}
	}
	b.mu.Unlock()

	if hang {
		select {
		case <-r.Context().Done():
		case <-b.done:
		}
		return true
	}
	if b.hooks.Headers != nil {
		b.hooks.Headers(w)
	}
	if throttled {
		b.hooks.Throttled(w, r, wait)
		return false
	}
	if fail != 0 {
		b.hooks.Error(w, r, fail)
		return false
	}
	authorized := b.hooks.Authorized
	if authorized == nil {
		authorized = func(r *http.Request, token string) bool {
			return r.Header.Get("Authorization") == "Bearer "+token
		}
	}
	if !authorized(r, b.Token) {
		b.hooks.Error(w, r, http.StatusUnauthorized)
		return false
	}
	route(w, r, body)
	return false
}

func (b *Base) record(r *http.Request, body []byte, code int) {
	secretHeaders := append([]string{"Authorization"}, b.hooks.Credentials...)
	b.mu.Lock()
	defer b.mu.Unlock()
	if code == 0 {
		fmt.Fprintf(&b.log, "%s %s -> no answer\n", r.Method, r.URL.RequestURI())
	} else {
		fmt.Fprintf(&b.log, "%s %s -> %d\n", r.Method, r.URL.RequestURI(), code)
	}
	for _, name := range slices.Sorted(maps.Keys(r.Header)) {
		v := strings.Join(r.Header[name], ", ")
		if slices.ContainsFunc(secretHeaders, func(s string) bool { return strings.EqualFold(s, name) }) {
			v = "<token>"
		}
		fmt.Fprintf(&b.log, "  %s: %s\n", name, v)
	}
	if len(body) > 0 && b.hooks.Redact != nil {
		fmt.Fprintf(&b.log, "  body: %s\n", b.hooks.Redact(r, body))
	}
}

type recorder struct {
	http.ResponseWriter
	code int
}

func (r *recorder) WriteHeader(code int) {
	r.code = code
	r.ResponseWriter.WriteHeader(code)
}

// WriteJSON answers with v as JSON.
func WriteJSON(w http.ResponseWriter, code int, v any) {
	b, _ := json.Marshal(v)
	if w.Header().Get("Content-Type") == "" {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(code)
	w.Write(b)
}

// RedactJSON replaces, anywhere in a JSON document, the value of every
// member named in fields by "<redacted>". A body that is not JSON is
// replaced whole.
func RedactJSON(body []byte, fields ...string) []byte {
	var doc any
	if json.Unmarshal(body, &doc) != nil {
		return []byte(fmt.Sprintf("<%d bytes, not JSON>", len(body)))
	}
	var walk func(v any) any
	walk = func(v any) any {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				if slices.Contains(fields, k) && e != nil {
					x[k] = "<redacted>"
					continue
				}
				x[k] = walk(e)
			}
		case []any:
			for i, e := range x {
				x[i] = walk(e)
			}
		}
		return v
	}
	return Marshal(walk(doc))
}

// Marshal is json.Marshal without HTML escaping, for logs people read.
func Marshal(v any) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.Encode(v)
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

// RandomDigits returns n random decimal digits.
func RandomDigits(n int) string { return randomFrom("0123456789", n) }

// RandomID returns n random lower-case letters and digits.
func RandomID(n int) string { return randomFrom("abcdefghijklmnopqrstuvwxyz0123456789", n) }

func randomFrom(alphabet string, n int) string {
	var s strings.Builder
	for range n {
		i, _ := rand.Int(rand.Reader, big.NewInt(int64(len(alphabet))))
		s.WriteByte(alphabet[i.Int64()])
	}
	return s.String()
}
