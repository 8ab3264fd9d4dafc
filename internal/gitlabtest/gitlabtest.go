// Package gitlabtest is a GitLab REST API (v4) server for tests of the
// gitlab integration type: projects and their CI/CD variables, with the
// paths, status codes, error bodies, pagination and rate-limit headers of
// https://docs.gitlab.com/api/project_level_variables/.
//
//	GET  /api/v4/projects/:id                       → the project, with the token user's permissions
//	GET  /api/v4/projects/:id/variables?page&per_page → a page of variables (X-Total, X-Next-Page, Link)
//	POST /api/v4/projects/:id/variables             {key, value, environment_scope, masked, masked_and_hidden, raw, protected} → 201
//	GET  /api/v4/projects/:id/variables/:key?filter[environment_scope]=… → the variable
//	PUT  /api/v4/projects/:id/variables/:key?filter[environment_scope]=… {value, …} → the variable
//
// :id is a numeric id or a URL-encoded full path. A token is accepted in
// PRIVATE-TOKEN or as "Authorization: Bearer". A hidden variable's value is
// answered null; its masking cannot be changed. Without a filter, a key
// held in several environment scopes is a 409, as GitLab answers. Creating
// a variable that exists is GitLab's 400 "has already been taken". Errors
// are {"message": …}; every answer carries RateLimit-* headers, and a 429
// is "Retry later" with Retry-After.
package gitlabtest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rekey-dev/rekey/internal/apitest"
	"github.com/rekey-dev/rekey/secret"
)

// Variable is the test's view of one CI/CD variable.
type Variable struct {
	Key       string
	Value     string
	Scope     string // environment_scope; "*" when empty
	Masked    bool
	Hidden    bool
	Protected bool
	Raw       bool
}

// Server is a running GitLab API test server.
type Server struct {
	*apitest.Base
	// URL is the API base URL (ending in /api/v4/): what api_url is set to.
	URL string

	srv *httptest.Server

	mu       sync.Mutex
	projects []*project
	writes   int
	race     *Variable
}

type project struct {
	id     int
	path   string
	access int
	vars   []*Variable
}

// New starts a server that stops when the test ends.
func New(t testing.TB) *Server {
	t.Helper()
	s := &Server{}
	s.Base = apitest.NewBase(t, "glpat-"+apitest.RandomID(20), apitest.Hooks{
		Authorized: func(r *http.Request, token string) bool {
			return r.Header.Get("PRIVATE-TOKEN") == token || r.Header.Get("Authorization") == "Bearer "+token
		},
		Error:     s.writeError,
		Throttled: throttled,
		Headers: func(w http.ResponseWriter) {
			w.Header().Set("RateLimit-Limit", "2000")
			w.Header().Set("RateLimit-Observed", "1")
			w.Header().Set("RateLimit-Remaining", "1999")
			w.Header().Set("RateLimit-Reset", strconv.FormatInt(time.Now().Add(time.Minute).Unix(), 10))
		},
		Redact:      func(_ *http.Request, body []byte) []byte { return apitest.RedactJSON(body, "value") },
		Credentials: []string{"PRIVATE-TOKEN"},
	})
	s.srv = httptest.NewServer(s.Handler(s.route))
	s.URL = s.srv.URL + "/api/v4/"
	t.Cleanup(func() { s.Base.Close(); s.srv.Close() })
	return s
}

// AddProject makes a project exist at path, where the token's user has
// access level access (40 Maintainer, 30 Developer), and returns its id.
func (s *Server) AddProject(path string, access int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := &project{id: 4711 + len(s.projects), path: path, access: access}
	s.projects = append(s.projects, p)
	return p.id
}

// SetVariable creates or replaces a variable (matched by key and scope)
// as someone other than rekey would.
func (s *Server) SetVariable(path string, v Variable) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v.Scope == "" {
		v.Scope = "*"
	}
	p := s.find(path)
	if old := p.variable(v.Key, v.Scope); old != nil {
		*old = v
		return
	}
	p.vars = append(p.vars, &v)
}

// Variable is the variable with key in scope.
func (s *Server) Variable(path, key, scope string) (Variable, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v := s.find(path).variable(key, scope); v != nil {
		return *v, true
	}
	return Variable{}, false
}

// Holds is what a variable holds.
func (s *Server) Holds(path, key, scope string) secret.Key {
	v, _ := s.Variable(path, key, scope)
	return secret.New(v.Value)
}

// Variables is a copy of every variable of a project.
func (s *Server) Variables(path string) []Variable {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Variable
	for _, v := range s.find(path).vars {
		out = append(out, *v)
	}
	return out
}

// Writes is how many variable writes (creations and updates) were accepted.
func (s *Server) Writes() int { s.mu.Lock(); defer s.mu.Unlock(); return s.writes }

// CreateRace makes someone else create v just before the server handles
// the next request that creates a variable.
func (s *Server) CreateRace(v Variable) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.race = &v
}

