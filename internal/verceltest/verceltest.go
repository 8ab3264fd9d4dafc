// Package verceltest is a Vercel REST API server for tests of the vercel
// integration type: projects (of a team or of the token's own account),
// their environment variables and deployments, with the paths, query
// parameters, status codes, error bodies and rate-limit headers of
// https://vercel.com/docs/rest-api.
//
//	GET   /v9/projects/{idOrName}                 → the project
//	GET   /v10/projects/{idOrName}/env             → {"envs": [...], "pagination"} (values encrypted)
//	POST  /v10/projects/{idOrName}/env[?upsert=true] {key, value, type, target} → 201 {"created", "failed"}
//	GET   /v1/projects/{idOrName}/env/{id}         → the entry, decrypted (not when sensitive)
//	PATCH /v9/projects/{idOrName}/env/{id}         {value, …} → the entry
//	GET   /v7/deployments?projectId&target&state&limit → {"deployments": [...], "pagination"}
//	POST  /v13/deployments                          {name, deploymentId, target} → the new deployment
//
// A team's project answers only with ?teamId= or ?slug= of its team;
// otherwise it is not found, as on Vercel. The listing never holds a
// decrypted value of an encrypted or sensitive entry; a sensitive entry is
// never decrypted. With upsert=true a POST updates the one entry of the
// key serving one of the given targets (its value, type and targets), and
// creates one when none does; without it an existing entry is a 400
// ENV_ALREADY_EXISTS. An invalid token is a 403, as Vercel answers. Errors
// are {"error": {"code", "message"}}; every answer carries
// X-RateLimit-Limit, X-RateLimit-Remaining and X-RateLimit-Reset (a Unix
// time).
package verceltest

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
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

// Env is the test's view of one environment variable entry.
type Env struct {
	ID        string
	Key       string
	Value     string
	Type      string // plain, encrypted, sensitive
	Target    []string
	GitBranch string
	UpdatedAt time.Time
}

// Server is a running Vercel API test server.
type Server struct {
	*apitest.Base
	// URL is the API base URL: what api_url is set to.
	URL string
	// TeamID and TeamSlug are the team's.
	TeamID, TeamSlug string

	srv *httptest.Server

	mu            sync.Mutex
	projects      []*project
	writes        int
	nextID        int
	failRedeploys int
	sensitive     bool
}

type project struct {
	id, name    string
	team        bool
	envs        []*Env
	deployments []string // uids, latest last
	redeploys   int
}

// New starts a server that stops when the test ends.
func New(t testing.TB) *Server {
	t.Helper()
	s := &Server{TeamID: "team_" + apitest.RandomID(24), TeamSlug: "greens"}
	s.Base = apitest.NewBase(t, apitest.RandomID(24), apitest.Hooks{
		Error:     s.writeError,
		Throttled: throttled,
		Headers: func(w http.ResponseWriter) {
			w.Header().Set("X-RateLimit-Limit", "100")
			w.Header().Set("X-RateLimit-Remaining", "99")
			w.Header().Set("X-RateLimit-Reset", strconv.FormatInt(time.Now().Add(time.Minute).Unix(), 10))
		},
		Redact: func(_ *http.Request, body []byte) []byte { return apitest.RedactJSON(body, "value") },
	})
	s.srv = httptest.NewServer(s.Handler(s.route))
	s.URL = s.srv.URL + "/"
	t.Cleanup(func() { s.Base.Close(); s.srv.Close() })
	return s
}

// AddProject makes a project exist, of the team or of the token's own
// account, with one ready production deployment; it returns its id.
func (s *Server) AddProject(name string, team bool) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := &project{id: "prj_" + apitest.RandomID(28), name: name, team: team, deployments: []string{"dpl_" + apitest.RandomID(28)}}
	s.projects = append(s.projects, p)
	return p.id
}

// SetEnv adds an entry (or replaces the one with its ID) as someone other
// than rekey would, and returns its id. A zero UpdatedAt is now.
func (s *Server) SetEnv(projectName string, e Env) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.byName(projectName)
	if e.UpdatedAt.IsZero() {
		e.UpdatedAt = time.Now()
	}
	if e.ID == "" {
		s.nextID++
		e.ID = "env" + strconv.Itoa(s.nextID) + apitest.RandomID(12)
	}
	for i, old := range p.envs {
		if old.ID == e.ID {
			p.envs[i] = &e
			return e.ID
		}
	}
	p.envs = append(p.envs, &e)
	return e.ID
}

// Envs is a copy of a project's entries.
func (s *Server) Envs(projectName string) []Env {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Env
	for _, e := range s.byName(projectName).envs {
		c := *e
		c.Target = slices.Clone(e.Target)
		out = append(out, c)
	}
	return out
}

