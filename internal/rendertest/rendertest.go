// Package rendertest is a Render REST API (v1) server for tests of the
// render integration type: services, their environment variables and
// deploys, with the paths, status codes, error bodies, pagination and
// rate-limit headers of https://api-docs.render.com.
//
//	GET    /v1/services/{id}                       → the service
//	GET    /v1/services/{id}/env-vars?limit&cursor → [{"envVar": {"key", "value"}, "cursor"}]
//	PUT    /v1/services/{id}/env-vars              [{"key", "value"}] → replaces every variable
//	GET    /v1/services/{id}/env-vars/{key}        → {"key", "value"}
//	PUT    /v1/services/{id}/env-vars/{key}        {"value"} → {"key", "value"}
//	DELETE /v1/services/{id}/env-vars/{key}        → 204
//	POST   /v1/services/{id}/deploys               {"clearCache"} → 201 the deploy
//
// Errors are {"id", "message"}; every answer carries Ratelimit-Limit,
// Ratelimit-Remaining and Ratelimit-Reset (seconds until the window
// resets), and a 429 says when to come back.
package rendertest

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rekey-dev/rekey/internal/apitest"
	"github.com/rekey-dev/rekey/secret"
)

// Server is a running Render API test server.
type Server struct {
	*apitest.Base
	// URL is the API base URL (ending in /v1/): what api_url is set to.
	URL string

	srv *httptest.Server

	mu           sync.Mutex
	services     map[string]*service
	writes       int
	bulkReplaces int
	failDeploys  int
}

type envVar struct{ key, value string }

type service struct {
	id, name  string
	suspended bool
	vars      []envVar
	deploys   int
}

// New starts a server that stops when the test ends.
func New(t testing.TB) *Server {
	t.Helper()
	s := &Server{services: map[string]*service{}}
	s.Base = apitest.NewBase(t, "rnd_"+apitest.RandomID(28), apitest.Hooks{
		Error:     s.writeError,
		Throttled: throttled,
		Headers: func(w http.ResponseWriter) {
			w.Header().Set("Ratelimit-Limit", "30")
			w.Header().Set("Ratelimit-Remaining", "29")
			w.Header().Set("Ratelimit-Reset", "60")
		},
		Redact: func(_ *http.Request, body []byte) []byte { return apitest.RedactJSON(body, "value") },
	})
	s.srv = httptest.NewServer(s.Handler(s.route))
	s.URL = s.srv.URL + "/v1/"
	t.Cleanup(func() { s.Base.Close(); s.srv.Close() })
	return s
}

// AddService makes a service exist, with variables in order (key, value, key, value, …).
func (s *Server) AddService(id, name string, kv ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sv := &service{id: id, name: name}
	for i := 0; i+1 < len(kv); i += 2 {
		sv.vars = append(sv.vars, envVar{kv[i], kv[i+1]})
	}
	s.services[id] = sv
}

// Suspend suspends a service.
func (s *Server) Suspend(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.services[id].suspended = true
}

// SetVar sets a variable as someone other than rekey would.
func (s *Server) SetVar(id, key, value string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.services[id].set(key, value)
}

// DeleteVar removes a variable.
func (s *Server) DeleteVar(id, key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sv := s.services[id]
	sv.vars = slices.DeleteFunc(sv.vars, func(v envVar) bool { return v.key == key })
}

// Var is what a variable holds.
func (s *Server) Var(id, key string) (secret.Key, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range s.services[id].vars {
		if v.key == key {
			return secret.New(v.value), true
		}
	}
	return secret.Key{}, false
}

// Vars lists a service's variables in order, as "KEY=value".
func (s *Server) Vars(id string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, v := range s.services[id].vars {
		out = append(out, v.key+"="+v.value)
	}
	return out
}

// Writes is how many single-variable writes were accepted.
func (s *Server) Writes() int { s.mu.Lock(); defer s.mu.Unlock(); return s.writes }

// BulkReplaces is how many times every variable of a service was replaced.
func (s *Server) BulkReplaces() int { s.mu.Lock(); defer s.mu.Unlock(); return s.bulkReplaces }

// FailDeploys answers the next n deploy requests 503.
func (s *Server) FailDeploys(n int) { s.mu.Lock(); defer s.mu.Unlock(); s.failDeploys = n }

// Deploys is how many deploys of a service were started.
func (s *Server) Deploys(id string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.services[id].deploys
}

func (sv *service) set(key, value string) {
	for i, v := range sv.vars {
		if v.key == key {
			sv.vars[i].value = value
			return
		}
	}
	sv.vars = append(sv.vars, envVar{key, value})
}

type apiError struct {
	ID      string `json:"id,omitempty"`
	Message string `json:"message"`
}

func (s *Server) writeError(w http.ResponseWriter, r *http.Request, code int) {
	msg := map[int]string{
		400: "invalid request", 401: "unauthorized", 403: "forbidden", 404: "not found",
		409: "conflict: the resource was modified concurrently", 412: "precondition failed",
		429: "rate limit exceeded", 500: "internal server error", 503: "service unavailable",
	}[code]
	if code == http.StatusTooManyRequests {
		throttled(w, r, time.Second)
		return
	}
	if msg == "" {
		msg = strings.ToLower(http.StatusText(code))
	}
	apitest.WriteJSON(w, code, apiError{ID: apitest.RandomID(8), Message: msg})
}