func (s *Server) find(ident string) *project {
	for _, p := range s.projects {
		if p.path == ident || strconv.Itoa(p.id) == ident {
			return p
		}
	}
	return nil
}

func (p *project) variable(key, scope string) *Variable {
	for _, v := range p.vars {
		if v.Key == key && v.Scope == scope {
			return v
		}
	}
	return nil
}

func message(w http.ResponseWriter, code int, msg any) {
	apitest.WriteJSON(w, code, map[string]any{"message": msg})
}

func (s *Server) writeError(w http.ResponseWriter, r *http.Request, code int) {
	switch code {
	case http.StatusTooManyRequests:
		throttled(w, r, time.Second)
	case http.StatusInternalServerError:
		message(w, code, "500 Internal Server Error")
	default:
		message(w, code, fmt.Sprintf("%d %s", code, http.StatusText(code)))
	}
}

func throttled(w http.ResponseWriter, _ *http.Request, wait time.Duration) {
	secs := max(1, int(wait.Round(time.Second)/time.Second))
	reset := time.Now().Add(time.Duration(secs) * time.Second)
	w.Header().Set("RateLimit-Remaining", "0")
	w.Header().Set("RateLimit-Reset", strconv.FormatInt(reset.Unix(), 10))
	w.Header().Set("RateLimit-ResetTime", reset.UTC().Format(http.TimeFormat))
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	w.Header().Set("Content-Type", "text/plain")
	w.WriteHeader(http.StatusTooManyRequests)
	w.Write([]byte("Retry later\n"))
}

var keyRE = regexp.MustCompile(`^[A-Za-z0-9_]{1,255}$`)

// maskable is GitLab's rule for a masked value: one line, at least 8
// characters, from the Base64 alphabet and @ : . ~ - _ + / =.
var maskable = regexp.MustCompile(`^[A-Za-z0-9@:.~\-_+/=]{8,}$`)

func (s *Server) route(w http.ResponseWriter, r *http.Request, body []byte) {
	rest, ok := strings.CutPrefix(r.URL.EscapedPath(), "/api/v4/projects/")
	if !ok {
		message(w, http.StatusNotFound, "404 Not Found")
		return
	}
	parts := strings.Split(rest, "/")
	for i, p := range parts {
		u, err := url.PathUnescape(p)
		if err != nil {
			message(w, http.StatusBadRequest, "400 Bad request")
			return
		}
		parts[i] = u
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.find(parts[0])
	if p == nil {
		message(w, http.StatusNotFound, "404 Project Not Found")
		return
	}
	if len(parts) == 1 && r.Method == http.MethodGet {
		apitest.WriteJSON(w, http.StatusOK, map[string]any{
			"id": p.id, "path_with_namespace": p.path, "name": p.path[strings.LastIndex(p.path, "/")+1:],
			"permissions": map[string]any{"project_access": map[string]int{"access_level": p.access, "notification_level": 3}, "group_access": nil},
		})
		return
	}
	if len(parts) < 2 || parts[1] != "variables" || len(parts) > 3 {
		message(w, http.StatusNotFound, "404 Not Found")
		return
	}
	if p.access < 40 {
		message(w, http.StatusForbidden, "403 Forbidden")
		return
	}
	if (r.Method == http.MethodPost || r.Method == http.MethodPut) && !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		s.Report("gitlabtest: %s %s: Content-Type is %q, want application/json", r.Method, r.URL.Path, r.Header.Get("Content-Type"))
	}
	switch {
	case len(parts) == 2 && r.Method == http.MethodGet:
		s.list(w, r, p)
	case len(parts) == 2 && r.Method == http.MethodPost:
		s.create(w, p, body)
	case len(parts) == 3 && (r.Method == http.MethodGet || r.Method == http.MethodPut):
		v, code, msg := s.pick(r, p, parts[2])
		if v == nil {
			message(w, code, msg)
			return
		}
		if r.Method == http.MethodPut {
			s.update(w, v, body)
			return
		}
		apitest.WriteJSON(w, http.StatusOK, view(v))
	default:
		message(w, http.StatusMethodNotAllowed, "405 Method Not Allowed")
	}
}

// pick finds the variable a request names, with GitLab's filter rules.
func (s *Server) pick(r *http.Request, p *project, key string) (*Variable, int, string) {
	scope, filtered := r.URL.Query()["filter[environment_scope]"]
	var found []*Variable
	for _, v := range p.vars {
		if v.Key == key && (!filtered || v.Scope == scope[0]) {
			found = append(found, v)
		}
	}
	switch len(found) {
	case 0:
		return nil, http.StatusNotFound, "404 Variable Not Found"
	case 1:
		return found[0], 0, ""
	}
	return nil, http.StatusConflict, "There are multiple variables with provided parameters. Please use 'filter[environment_scope]'"
}

