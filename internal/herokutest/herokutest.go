// Package herokutest is a Heroku Platform API (v3) server for tests of the
// heroku integration type: apps and their config vars, with the paths,
// headers, status codes, error bodies and rate-limit header Heroku uses
// (https://devcenter.heroku.com/articles/platform-api-reference).
//
//	GET   /account                      → {"id", "email"}
//	GET   /account/rate-limits          → {"remaining"}
//	GET   /apps/{app}                   → the app
//	GET   /apps/{app}/config-vars       → {"NAME": "value", ...}
//	PATCH /apps/{app}/config-vars       {"NAME": "value" | null, ...} → every config var
//
// A PATCH merges: the names it gives are set (null removes one), every
// other config var stays. A PATCH that changes something makes a new
// release, which restarts the app (Releases counts them). Errors are
// Heroku's {"id", "message"} bodies; every answer carries
// RateLimit-Remaining. A client that omits "Accept:
// application/vnd.heroku+json; version=3" gets Heroku's 400 and fails the
// test.
package herokutest

import (
	"encoding/json"
	"maps"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rekey-dev/rekey/internal/apitest"
	"github.com/rekey-dev/rekey/secret"
)

// Accept is the header Heroku requires.
const Accept = "application/vnd.heroku+json; version=3"

const docs = "https://devcenter.heroku.com/articles/platform-api-reference"

// Server is a running Heroku API test server.
type Server struct {
	*apitest.Base
	// URL is the API base URL: what api_url is set to.
	URL string
	// Email is the account the token belongs to.
	Email string

	srv *httptest.Server

	mu      sync.Mutex
	apps    map[string]*app // by name
	patches int
}

type app struct {
	id       string
	name     string
	vars     map[string]string
	releases int
}

// New starts a server that stops when the test ends. A client that breaks
// the protocol fails the test.
func New(t testing.TB) *Server {
	t.Helper()
	s := start(t)
	t.Cleanup(s.Close)
	return s
}

func start(t testing.TB) *Server {
	s := &Server{Email: "ops@greens.example", apps: map[string]*app{}}
	s.Base = apitest.NewBase(t, "HRKU-"+apitest.RandomID(32), apitest.Hooks{
		Error:     s.writeError,
		Throttled: s.throttled,
		Headers:   func(w http.ResponseWriter) { w.Header().Set("RateLimit-Remaining", "4499") },
		Redact: func(_ *http.Request, body []byte) []byte {
			var vars map[string]*string
			if json.Unmarshal(body, &vars) != nil {
				return []byte("<not a JSON object>")
			}
			out := map[string]string{}
			for k := range vars {
				out[k] = "<redacted>"
			}
			return apitest.Marshal(out)
		},
	})
	s.srv = httptest.NewServer(s.Handler(s.route))
	s.URL = s.srv.URL + "/"
	return s
}

// Close stops the server.
func (s *Server) Close() {
	s.Base.Close()
	s.srv.Close()
}

// AddApp makes an app exist, with config vars (which may be nil).
func (s *Server) AddApp(name string, vars map[string]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := &app{id: uuid(), name: name, vars: map[string]string{}}
	maps.Copy(a.vars, vars)
	s.apps[name] = a
}

// SetVar sets a config var as someone other than rekey would (no release
// is counted).
func (s *Server) SetVar(appName, name, value string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.apps[appName].vars[name] = value
}

// DeleteVar removes a config var.
func (s *Server) DeleteVar(appName, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.apps[appName].vars, name)
}

// Var is what a config var holds.
func (s *Server) Var(appName, name string) (secret.Key, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.apps[appName].vars[name]
	return secret.New(v), ok
}

// Vars is a copy of an app's config vars.
func (s *Server) Vars(appName string) map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.apps[appName].vars)
}

// Releases is how many releases config changes made (each restarts the app).
func (s *Server) Releases(appName string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.apps[appName].releases
}

// Patches is how many config-var writes the server accepted.
func (s *Server) Patches() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.patches
}

type apiError struct {
	ID       string `json:"id"`
	Message  string `json:"message"`
	URL      string `json:"url,omitempty"`
	Resource string `json:"resource,omitempty"`
}

func (s *Server) writeError(w http.ResponseWriter, r *http.Request, code int) {
	e := apiError{}
	switch code {
	case http.StatusBadRequest:
		e = apiError{ID: "bad_request", Message: "Invalid request."}
	case http.StatusUnauthorized:
		e = apiError{ID: "unauthorized", Message: "Invalid credentials provided."}
	case http.StatusForbidden:
		e = apiError{ID: "forbidden", Message: "You do not have access to the app."}
	case http.StatusNotFound:
		e = apiError{ID: "not_found", Message: "Couldn't find that app.", Resource: "app"}
	case http.StatusConflict:
		e = apiError{ID: "conflict", Message: "A release is already being created for this app; try again."}
	case http.StatusPreconditionFailed:
		e = apiError{ID: "precondition_failed", Message: "The resource has been modified."}
	case http.StatusUnprocessableEntity:
		e = apiError{ID: "invalid_params", Message: "Invalid params."}
	case http.StatusTooManyRequests:
		s.throttled(w, r, 0)
		return
	case http.StatusServiceUnavailable:
		e = apiError{ID: "unavailable", Message: "API is temporarily unavailable."}
	default:
		e = apiError{ID: "internal_server_error", Message: "Internal server error."}
	}
	apitest.WriteJSON(w, code, e)
}