// Holds is what the entry of key serving target holds.
func (s *Server) Holds(projectName, key, target string) secret.Key {
	for _, e := range s.Envs(projectName) {
		if e.Key == key && e.GitBranch == "" && slices.Contains(e.Target, target) {
			return secret.New(e.Value)
		}
	}
	return secret.Key{}
}

// Writes is how many entry writes were accepted.
func (s *Server) Writes() int { s.mu.Lock(); defer s.mu.Unlock(); return s.writes }

// Redeploys is how many redeployments of a project were started.
func (s *Server) Redeploys(projectName string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.byName(projectName).redeploys
}

// EnforceSensitive turns on the team policy "Enforce Sensitive Environment
// Variables": every variable written for production or preview is stored
// sensitive, whatever type the request asked for.
func (s *Server) EnforceSensitive() { s.mu.Lock(); defer s.mu.Unlock(); s.sensitive = true }

// FailRedeploys answers the next n redeploy requests 500.
func (s *Server) FailRedeploys(n int) { s.mu.Lock(); defer s.mu.Unlock(); s.failRedeploys = n }

// NoDeployments removes a project's deployments.
func (s *Server) NoDeployments(projectName string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.byName(projectName).deployments = nil
}

func (s *Server) byName(name string) *project {
	for _, p := range s.projects {
		if p.name == name {
			return p
		}
	}
	return nil
}

type apiError struct {
	Error map[string]any `json:"error"`
}

func errorBody(code, msg string) apiError {
	return apiError{Error: map[string]any{"code": code, "message": msg}}
}

func (s *Server) writeError(w http.ResponseWriter, r *http.Request, code int) {
	switch code {
	case http.StatusUnauthorized, http.StatusForbidden:
		// Vercel answers an invalid token 403.
		apitest.WriteJSON(w, http.StatusForbidden, apiError{Error: map[string]any{"code": "forbidden", "message": "Not authorized", "invalidToken": true}})
	case http.StatusNotFound:
		apitest.WriteJSON(w, code, errorBody("not_found", "Project not found"))
	case http.StatusConflict:
		apitest.WriteJSON(w, code, errorBody("ENV_CONFLICT", "The environment variable was changed by another request. Try again."))
	case http.StatusTooManyRequests:
		throttled(w, r, time.Second)
	default:
		apitest.WriteJSON(w, code, errorBody(strings.ToLower(strings.ReplaceAll(http.StatusText(code), " ", "_")), http.StatusText(code)))
	}
}

func throttled(w http.ResponseWriter, _ *http.Request, wait time.Duration) {
	reset := time.Now().Add(wait).Add(500 * time.Millisecond)
	w.Header().Set("X-RateLimit-Remaining", "0")
	w.Header().Set("X-RateLimit-Reset", strconv.FormatInt(reset.Unix(), 10))
	apitest.WriteJSON(w, http.StatusTooManyRequests, apiError{Error: map[string]any{
		"code": "rate_limited", "message": "Rate limit exceeded",
		"limit": map[string]any{"remaining": 0, "reset": reset.Unix(), "resetMs": reset.UnixMilli(), "total": 100},
	}})
}

// find resolves a project by id or name in the scope the request names.
func (s *Server) find(r *http.Request, ident string) *project {
	q := r.URL.Query()
	team := q.Get("teamId") == s.TeamID || q.Get("slug") == s.TeamSlug
	if (q.Get("teamId") != "" && q.Get("teamId") != s.TeamID) || (q.Get("slug") != "" && q.Get("slug") != s.TeamSlug) {
		return nil
	}
	for _, p := range s.projects {
		if (p.id == ident || p.name == ident) && p.team == team {
			return p
		}
	}
	return nil
}

func (s *Server) view(e *Env, decrypted bool) map[string]any {
	v := map[string]any{
		"id": e.ID, "key": e.Key, "type": e.Type, "target": e.Target,
		"createdAt": e.UpdatedAt.UnixMilli(), "updatedAt": e.UpdatedAt.UnixMilli(),
		"createdBy": "BbfRMQ0rayldOPM5XPXAe2BC", "updatedBy": "BbfRMQ0rayldOPM5XPXAe2BC",
		"configurationId": nil, "comment": "", "customEnvironmentIds": []string{},
	}
	if e.GitBranch != "" {
		v["gitBranch"] = e.GitBranch
	}
	switch {
	case e.Type == "plain" || (decrypted && e.Type != "sensitive"):
		v["value"], v["decrypted"] = e.Value, decrypted
	case e.Type == "sensitive" && decrypted:
		v["decrypted"] = false
	default:
		v["value"], v["decrypted"] = ciphertext(e.Value), false
	}
	return v
}