func view(v *Variable) map[string]any {
	out := map[string]any{
		"variable_type": "env_var", "key": v.Key, "value": v.Value, "protected": v.Protected,
		"masked": v.Masked, "hidden": v.Hidden, "raw": v.Raw, "environment_scope": v.Scope, "description": nil,
	}
	if v.Hidden {
		out["value"] = nil
	}
	return out
}

func (s *Server) create(w http.ResponseWriter, p *project, body []byte) {
	var in struct {
		Key             string  `json:"key"`
		Value           *string `json:"value"`
		Scope           string  `json:"environment_scope"`
		Masked          bool    `json:"masked"`
		MaskedAndHidden bool    `json:"masked_and_hidden"`
		Protected       bool    `json:"protected"`
		Raw             bool    `json:"raw"`
		Type            string  `json:"variable_type"`
	}
	if err := json.Unmarshal(body, &in); err != nil {
		message(w, http.StatusBadRequest, "400 Bad request - invalid JSON")
		return
	}
	if s.race != nil {
		v := *s.race
		s.race = nil
		if v.Scope == "" {
			v.Scope = "*"
		}
		p.vars = append(p.vars, &v)
	}
	if in.Scope == "" {
		in.Scope = "*"
	}
	switch {
	case in.Value == nil:
		message(w, http.StatusBadRequest, "400 Bad request - value is missing")
		return
	case !keyRE.MatchString(in.Key):
		message(w, http.StatusBadRequest, map[string][]string{"key": {"can contain only letters, digits and '_'."}})
		return
	case p.variable(in.Key, in.Scope) != nil:
		message(w, http.StatusBadRequest, map[string][]string{"key": {"(" + in.Key + ") has already been taken"}})
		return
	case (in.Masked || in.MaskedAndHidden) && !maskable.MatchString(*in.Value):
		message(w, http.StatusBadRequest, map[string][]string{"value": {"is invalid"}})
		return
	}
	v := &Variable{Key: in.Key, Value: *in.Value, Scope: in.Scope, Masked: in.Masked || in.MaskedAndHidden, Hidden: in.MaskedAndHidden, Protected: in.Protected, Raw: in.Raw}
	p.vars = append(p.vars, v)
	s.writes++
	apitest.WriteJSON(w, http.StatusCreated, view(v))
}

func (s *Server) update(w http.ResponseWriter, v *Variable, body []byte) {
	var in map[string]json.RawMessage
	if err := json.Unmarshal(body, &in); err != nil {
		message(w, http.StatusBadRequest, "400 Bad request - invalid JSON")
		return
	}
	if _, ok := in["masked"]; ok && v.Hidden {
		message(w, http.StatusBadRequest, "The visibility setting cannot be changed for masked and hidden variables.")
		return
	}
	next := *v
	for k, raw := range in {
		var err error
		switch k {
		case "value":
			err = json.Unmarshal(raw, &next.Value)
		case "masked":
			err = json.Unmarshal(raw, &next.Masked)
		case "protected":
			err = json.Unmarshal(raw, &next.Protected)
		case "raw":
			err = json.Unmarshal(raw, &next.Raw)
		case "environment_scope":
			err = json.Unmarshal(raw, &next.Scope)
		case "variable_type", "description", "filter":
		default:
			s.Report("gitlabtest: PUT variable %s: unknown parameter %q", v.Key, k)
		}
		if err != nil {
			message(w, http.StatusBadRequest, "400 Bad request - "+k+" is invalid")
			return
		}
	}
	if next.Masked && !maskable.MatchString(next.Value) {
		message(w, http.StatusBadRequest, map[string][]string{"value": {"is invalid"}})
		return
	}
	*v = next
	s.writes++
	apitest.WriteJSON(w, http.StatusOK, view(v))
}

// list answers a page of variables with GitLab's pagination headers.
func (s *Server) list(w http.ResponseWriter, r *http.Request, p *project) {
	page, perPage := 1, 20
	if n, err := strconv.Atoi(r.URL.Query().Get("page")); err == nil && n > 0 {
		page = n
	}
	if n, err := strconv.Atoi(r.URL.Query().Get("per_page")); err == nil && n > 0 {
		perPage = min(n, 100)
	}
	out := []map[string]any{}
	for i := (page - 1) * perPage; i < len(p.vars) && i < page*perPage; i++ {
		out = append(out, view(p.vars[i]))
	}
	w.Header().Set("X-Page", strconv.Itoa(page))
	w.Header().Set("X-Per-Page", strconv.Itoa(perPage))
	w.Header().Set("X-Total", strconv.Itoa(len(p.vars)))
	if page*perPage < len(p.vars) {
		w.Header().Set("X-Next-Page", strconv.Itoa(page+1))
		next := *r.URL
		q := next.Query()
		q.Set("page", strconv.Itoa(page+1))
		next.RawQuery = q.Encode()
		w.Header().Set("Link", fmt.Sprintf(`<%s%s>; rel="next"`, s.srv.URL, next.RequestURI()))
	}
	apitest.WriteJSON(w, http.StatusOK, out)
}
