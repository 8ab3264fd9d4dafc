// Package faultproxy puts a reverse proxy in front of a real server (the
// Vault dev server) so a test can make the next request fail, hang, or be
// preceded by something else, and can see what was sent, without faking
// the server itself.
package faultproxy

import (
	"bytes"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
)

// Failure is an answer the proxy gives instead of forwarding.
type Failure struct {
	Status int
	Header http.Header
	Body   string
}

// Proxy forwards to one server.
type Proxy struct {
	URL string

	// Redact, when set, rewrites a request body before it is logged (to
	// take out the one slot that is meant to carry a key).
	Redact func(body []byte) []byte
	// Secret headers are logged as <redacted>.
	Secret []string

	rp   *httputil.ReverseProxy
	done chan struct{}

	mu      sync.Mutex
	fail    []Failure
	hang    int
	before  []func(r *http.Request)
	counts  map[string]int
	log     bytes.Buffer
	matcher func(r *http.Request) bool
}

// New starts a proxy to target that stops when the test ends.
func New(t testing.TB, target string) *Proxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatalf("faultproxy: %v", err)
	}
	p := &Proxy{done: make(chan struct{}), counts: map[string]int{}}
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(u)
			r.Out.Host = u.Host
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			w.WriteHeader(http.StatusBadGateway)
		},
	}
	srv := httptest.NewServer(http.HandlerFunc(p.serve))
	p.URL = srv.URL
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(p.done) })
	return p
}

// Only makes FailNext, HangNext and Before apply to requests for which
// match is true (nil: every request).
func (p *Proxy) Only(match func(r *http.Request) bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.matcher = match
}

// FailNext answers the next (matching) request with f.
func (p *Proxy) FailNext(f Failure) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fail = append(p.fail, f)
}

// HangNext holds the next (matching) request unanswered until the client
// gives up or the test ends.
func (p *Proxy) HangNext() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hang++
}

// Before runs f before the next (matching) request is forwarded.
func (p *Proxy) Before(f func(r *http.Request)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.before = append(p.before, f)
}

// Count is how many requests with this method and path were forwarded and
// answered with a 2xx status.
func (p *Proxy) Count(method, path string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.counts[method+" "+path]
}

// Log is every request the proxy saw: method, path, headers and body
// (after Redact), and what it answered.
func (p *Proxy) Log() []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return bytes.Clone(p.log.Bytes())
}

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	w.code = code
	w.ResponseWriter.WriteHeader(code)
}

func (p *Proxy) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))

	p.mu.Lock()
	var fail *Failure
	var before func(*http.Request)
	hang := false
	if p.matcher == nil || p.matcher(r) {
		switch {
		case p.hang > 0:
			p.hang--
			hang = true
		case len(p.fail) > 0:
			fail = &p.fail[0]
			p.fail = p.fail[1:]
		case len(p.before) > 0:
			before = p.before[0]
			p.before = p.before[1:]
		}
	}
	p.mu.Unlock()

	sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
	switch {
	case hang:
		select {
		case <-r.Context().Done():
		case <-p.done:
		}
		sw.code = 0
	case fail != nil:
		maps.Copy(w.Header(), fail.Header)
		sw.WriteHeader(fail.Status)
		io.WriteString(w, fail.Body)
	default:
		if before != nil {
			before(r)
		}
		p.rp.ServeHTTP(sw, r)
	}
	p.record(r, body, sw.code, fail != nil)
}

func (p *Proxy) record(r *http.Request, body []byte, code int, injected bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if code >= 200 && code < 300 && !injected {
		p.counts[r.Method+" "+r.URL.Path]++
	}
	note := ""
	if injected {
		note = " (injected)"
	}
	fmt.Fprintf(&p.log, "%s %s -> %d%s\n", r.Method, r.URL.RequestURI(), code, note)
	for _, name := range slices.Sorted(maps.Keys(r.Header)) {
		v := strings.Join(r.Header[name], ", ")
		if slices.ContainsFunc(p.Secret, func(s string) bool { return strings.EqualFold(s, name) }) {
			v = "<redacted>"
		}
		fmt.Fprintf(&p.log, "  %s: %s\n", name, v)
	}
	if len(body) > 0 {
		if p.Redact != nil {
			body = p.Redact(body)
		}
		fmt.Fprintf(&p.log, "  body: %s\n", body)
	}
}