// ciphertext stands for Vercel's encryption of a value: not the value in
// any encoding.
func ciphertext(value string) string {
	b := make([]byte, 48+len(value))
	rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}

func (s *Server) route(w http.ResponseWriter, r *http.Request, body []byte) {
	parts := strings.Split(strings.Trim(r.URL.EscapedPath(), "/"), "/")
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
	if r.Method == http.MethodPost || r.Method == http.MethodPatch {
		if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			s.Report("verceltest: %s %s: Content-Type is %q, want application/json", r.Method, r.URL.Path, ct)
		}
	}
	switch {
	case len(parts) == 2 && parts[0] == "v7" && parts[1] == "deployments" && r.Method == http.MethodGet:
		s.listDeployments(w, r)
		return
	case len(parts) == 2 && parts[0] == "v13" && parts[1] == "deployments" && r.Method == http.MethodPost:
		s.redeploy(w, r, body)
		return
	case len(parts) < 3 || parts[1] != "projects":
		s.writeError(w, r, http.StatusNotFound)
		return
	}
	p := s.find(r, parts[2])
	if p == nil {
		s.writeError(w, r, http.StatusNotFound)
		return
	}
	version, rest := parts[0], parts[3:]
	switch {
	case version == "v9" && len(rest) == 0 && r.Method == http.MethodGet:
		apitest.WriteJSON(w, http.StatusOK, map[string]any{"id": p.id, "name": p.name, "accountId": s.TeamID, "framework": "nextjs", "updatedAt": time.Now().UnixMilli()})
	case version == "v10" && len(rest) == 1 && rest[0] == "env" && r.Method == http.MethodGet:
		envs := []map[string]any{}
		for _, e := range p.envs {
			envs = append(envs, s.view(e, false))
		}
		apitest.WriteJSON(w, http.StatusOK, map[string]any{"envs": envs, "pagination": map[string]any{"count": len(envs), "next": nil, "prev": nil}})
	case version == "v10" && len(rest) == 1 && rest[0] == "env" && r.Method == http.MethodPost:
		s.create(w, r, p, body)
	case version == "v1" && len(rest) == 2 && rest[0] == "env" && r.Method == http.MethodGet:
		for _, e := range p.envs {
			if e.ID == rest[1] {
				apitest.WriteJSON(w, http.StatusOK, s.view(e, true))
				return
			}
		}
		apitest.WriteJSON(w, http.StatusNotFound, errorBody("not_found", "Environment Variable not found"))
	case version == "v9" && len(rest) == 2 && rest[0] == "env" && r.Method == http.MethodPatch:
		for _, e := range p.envs {
			if e.ID == rest[1] {
				var in struct {
					Value  *string  `json:"value"`
					Target []string `json:"target"`
					Type   string   `json:"type"`
				}
				if json.Unmarshal(body, &in) != nil {
					s.writeError(w, r, http.StatusBadRequest)
					return
				}
				if in.Value != nil {
					e.Value = *in.Value
				}
				if in.Target != nil {
					e.Target = in.Target
				}
				if in.Type != "" {
					e.Type = in.Type
				}
				e.UpdatedAt = time.Now()
				s.writes++
				apitest.WriteJSON(w, http.StatusOK, s.view(e, false))
				return
			}
		}
		apitest.WriteJSON(w, http.StatusNotFound, errorBody("not_found", "Environment Variable not found"))
	default:
		s.writeError(w, r, http.StatusNotFound)
	}
}