func (s *Server) throttled(w http.ResponseWriter, _ *http.Request, _ time.Duration) {
	w.Header().Set("RateLimit-Remaining", "0")
	apitest.WriteJSON(w, http.StatusTooManyRequests, apiError{
		ID: "rate_limit", Message: "Your account reached the API rate limit\nPlease wait a few minutes before making new requests", URL: docs + "#rate-limits",
	})
}

var nameRE = regexp.MustCompile(`^\w+$`)

func (s *Server) route(w http.ResponseWriter, r *http.Request, body []byte) {
	if got := r.Header.Get("Accept"); got != Accept {
		s.Report("herokutest: %s %s: Accept is %q, want %q", r.Method, r.URL.Path, got, Accept)
		apitest.WriteJSON(w, http.StatusBadRequest, apiError{ID: "bad_request", Message: "Please specify a version. Add \"Accept: " + Accept + "\" header to specify a version."})
		return
	}
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	switch {
	case len(parts) == 1 && parts[0] == "account" && r.Method == http.MethodGet:
		apitest.WriteJSON(w, http.StatusOK, map[string]any{"id": "01234567-89ab-cdef-0123-456789abcdef", "email": s.Email})
	case len(parts) == 2 && parts[0] == "account" && parts[1] == "rate-limits" && r.Method == http.MethodGet:
		apitest.WriteJSON(w, http.StatusOK, map[string]int{"remaining": 4499})
	case len(parts) >= 2 && parts[0] == "apps":
		s.mu.Lock()
		defer s.mu.Unlock()
		a := s.app(parts[1])
		if a == nil {
			s.writeError(w, r, http.StatusNotFound)
			return
		}
		switch {
		case len(parts) == 2 && r.Method == http.MethodGet:
			apitest.WriteJSON(w, http.StatusOK, map[string]any{
				"id": a.id, "name": a.name, "owner": map[string]string{"email": s.Email}, "team": nil,
				"web_url": "https://" + a.name + ".herokuapp.com/",
			})
		case len(parts) == 3 && parts[2] == "config-vars" && r.Method == http.MethodGet:
			apitest.WriteJSON(w, http.StatusOK, a.vars)
		case len(parts) == 3 && parts[2] == "config-vars" && r.Method == http.MethodPatch:
			s.patch(w, r, a, body)
		case len(parts) <= 3:
			apitest.WriteJSON(w, http.StatusMethodNotAllowed, apiError{ID: "method_not_allowed", Message: "Method not allowed."})
		default:
			s.writeError(w, r, http.StatusNotFound)
		}
	default:
		apitest.WriteJSON(w, http.StatusNotFound, apiError{ID: "not_found", Message: "The requested API endpoint was not found. Are you using the right HTTP verb (i.e. `GET` vs. `POST`), and did you specify your intended version with the `Accept` header?"})
	}
}

// app finds an app by name or id; the caller holds mu.
func (s *Server) app(ident string) *app {
	if a := s.apps[ident]; a != nil {
		return a
	}
	for _, a := range s.apps {
		if a.id == ident {
			return a
		}
	}
	return nil
}

func (s *Server) patch(w http.ResponseWriter, r *http.Request, a *app, body []byte) {
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		s.Report("herokutest: PATCH %s: Content-Type is %q, want application/json", r.URL.Path, ct)
	}
	var change map[string]*string
	if err := json.Unmarshal(body, &change); err != nil {
		apitest.WriteJSON(w, http.StatusBadRequest, apiError{ID: "bad_request", Message: "Invalid JSON."})
		return
	}
	for k := range change {
		if !nameRE.MatchString(k) {
			apitest.WriteJSON(w, http.StatusUnprocessableEntity, apiError{ID: "invalid_params", Message: "Invalid params: config var name " + strconv.Quote(k) + " does not match ^\\w+$."})
			return
		}
	}
	changed := false
	for k, v := range change {
		old, had := a.vars[k]
		switch {
		case v == nil && had:
			delete(a.vars, k)
			changed = true
		case v != nil && (!had || old != *v):
			a.vars[k] = *v
			changed = true
		}
	}
	s.patches++
	if changed {
		a.releases++
	}
	apitest.WriteJSON(w, http.StatusOK, a.vars)
}

func uuid() string {
	id := apitest.RandomID(32)
	const hex = "0123456789abcdef"
	b := []byte(id)
	for i, c := range b {
		b[i] = hex[int(c)%16]
	}
	s := string(b)
	return s[:8] + "-" + s[8:12] + "-" + s[12:16] + "-" + s[16:20] + "-" + s[20:]
}
