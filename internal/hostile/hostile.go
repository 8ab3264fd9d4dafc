// Package hostile starts loopback HTTP servers that answer the way a
// hostile or broken peer (a target, a provider, a proxy at VAULT_ADDR)
// might: with bytes that quote the request they received back at rekey,
// in the places where Go's net/http copies a peer's bytes into its error
// text. A test points an integration, a provider, Slack or Vault at one,
// then searches every error, log line, output, Slack body and record for
// the secrets the request carried (internal/leakcheck).
//
// The servers speak raw TCP, so they can send what no http.Handler would:
// a status line or a header line that is not HTTP, a Location that does
// not parse, bytes after a complete answer.
package hostile

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// Mode is how a server answers.
type Mode string

const (
	// BadStatus answers a status line with no space that quotes the
	// request: net/http says `malformed HTTP response "<line>"`.
	BadStatus Mode = "bad-status"
	// BadHeader answers 200 and then a header line without a colon that
	// quotes the request: `malformed MIME header: missing colon: "<line>"`.
	BadHeader Mode = "bad-header"
	// BadLocation answers 302 with a Location that does not parse and
	// quotes the request: `failed to parse Location header "<value>"`.
	BadLocation Mode = "bad-location"
	// RedirectToSecret answers 307 to http://<the request's words>.invalid/:
	// a refusal that names the redirect's host, or a DNS error that names
	// the name looked up, quotes the request.
	RedirectToSecret Mode = "redirect"
	// Unsolicited answers a complete 200 {} and then more bytes quoting
	// the request: net/http's transport logs unsolicited bytes on an idle
	// connection through the standard log package.
	Unsolicited Mode = "unsolicited"
	// VaultJSON answers 500 with Vault's JSON error shape, its errors
	// quoting the request: an answer the Vault client takes for Vault's.
	VaultJSON Mode = "vault-json"
)

// Transport are the modes where Go's HTTP client itself copies the peer's
// bytes into an error: every client must survive each of them.
var Transport = []Mode{BadStatus, BadHeader, BadLocation, RedirectToSecret}

// All is every mode.
var All = []Mode{BadStatus, BadHeader, BadLocation, RedirectToSecret, Unsolicited, VaultJSON}

// ParseMode reads a mode's name.
func ParseMode(s string) (Mode, error) {
	for _, m := range All {
		if string(m) == s {
			return m, nil
		}
	}
	return "", fmt.Errorf("hostile: unknown mode %q", s)
}

// Canary starts every quote: a test that finds it in an error, a log line
// or an output has found bytes the peer chose.
const Canary = "hostile-canary-2f9c4b"

// Options configure a Server.
type Options struct {
	// Upstream, when set, is a server the requests that Hostile does not
	// pick are forwarded to, so that the hostile answer comes where it
	// hurts most (the write that carries a key).
	Upstream string
	// Hostile picks the requests answered with the mode; nil picks all.
	Hostile func(r *http.Request) bool
	// Answer, when set, replaces the mode's answer: it is given the quote
	// of the request and returns the raw bytes to send.
	Answer func(quote string) []byte
	// Canary starts every quote instead of the package's Canary.
	Canary string
}

// Server is a hostile loopback server.
type Server struct {
	URL  string
	Mode Mode

	opts     Options
	upstream *url.URL
	ln       net.Listener
	wg       sync.WaitGroup

	mu      sync.Mutex
	hostile int
	conns   map[net.Conn]bool
	closed  bool
}

// New starts a server that stops when the test ends.
func New(t testing.TB, m Mode, opts Options) *Server {
	t.Helper()
	s, err := Start(m, opts)
	if err != nil {
		t.Fatalf("hostile: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// Start starts a server; Close stops it.
func Start(m Mode, opts Options) (*Server, error) {
	if _, err := ParseMode(string(m)); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &Server{URL: "http://" + ln.Addr().String(), Mode: m, opts: opts, ln: ln, conns: map[net.Conn]bool{}}
	if opts.Upstream != "" {
		if s.upstream, err = url.Parse(opts.Upstream); err != nil {
			ln.Close()
			return nil, err
		}
	}
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

// Close stops the server and closes every connection.
func (s *Server) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	s.ln.Close()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// Hostile is how many requests got the hostile answer.
func (s *Server) Hostile() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hostile
}

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = true
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			defer func() {
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
				c.Close()
			}()
			s.serve(c)
		}()
	}
}

