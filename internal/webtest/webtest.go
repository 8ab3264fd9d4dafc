// Package webtest is a web application that holds an API key behind a
// JSON settings API, the way a WordPress sign-up widget plugin does: the
// target of `http` integration tests.
//
//	GET              /wp-json/signup/v1/settings   Authorization: Bearer <admin token>
//	                 → 200 {"settings": {"action_network_api_key": "...", "list_id": "..."}}
//	PUT, POST, PATCH /wp-json/signup/v1/settings   Authorization, Content-Type: application/json,
//	                 {"action_network_api_key": "..."} → 200 with the settings
//	GET              /wp-json/signup/v1/status     → 200 {"connected": true} when the widget's
//	                 key works upstream, 424 {"code": "upstream_unauthorized", ...} when not
//
// Errors are WordPress REST errors ({"code", "message", "data": {"status"}}).
// Like many real services it echoes the key in its answers (settings, and
// some error messages), so a client that lets a response body into an
// error or a log is caught by leakcheck.
package webtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/rekey-dev/rekey/secret"
)

// Paths and the settings field that holds the key.
const (
	SettingsPath = "/wp-json/signup/v1/settings"
	StatusPath   = "/wp-json/signup/v1/status"
	Field        = "action_network_api_key"
	// Pointer is the RFC 6901 pointer to the key in a settings answer.
	Pointer = "/settings/" + Field
)

// Server is a running widget.
type Server struct {
	URL   string // scheme and host, no trailing slash
	Token string // the admin application password the settings API wants

	srv       *httptest.Server
	done      chan struct{}
	closeOnce sync.Once

	mu       sync.Mutex
	held     secret.Key
	listID   string
	accepted *secret.Key // the key upstream accepts; nil: any non-empty key
	writes   int
	failNext []int
	failPut  []int
	hang     int
	log      bytes.Buffer
}

// New starts a widget holding nothing; it stops when the test ends.
func New(t testing.TB) *Server {
	t.Helper()
	s := Start()
	t.Cleanup(s.Close)
	return s
}

// Start starts a widget outside a test (for a demo); Close stops it.
func Start() *Server {
	s := &Server{Token: "wp-app-password-7Hq2Lm9Xv4", done: make(chan struct{}), listID: "greens-signups"}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	s.URL = s.srv.URL
	return s
}

// Close releases hung requests and stops the widget.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		close(s.done)
		s.srv.Close()
	})
}

// Holds is the key the widget holds now (zero for none).
func (s *Server) Holds() secret.Key {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.held
}

// SetHolds puts a key in place as an administrator would, without counting
// a write.
func (s *Server) SetHolds(k secret.Key) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.held = k
}

// Accept makes the status endpoint report connected only with k.
func (s *Server) Accept(k secret.Key) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.accepted = &k
}

// Writes is how many settings writes were accepted.
func (s *Server) Writes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.writes
}

// FailNext answers the next request with status and a WordPress error
// body that echoes the key the widget holds, whatever the request was.
func (s *Server) FailNext(status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failNext = append(s.failNext, status)
}

// FailNextWrite answers the next settings write (only) like FailNext.
func (s *Server) FailNextWrite(status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failPut = append(s.failPut, status)
}

// HangNext makes the next request wait, unanswered, until the client gives
// up or the test ends.
func (s *Server) HangNext() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hang++
}

// Log is what the widget received: method, path, headers (the admin token
// replaced by <token>) and bodies with the key's slot replaced by <key>.
// Anything else that carries the key shows in it.
func (s *Server) Log() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.log.Bytes())
}