func throttled(w http.ResponseWriter, _ *http.Request, wait time.Duration) {
	w.Header().Set("Ratelimit-Remaining", "0")
	w.Header().Set("Ratelimit-Reset", strconv.Itoa(max(1, int(wait.Round(time.Second)/time.Second))))
	apitest.WriteJSON(w, http.StatusTooManyRequests, apiError{Message: "rate limit exceeded"})
}

func (s *Server) route(w http.ResponseWriter, r *http.Request, body []byte) {
	path, ok := strings.CutPrefix(r.URL.EscapedPath(), "/v1/services/")
	if !ok {
		s.writeError(w, r, http.StatusNotFound)
		return
	}
	parts := strings.Split(path, "/")
	for i, p := range parts {
		u, err := url.PathUnescape(p)
		if err != nil {
			s.writeError(w, r, http.StatusBadRequest)
			return
		}
		parts[i] = u
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sv := s.services[parts[0]]
	if sv == nil {
		apitest.WriteJSON(w, http.StatusNotFound, apiError{ID: apitest.RandomID(8), Message: "service not found"})
		return
	}
	jsonBody := func() bool {
		if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			s.Report("rendertest: %s %s: Content-Type is %q, want application/json", r.Method, r.URL.Path, ct)
			return false
		}
		return true
	}
	switch {
	case len(parts) == 1 && r.Method == http.MethodGet:
		susp := "not_suspended"
		if sv.suspended {
			susp = "suspended"
		}
		apitest.WriteJSON(w, http.StatusOK, map[string]any{"id": sv.id, "name": sv.name, "type": "web_service", "suspended": susp, "autoDeploy": "yes"})
	case len(parts) == 2 && parts[1] == "env-vars" && r.Method == http.MethodGet:
		s.list(w, r, sv)
	case len(parts) == 2 && parts[1] == "env-vars" && r.Method == http.MethodPut:
		var in []struct{ Key, Value string }
		if !jsonBody() || json.Unmarshal(body, &in) != nil {
			s.writeError(w, r, http.StatusBadRequest)
			return
		}
		sv.vars = nil
		for _, v := range in {
			sv.vars = append(sv.vars, envVar{v.Key, v.Value})
		}
		s.bulkReplaces++
		s.list(w, r, sv)
	case len(parts) == 3 && parts[1] == "env-vars" && r.Method == http.MethodGet:
		for _, v := range sv.vars {
			if v.key == parts[2] {
				apitest.WriteJSON(w, http.StatusOK, map[string]string{"key": v.key, "value": v.value})
				return
			}
		}
		apitest.WriteJSON(w, http.StatusNotFound, apiError{ID: apitest.RandomID(8), Message: "env var not found"})
	case len(parts) == 3 && parts[1] == "env-vars" && r.Method == http.MethodPut:
		var in map[string]json.RawMessage
		var value string
		if !jsonBody() || json.Unmarshal(body, &in) != nil || json.Unmarshal(in["value"], &value) != nil {
			apitest.WriteJSON(w, http.StatusBadRequest, apiError{Message: "value: must be a string"})
			return
		}
		for k := range in {
			if k != "value" {
				s.Report("rendertest: PUT %s: unexpected field %q", r.URL.Path, k)
			}
		}
		sv.set(parts[2], value)
		s.writes++
		apitest.WriteJSON(w, http.StatusOK, map[string]string{"key": parts[2], "value": value})
	case len(parts) == 3 && parts[1] == "env-vars" && r.Method == http.MethodDelete:
		sv.vars = slices.DeleteFunc(sv.vars, func(v envVar) bool { return v.key == parts[2] })
		w.WriteHeader(http.StatusNoContent)
	case len(parts) == 2 && parts[1] == "deploys" && r.Method == http.MethodPost:
		if len(body) > 0 {
			jsonBody()
		}
		if s.failDeploys > 0 {
			s.failDeploys--
			s.writeError(w, r, http.StatusServiceUnavailable)
			return
		}
		if sv.suspended {
			apitest.WriteJSON(w, http.StatusBadRequest, apiError{Message: "cannot deploy a suspended service"})
			return
		}
		sv.deploys++
		now := time.Now().UTC().Format(time.RFC3339Nano)
		apitest.WriteJSON(w, http.StatusCreated, map[string]any{
			"id": "dep-" + apitest.RandomID(20), "status": "created", "trigger": "api",
			"createdAt": now, "updatedAt": now,
		})
	default:
		s.writeError(w, r, http.StatusNotFound)
	}
}

// list answers a page of variables: limit (1–100, default 20) from cursor.
func (s *Server) list(w http.ResponseWriter, r *http.Request, sv *service) {
	limit := 20
	if l, err := strconv.Atoi(r.URL.Query().Get("limit")); err == nil && l > 0 {
		limit = min(l, 100)
	}
	start := 0
	if c := r.URL.Query().Get("cursor"); c != "" {
		b, err := base64.RawURLEncoding.DecodeString(c)
		if n, err2 := strconv.Atoi(string(b)); err != nil || err2 != nil {
			apitest.WriteJSON(w, http.StatusBadRequest, apiError{Message: "invalid cursor"})
			return
		} else {
			start = n + 1
		}
	}
	out := []map[string]any{}
	for i := start; i < len(sv.vars) && len(out) < limit; i++ {
		out = append(out, map[string]any{
			"envVar": map[string]string{"key": sv.vars[i].key, "value": sv.vars[i].value},
			"cursor": base64.RawURLEncoding.EncodeToString([]byte(fmt.Sprint(i))),
		})
	}
	apitest.WriteJSON(w, http.StatusOK, out)
}