func (s *Server) create(w http.ResponseWriter, r *http.Request, p *project, body []byte) {
	var in struct {
		Key       string   `json:"key"`
		Value     *string  `json:"value"`
		Type      string   `json:"type"`
		Target    []string `json:"target"`
		GitBranch string   `json:"gitBranch"`
	}
	if err := json.Unmarshal(body, &in); err != nil {
		apitest.WriteJSON(w, http.StatusBadRequest, errorBody("bad_request", "Invalid request: the body must be an object or an array of objects."))
		return
	}
	switch {
	case in.Key == "" || in.Value == nil:
		apitest.WriteJSON(w, http.StatusBadRequest, errorBody("bad_request", "Invalid request: missing required property `key` or `value`."))
		return
	case !slices.Contains([]string{"plain", "encrypted", "sensitive", "system"}, in.Type):
		apitest.WriteJSON(w, http.StatusBadRequest, errorBody("bad_request", "Invalid request: `type` should be one of plain, encrypted, sensitive, system."))
		return
	case len(in.Target) == 0:
		apitest.WriteJSON(w, http.StatusBadRequest, errorBody("bad_request", "Invalid request: `target` should not be empty."))
		return
	case in.Type == "sensitive" && slices.Contains(in.Target, "development"):
		apitest.WriteJSON(w, http.StatusBadRequest, errorBody("bad_request", "Sensitive environment variables cannot target development."))
		return
	}
	var overlapping []*Env
	for _, e := range p.envs {
		if e.Key == in.Key && e.GitBranch == in.GitBranch && slices.ContainsFunc(e.Target, func(t string) bool { return slices.Contains(in.Target, t) }) {
			overlapping = append(overlapping, e)
		}
	}
	if s.sensitive && in.Type != "plain" && !slices.Contains(in.Target, "development") {
		in.Type = "sensitive"
	}
	upsert := r.URL.Query().Get("upsert") == "true"
	var e *Env
	switch {
	case len(overlapping) > 0 && !upsert:
		apitest.WriteJSON(w, http.StatusBadRequest, errorBody("ENV_ALREADY_EXISTS", "A variable with the name `"+in.Key+"` already exists for the target "+strings.Join(overlapping[0].Target, ",")))
		return
	case len(overlapping) > 1:
		apitest.WriteJSON(w, http.StatusConflict, errorBody("ENV_CONFLICT", "More than one variable with the name `"+in.Key+"` matches these targets."))
		return
	case len(overlapping) == 1:
		e = overlapping[0]
		e.Value, e.Type, e.Target, e.UpdatedAt = *in.Value, in.Type, in.Target, time.Now()
	default:
		s.nextID++
		e = &Env{ID: "env" + strconv.Itoa(s.nextID) + apitest.RandomID(12), Key: in.Key, Value: *in.Value, Type: in.Type, Target: in.Target, GitBranch: in.GitBranch, UpdatedAt: time.Now()}
		p.envs = append(p.envs, e)
	}
	s.writes++
	created := s.view(e, false)
	if e.Type == "plain" {
		created["value"] = e.Value // as Vercel does: the answer echoes a plain value
	}
	apitest.WriteJSON(w, http.StatusCreated, map[string]any{"created": created, "failed": []any{}})
}

func (s *Server) listDeployments(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var p *project
	for _, c := range s.projects {
		if c.id == q.Get("projectId") {
			p = c
		}
	}
	out := []map[string]any{}
	if p != nil && q.Get("target") == "production" && (q.Get("state") == "" || strings.Contains(q.Get("state"), "READY")) {
		for i := len(p.deployments) - 1; i >= 0; i-- {
			out = append(out, map[string]any{
				"uid": p.deployments[i], "name": p.name, "projectId": p.id, "url": p.name + "-" + apitest.RandomID(9) + ".vercel.app",
				"readyState": "READY", "state": "READY", "target": "production", "created": time.Now().UnixMilli(), "createdAt": time.Now().UnixMilli(),
			})
			if l, err := strconv.Atoi(q.Get("limit")); err == nil && len(out) >= l {
				break
			}
		}
	}
	apitest.WriteJSON(w, http.StatusOK, map[string]any{"deployments": out, "pagination": map[string]any{"count": len(out), "next": nil, "prev": nil}})
}

func (s *Server) redeploy(w http.ResponseWriter, r *http.Request, body []byte) {
	var in struct {
		Name         string `json:"name"`
		DeploymentID string `json:"deploymentId"`
		Target       string `json:"target"`
	}
	if json.Unmarshal(body, &in) != nil || in.Name == "" {
		apitest.WriteJSON(w, http.StatusBadRequest, errorBody("bad_request", "Invalid request: missing required property `name`."))
		return
	}
	if s.failRedeploys > 0 {
		s.failRedeploys--
		s.writeError(w, r, http.StatusInternalServerError)
		return
	}
	for _, p := range s.projects {
		if p.name == in.Name && slices.Contains(p.deployments, in.DeploymentID) {
			if s.find(r, p.id) == nil {
				s.writeError(w, r, http.StatusNotFound)
				return
			}
			p.redeploys++
			uid := "dpl_" + apitest.RandomID(28)
			p.deployments = append(p.deployments, uid)
			apitest.WriteJSON(w, http.StatusOK, map[string]any{"id": uid, "url": p.name + "-" + apitest.RandomID(9) + ".vercel.app", "readyState": "QUEUED", "target": in.Target, "name": p.name})
			return
		}
	}
	apitest.WriteJSON(w, http.StatusNotFound, errorBody("not_found", "Deployment not found"))
}
