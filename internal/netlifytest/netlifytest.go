// Package netlifytest is a Netlify API server for tests of the netlify
// integration type: sites, their environment variables through the
// account-level environment API, and build hooks, with the paths, status
// codes, error bodies and rate-limit headers of https://open-api.netlify.com.
//
//	GET    /api/v1/sites/{site_id}                          → the site
//	GET    /api/v1/accounts/{account}/env?site_id=…          → [envVar]
//	POST   /api/v1/accounts/{account}/env?site_id=…          [{key, scopes, values, is_secret}] → 201 [envVar]
//	GET    /api/v1/accounts/{account}/env/{key}?site_id=…    → envVar
//	PUT    /api/v1/accounts/{account}/env/{key}?site_id=…    {key, scopes, values, is_secret} → envVar
//	PATCH  /api/v1/accounts/{account}/env/{key}?site_id=…    {context, value} → 201 envVar
//	DELETE /api/v1/accounts/{account}/env/{key}?site_id=…    → 204
//	POST   /build_hooks/{id}                                → 200 (no token)
//
// {account} is the account's id or slug. An envVar is {key, scopes,
// values: [{id, value, context}], is_secret, updated_at, updated_by}; a
// secret variable's values are never answered. Creating a variable that
// exists is a 409. Errors are {"code", "message"}; every answer carries
// X-RateLimit-Limit, X-RateLimit-Remaining and X-RateLimit-Reset (a Unix
// time).
package netlifytest

import (
	"encoding/json"
	"maps"
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

var contexts = []string{"all", "dev", "dev-server", "branch-deploy", "deploy-preview", "production", "branch"}

// Value is one value of a variable.
type Value struct {
	Context string
	Value   string
}

// Var is the test's view of one environment variable.
type Var struct {
	Key       string
	Values    []Value
	Scopes    []string
	IsSecret  bool
	UpdatedAt time.Time
}

// Server is a running Netlify API test server.
type Server struct {
	*apitest.Base
	// URL is the API base URL (ending in /api/v1/): what api_url is set to.
	URL string
	// Account is the account id; AccountSlug its slug.
	Account, AccountSlug string

	srv *httptest.Server

	mu     sync.Mutex
	sites  map[string]map[string]*Var // site id → key → var
	hooks  map[string]int             // build hook id → builds triggered
	writes int
	race   *Var
}

// New starts a server that stops when the test ends.
func New(t testing.TB) *Server {
	t.Helper()
	s := &Server{Account: "5f0c" + apitest.RandomDigits(20), AccountSlug: "greens", sites: map[string]map[string]*Var{}, hooks: map[string]int{}}
	s.Base = apitest.NewBase(t, "nfp_"+apitest.RandomID(36), apitest.Hooks{
		Error:     s.writeError,
		Throttled: throttled,
		Headers: func(w http.ResponseWriter) {
			w.Header().Set("X-RateLimit-Limit", "500")
			w.Header().Set("X-RateLimit-Remaining", "499")
			w.Header().Set("X-RateLimit-Reset", strconv.FormatInt(time.Now().Add(time.Minute).Unix(), 10))
		},
		Redact: func(_ *http.Request, body []byte) []byte { return apitest.RedactJSON(body, "value") },
	})
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if id, ok := strings.CutPrefix(r.URL.Path, "/build_hooks/"); ok {
			s.buildHook(w, r, id) // a build hook's URL is its credential
			return
		}
		s.Handler(s.route).ServeHTTP(w, r)
	}))
	s.URL = s.srv.URL + "/api/v1/"
	t.Cleanup(func() { s.Base.Close(); s.srv.Close() })
	return s
}

// AddSite makes a site of the account exist.
func (s *Server) AddSite(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sites[id] = map[string]*Var{}
}

// AddBuildHook makes a build hook exist and returns its URL.
func (s *Server) AddBuildHook() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := apitest.RandomID(24)
	s.hooks[id] = 0
	return s.srv.URL + "/build_hooks/" + id
}

// Builds is how many builds all build hooks triggered.
func (s *Server) Builds() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, b := range s.hooks {
		n += b
	}
	return n
}

// SetVar creates or replaces a variable as someone other than rekey would;
// a zero UpdatedAt is now.
func (s *Server) SetVar(site string, v Var) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v.UpdatedAt.IsZero() {
		v.UpdatedAt = time.Now().UTC()
	}
	if v.Scopes == nil {
		v.Scopes = []string{"builds", "functions", "runtime", "post-processing"}
	}
	s.sites[site][v.Key] = &v
}