// serve answers the requests on one connection until the hostile answer
// (which closes it) or the client hangs up.
func (s *Server) serve(c net.Conn) {
	br := bufio.NewReader(c)
	for {
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		body, _ := io.ReadAll(io.LimitReader(req.Body, 1<<20))
		req.Body.Close()
		if s.upstream != nil && s.opts.Hostile != nil && !s.opts.Hostile(req) {
			if !s.forward(c, req, body) {
				return
			}
			continue
		}
		s.mu.Lock()
		s.hostile++
		s.mu.Unlock()
		q := Quote(req, body)
		if s.opts.Canary != "" {
			q = s.opts.Canary + strings.TrimPrefix(q, Canary)
		}
		answer := Answer(s.Mode, q)
		if s.opts.Answer != nil {
			answer = s.opts.Answer(q)
		}
		c.Write(answer)
		if s.Mode == Unsolicited {
			// Keep the connection open a moment so the client's
			// transport sees the extra bytes on its idle connection.
			time.Sleep(200 * time.Millisecond)
		}
		return
	}
}

// forward sends req to the upstream server and copies its answer back.
func (s *Server) forward(c net.Conn, req *http.Request, body []byte) bool {
	out := req.Clone(req.Context())
	out.RequestURI = ""
	out.URL.Scheme, out.URL.Host = s.upstream.Scheme, s.upstream.Host
	out.Host = s.upstream.Host
	out.Body = io.NopCloser(bytes.NewReader(body))
	out.ContentLength = int64(len(body))
	resp, err := http.DefaultTransport.RoundTrip(out)
	if err != nil {
		c.Write([]byte("HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"))
		return false
	}
	defer resp.Body.Close()
	dump, err := httputil.DumpResponse(resp, true)
	if err != nil {
		return false
	}
	_, err = c.Write(dump)
	return err == nil
}

// Quote is what a hostile server echoes: Canary, the request line, every
// header line and the body, on one line (CR and LF become spaces).
func Quote(req *http.Request, body []byte) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s %s %s", Canary, req.Method, req.RequestURI, req.Proto)
	for name, vals := range req.Header {
		for _, v := range vals {
			fmt.Fprintf(&b, " %s: %s", name, v)
		}
	}
	b.WriteString(" ")
	b.Write(body)
	return strings.NewReplacer("\r", " ", "\n", " ").Replace(b.String())
}

var notHostChar = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// Answer is the hostile answer of mode m quoting q.
func Answer(m Mode, q string) []byte {
	switch m {
	case BadStatus:
		// No space: net/http quotes the whole line.
		return []byte(strings.ReplaceAll(q, " ", "\t") + "\r\n\r\n")
	case BadHeader:
		return []byte("HTTP/1.1 200 OK\r\n" + strings.ReplaceAll(q, ":", "=") + "\r\nContent-Length: 0\r\n\r\n")
	case BadLocation:
		return []byte("HTTP/1.1 302 Found\r\nLocation: http://%zz/" + q + "\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
	case RedirectToSecret:
		host := strings.Trim(notHostChar.ReplaceAllString(q, "."), ".")
		return []byte("HTTP/1.1 307 Temporary Redirect\r\nLocation: http://" + host + ".invalid/\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
	case Unsolicited:
		return []byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}" + q + "\r\n")
	case VaultJSON:
		body := `{"errors":["` + jsonEscape(q) + `"]}`
		return []byte(fmt.Sprintf("HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body))
	}
	return []byte("HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n")
}

func jsonEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\t", `\t`).Replace(s)
}