type wpError struct {
	Code    string         `json:"code"`
	Message string         `json:"message"`
	Data    map[string]any `json:"data"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(code)
	w.Write(b)
}

func fail(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, wpError{Code: code, Message: msg, Data: map[string]any{"status": status}})
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	s.record(r, body)

	s.mu.Lock()
	hang := s.hang > 0
	if hang {
		s.hang--
	}
	var failWith int
	if len(s.failNext) > 0 {
		failWith, s.failNext = s.failNext[0], s.failNext[1:]
	} else if len(s.failPut) > 0 && r.URL.Path == SettingsPath && r.Method != http.MethodGet {
		failWith, s.failPut = s.failPut[0], s.failPut[1:]
	}
	held := s.held
	s.mu.Unlock()

	if hang {
		select {
		case <-r.Context().Done():
		case <-s.done:
		}
		return
	}
	if failWith != 0 {
		if failWith == http.StatusTooManyRequests || failWith == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", "1")
		}
		fail(w, failWith, "internal_error", fmt.Sprintf("Action Network refused key %s", held.Reveal()))
		return
	}

	switch {
	case r.URL.Path == SettingsPath && r.Method == http.MethodGet:
		if !s.authorised(w, r) {
			return
		}
		writeJSON(w, http.StatusOK, s.settings())
	case r.URL.Path == SettingsPath && (r.Method == http.MethodPut || r.Method == http.MethodPost || r.Method == http.MethodPatch):
		if !s.authorised(w, r) {
			return
		}
		s.write(w, r, body)
	case r.URL.Path == StatusPath && r.Method == http.MethodGet:
		s.mu.Lock()
		ok := !s.held.IsZero() && (s.accepted == nil || s.held.Equal(*s.accepted))
		s.mu.Unlock()
		if !ok {
			fail(w, http.StatusFailedDependency, "upstream_unauthorized", "Action Network did not accept the widget's API key.")
			return
		}
		writeJSON(w, http.StatusOK, map[string]bool{"connected": true})
	default:
		fail(w, http.StatusNotFound, "rest_no_route", "No route was found matching the URL and request method.")
	}
}

func (s *Server) authorised(w http.ResponseWriter, r *http.Request) bool {
	if r.Header.Get("Authorization") != "Bearer "+s.Token {
		fail(w, http.StatusUnauthorized, "rest_forbidden", "Sorry, you are not allowed to do that.")
		return false
	}
	return true
}

func (s *Server) settings() map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	return map[string]any{"settings": map[string]any{Field: s.held.Reveal(), "list_id": s.listID}}
}

func (s *Server) write(w http.ResponseWriter, r *http.Request, body []byte) {
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		fail(w, http.StatusUnsupportedMediaType, "rest_invalid_content_type", "The settings endpoint takes application/json.")
		return
	}
	var in map[string]any
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&in); err != nil || dec.More() {
		fail(w, http.StatusBadRequest, "rest_invalid_json", "Invalid JSON body passed.")
		return
	}
	for k := range in {
		if k != Field && k != "list_id" {
			fail(w, http.StatusBadRequest, "rest_invalid_param", "Invalid parameter(s): "+k)
			return
		}
	}
	v, ok := in[Field].(string)
	if !ok || v == "" {
		fail(w, http.StatusBadRequest, "rest_invalid_param", fmt.Sprintf("Invalid parameter(s): %s (got %v)", Field, in[Field]))
		return
	}
	s.mu.Lock()
	s.held = secret.New(v)
	if l, ok := in["list_id"].(string); ok {
		s.listID = l
	}
	s.writes++
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, s.settings())
}

func (s *Server) record(r *http.Request, body []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fmt.Fprintf(&s.log, "%s %s\n", r.Method, r.URL.RequestURI())
	for _, name := range slices.Sorted(maps.Keys(r.Header)) {
		v := strings.Join(r.Header[name], ", ")
		if name == "Authorization" {
			v = strings.ReplaceAll(v, s.Token, "<token>")
		}
		fmt.Fprintf(&s.log, "  %s: %s\n", name, v)
	}
	if len(body) == 0 {
		return
	}
	var m map[string]any
	if json.Unmarshal(body, &m) == nil {
		if _, ok := m[Field].(string); ok {
			m[Field] = "<key>"
		}
		body, _ = json.Marshal(m)
	}
	fmt.Fprintf(&s.log, "  body: %s\n", body)
}