// Get is a copy of a variable.
func (s *Server) Get(site, key string) (Var, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.sites[site][key]
	if v == nil {
		return Var{}, false
	}
	c := *v
	c.Values = slices.Clone(v.Values)
	return c, true
}

// Holds is what a variable holds in context c (its own value, else "all").
func (s *Server) Holds(site, key, c string) secret.Key {
	v, _ := s.Get(site, key)
	all := ""
	for _, e := range v.Values {
		if e.Context == c {
			return secret.New(e.Value)
		}
		if e.Context == "all" {
			all = e.Value
		}
	}
	return secret.New(all)
}

// Keys lists a site's variable names.
func (s *Server) Keys(site string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for k := range s.sites[site] {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// Writes is how many variable writes (creations, updates, value sets) were accepted.
func (s *Server) Writes() int { s.mu.Lock(); defer s.mu.Unlock(); return s.writes }

// CreateRace makes someone else create v on the site just before the
// server handles the next request that creates variables.
func (s *Server) CreateRace(v Var) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.race = &v
}

type apiError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

func (s *Server) writeError(w http.ResponseWriter, r *http.Request, code int) {
	if code == http.StatusTooManyRequests {
		throttled(w, r, time.Second)
		return
	}
	msg := http.StatusText(code)
	if code == http.StatusUnauthorized {
		msg = "Access Denied: your token is invalid or has expired"
	}
	apitest.WriteJSON(w, code, apiError{Code: code, Message: msg})
}

func throttled(w http.ResponseWriter, _ *http.Request, wait time.Duration) {
	w.Header().Set("X-RateLimit-Remaining", "0")
	w.Header().Set("X-RateLimit-Reset", strconv.FormatInt(time.Now().Add(wait).Add(500*time.Millisecond).Unix(), 10))
	apitest.WriteJSON(w, http.StatusTooManyRequests, apiError{Code: 429, Message: "Rate limit exceeded"})
}

func (s *Server) buildHook(w http.ResponseWriter, r *http.Request, id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.hooks[id]; !ok || r.Method != http.MethodPost {
		http.Error(w, "Not Found", http.StatusNotFound)
		return
	}
	s.hooks[id]++
	w.WriteHeader(http.StatusOK)
}

func (s *Server) view(v *Var) map[string]any {
	values := []map[string]any{}
	for i, e := range v.Values {
		m := map[string]any{"id": strconv.Itoa(i+1) + "-" + v.Key, "context": e.Context}
		if !v.IsSecret || e.Context == "dev" {
			m["value"] = e.Value
		}
		values = append(values, m)
	}
	return map[string]any{
		"key": v.Key, "scopes": v.Scopes, "values": values, "is_secret": v.IsSecret,
		"updated_at": v.UpdatedAt.UTC().Format(time.RFC3339Nano),
		"updated_by": map[string]string{"id": "5f0c000000000000", "full_name": "Greens Ops", "email": "ops@greens.example"},
	}
}

func (s *Server) route(w http.ResponseWriter, r *http.Request, body []byte) {
	path, ok := strings.CutPrefix(r.URL.EscapedPath(), "/api/v1/")
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
	if len(parts) == 2 && parts[0] == "sites" && r.Method == http.MethodGet {
		if s.sites[parts[1]] == nil {
			apitest.WriteJSON(w, http.StatusNotFound, apiError{Code: 404, Message: "Not Found"})
			return
		}
		apitest.WriteJSON(w, http.StatusOK, map[string]any{
			"id": parts[1], "site_id": parts[1], "name": "campaign", "url": "https://campaign.netlify.app",
			"account_id": s.Account, "account_slug": s.AccountSlug, "account_name": "Greens",
		})
		return
	}
	if len(parts) < 3 || parts[0] != "accounts" || parts[2] != "env" || len(parts) > 4 {
		s.writeError(w, r, http.StatusNotFound)
		return
	}
	if parts[1] != s.Account && parts[1] != s.AccountSlug {
		apitest.WriteJSON(w, http.StatusNotFound, apiError{Code: 404, Message: "Account not found"})
		return
	}
	siteID := r.URL.Query().Get("site_id")
	if siteID == "" {
		s.Report("netlifytest: %s %s without site_id: that is the account's shared variables, not the site's", r.Method, r.URL.Path)
		s.writeError(w, r, http.StatusBadRequest)
		return
	}
	vars := s.sites[siteID]
	if vars == nil {
		apitest.WriteJSON(w, http.StatusNotFound, apiError{Code: 404, Message: "Site not found"})
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodDelete && !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		s.Report("netlifytest: %s %s: Content-Type is %q, want application/json", r.Method, r.URL.Path, r.Header.Get("Content-Type"))
	}
	if len(parts) == 3 {
		switch r.Method {
		case http.MethodGet:
			out := []map[string]any{}
			for _, k := range slices.Sorted(maps.Keys(vars)) {
				out = append(out, s.view(vars[k]))
			}
			apitest.WriteJSON(w, http.StatusOK, out)
		case http.MethodPost:
			s.create(w, vars, body)
		default:
			s.writeError(w, r, http.StatusMethodNotAllowed)
		}
		return
	}
	v := vars[parts[3]]
	if v == nil && r.Method != http.MethodDelete {
		apitest.WriteJSON(w, http.StatusNotFound, apiError{Code: 404, Message: "Environment variable not found"})
		return
	}
	switch r.Method {
	case http.MethodGet:
		apitest.WriteJSON(w, http.StatusOK, s.view(v))
	case http.MethodPatch:
		var in struct {
			Context string  `json:"context"`
			Value   *string `json:"value"`
		}
		if json.Unmarshal(body, &in) != nil || in.Value == nil || !slices.Contains(contexts, in.Context) {
			apitest.WriteJSON(w, http.StatusUnprocessableEntity, apiError{Code: 422, Message: "context and value are required"})
			return
		}
		found := false
		for i := range v.Values {
			if v.Values[i].Context == in.Context {
				v.Values[i].Value, found = *in.Value, true
			}
		}
		if !found {
			v.Values = append(v.Values, Value{Context: in.Context, Value: *in.Value})
		}
		v.UpdatedAt = time.Now().UTC()
		s.writes++
		apitest.WriteJSON(w, http.StatusCreated, s.view(v))
	case http.MethodPut:
		var in struct {
			Key      string   `json:"key"`
			Scopes   []string `json:"scopes"`
			Values   []Value  `json:"values"`
			IsSecret bool     `json:"is_secret"`
		}
		if json.Unmarshal(body, &in) != nil {
			s.writeError(w, r, http.StatusBadRequest)
			return
		}
		v.Values, v.IsSecret, v.UpdatedAt = in.Values, in.IsSecret, time.Now().UTC()
		if in.Scopes != nil {
			v.Scopes = in.Scopes
		}
		s.writes++
		apitest.WriteJSON(w, http.StatusOK, s.view(v))
	case http.MethodDelete:
		delete(vars, parts[3])
		w.WriteHeader(http.StatusNoContent)
	default:
		s.writeError(w, r, http.StatusMethodNotAllowed)
	}
}

func (s *Server) create(w http.ResponseWriter, vars map[string]*Var, body []byte) {
	var in []struct {
		Key    string   `json:"key"`
		Scopes []string `json:"scopes"`
		Values []struct {
			Context string  `json:"context"`
			Value   *string `json:"value"`
		} `json:"values"`
		IsSecret bool `json:"is_secret"`
	}
	if json.Unmarshal(body, &in) != nil || len(in) == 0 {
		apitest.WriteJSON(w, http.StatusBadRequest, apiError{Code: 400, Message: "the body must be an array of environment variables"})
		return
	}
	if s.race != nil {
		v := *s.race
		s.race = nil
		v.UpdatedAt = time.Now().UTC()
		vars[v.Key] = &v
	}
	for _, e := range in {
		if vars[e.Key] != nil {
			apitest.WriteJSON(w, http.StatusConflict, apiError{Code: 409, Message: "Environment variable " + e.Key + " already exists"})
			return
		}
	}
	var out []map[string]any
	for _, e := range in {
		v := &Var{Key: e.Key, Scopes: e.Scopes, IsSecret: e.IsSecret, UpdatedAt: time.Now().UTC()}
		if v.Scopes == nil {
			v.Scopes = []string{"builds", "functions", "runtime", "post-processing"}
		}
		for _, val := range e.Values {
			if val.Value == nil || !slices.Contains(contexts, val.Context) {
				apitest.WriteJSON(w, http.StatusUnprocessableEntity, apiError{Code: 422, Message: "each value needs a context and a value"})
				return
			}
			v.Values = append(v.Values, Value{Context: val.Context, Value: *val.Value})
		}
		vars[e.Key] = v
		s.writes++
		out = append(out, s.view(v))
	}
	apitest.WriteJSON(w, http.StatusCreated, out)
}
