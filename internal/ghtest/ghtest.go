// Package ghtest is a GitHub REST API server for tests of Actions secrets:
// repository, environment and organisation secrets, their public keys, and
// the errors GitHub answers with (bad credentials, not found, rate limits).
// It also answers what a token may do, as GitHub tells it: a personal
// access token (classic) gets X-OAuth-Scopes on every answer and a 404
// for what its scopes do not reach ("we don't want to provide any
// information about private repositories"); a fine-grained token gets a
// 403 "Resource not accessible by personal access token" with
// X-Accepted-GitHub-Permissions naming the permission the endpoint needs;
// an organisation enforcing SAML single sign-on answers 403 with
// X-GitHub-SSO.
//
// It speaks the real wire protocol: the paths, headers, status codes and
// error bodies of https://docs.github.com/rest/actions/secrets. It holds a
// curve25519 key pair per repository, environment and organisation, and
// opens every sealed box a client PUTs with its private key, so a test can
// compare the plaintext with what it meant to write. A client that omits
// the Accept or X-GitHub-Api-Version header, or sends a box that does not
// open, fails the test.
package ghtest

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/nacl/box"

	"github.com/rekey-dev/rekey/secret"
)

// APIVersion is the REST API version the server accepts in
// X-GitHub-Api-Version.
const APIVersion = "2022-11-28"

const docs = "https://docs.github.com/rest"

// Options configures a Server.
type Options struct {
	// Token is the one token the server accepts; a random "ghp_" token
	// when empty.
	Token string
	// PathPrefix serves the API below a path, as GitHub Enterprise Server
	// does ("/api/v3"). Requests outside it are 404.
	PathPrefix string
	// Scopes, when not nil, make Token a personal access token (classic)
	// with these OAuth scopes: every answer to it carries X-OAuth-Scopes,
	// and a request they do not allow is answered 404. Repository and
	// environment secrets need repo (reading a public repository's public
	// key needs none, writing its secrets public_repo or repo);
	// organisation secrets need admin:org.
	Scopes []string
	// Permissions, when not nil, make Token a fine-grained personal access
	// token with these permissions ("secrets": "read", "organization_secrets":
	// "write", "metadata": "read"; levels read < write < admin): a request
	// they do not allow is answered 403 with X-Accepted-GitHub-Permissions.
	Permissions map[string]string
	// SSO lists organisations that enforce SAML single sign-on for which
	// the token is not authorised: every request about them (or one of
	// their repositories) is answered 403 with X-GitHub-SSO.
	SSO []string
}

// Scope is where secrets live: a repository, one of its environments, or
// an organisation. Build one with Repo, Env or Org.
type Scope string

// Repo is the scope of repository secrets of "owner/name".
func Repo(fullName string) Scope { return Scope("repos/" + fullName) }

// Env is the scope of the secrets of environment env of "owner/name".
func Env(fullName, env string) Scope { return Scope("repos/" + fullName + "/environments/" + env) }

// Org is the scope of organisation secrets of org.
func Org(org string) Scope { return Scope("orgs/" + org) }

// Secret is the test's view of one stored secret.
type Secret struct {
	Value     secret.Key
	CreatedAt time.Time
	UpdatedAt time.Time
	// Visibility and SelectedRepositoryIDs are for organisation secrets:
	// "all", "private" or "selected".
	Visibility            string
	SelectedRepositoryIDs []int64
}

type scopeState struct {
	keyID   string
	pub     *[32]byte
	priv    *[32]byte
	secrets map[string]*Secret // by upper-case name
	keyGets int
}

// Server is a running GitHub API test server.
type Server struct {
	// URL is the API base URL, ending in "/": what api_url is set to.
	URL string
	// Token is the token the server accepts.
	Token string

	report func(format string, args ...any) // a client broke the protocol
	prefix string
	srv    *httptest.Server
	done   chan struct{}

	closeOnce  sync.Once
	violations []string

	classic []string          // Options.Scopes
	grants  map[string]string // Options.Permissions
	sso     []string          // Options.SSO

	mu        sync.Mutex
	scopes    map[Scope]*scopeState
	repos     map[string]int64 // full name → id
	public    map[string]bool  // full names of public repositories
	envs      map[string]bool  // "owner/name/env"
	nextID    int64
	puts      int
	rateLeft  int // requests still answered "rate limited"
	rateReset time.Time
	rateCode  int
	failNext  []int
	hangNext  int
	log       bytes.Buffer
	now       func() time.Time
}

// New starts a server that stops when the test ends. A client that breaks
// the protocol fails the test.
func New(t testing.TB, o Options) *Server {
	t.Helper()
	s := Start(o)
	s.report = t.Errorf
	t.Cleanup(s.Close)
	return s
}

// Start starts a server outside a test (for a demo); Close stops it, and
// Violations lists what clients did wrong.
func Start(o Options) *Server {
	if o.Token == "" {
		o.Token = "ghp_" + randomDigits(36)
	}
	s := &Server{
		Token:  o.Token,
		prefix: strings.TrimRight(o.PathPrefix, "/"),
		done:   make(chan struct{}),
		scopes: map[Scope]*scopeState{},
		repos:  map[string]int64{},
		public: map[string]bool{},
		envs:   map[string]bool{},
		nextID: 1296269,
		now:    time.Now,

		classic: slices.Clone(o.Scopes),
		grants:  maps.Clone(o.Permissions),
		sso:     slices.Clone(o.SSO),
	}
	s.report = s.violation
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	s.URL = s.srv.URL + s.prefix + "/"
	return s
}

// Close releases hung requests and stops the server.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		close(s.done)
		s.srv.Close()
	})
}

// Violations lists the protocol violations seen by a server from Start.
func (s *Server) Violations() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.violations)
}

func (s *Server) violation(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.violations = append(s.violations, fmt.Sprintf(format, args...))
}

// AddRepo makes repository "owner/name" exist (and organisation owner,
// for organisation secrets) and returns its id.
func (s *Server) AddRepo(fullName string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if id, ok := s.repos[fullName]; ok {
		return id
	}
	s.nextID++
	s.repos[fullName] = s.nextID
	s.addScope(Repo(fullName))
	return s.nextID
}

// SetPublic makes repository "owner/name" (added if need be) public or
// private (the default).
func (s *Server) SetPublic(fullName string, public bool) {
	s.AddRepo(fullName)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.public[fullName] = public
}

// AddEnvironment makes environment env of repository "owner/name" exist.
func (s *Server) AddEnvironment(fullName, env string) {
	s.AddRepo(fullName)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.envs[fullName+"/"+env] = true
	s.addScope(Env(fullName, env))
}

// AddOrg makes organisation org exist.
func (s *Server) AddOrg(org string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.addScope(Org(org))
}

func (s *Server) addScope(sc Scope) {
	if s.scopes[sc] != nil {
		return
	}
	pub, priv, err := box.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	s.scopes[sc] = &scopeState{keyID: randomDigits(18), pub: pub, priv: priv, secrets: map[string]*Secret{}}
}

// Secret returns what a secret holds, as GitHub would after opening the box.
func (s *Server) Secret(sc Scope, name string) (Secret, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.scopes[sc]
	if st == nil || st.secrets[strings.ToUpper(name)] == nil {
		return Secret{}, false
	}
	sec := *st.secrets[strings.ToUpper(name)]
	sec.SelectedRepositoryIDs = slices.Clone(sec.SelectedRepositoryIDs)
	return sec, true
}

// SetSecret stores a secret as if someone had written it, for tests that
// start from a target holding an older value (creating the scope if need
// be). Zero times mean now.
func (s *Server) SetSecret(sc Scope, name string, sec Secret) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.scopes[sc] == nil {
		s.addScope(sc)
	}
	st := s.scopes[sc]
	now := s.now().UTC().Truncate(time.Second)
	if sec.UpdatedAt.IsZero() {
		sec.UpdatedAt = now
	}
	if sec.CreatedAt.IsZero() {
		sec.CreatedAt = sec.UpdatedAt
	}
	if strings.HasPrefix(string(sc), "orgs/") && sec.Visibility == "" {
		sec.Visibility = "private"
	}
	st.secrets[strings.ToUpper(name)] = &sec
}

// DeleteSecret removes a secret.
func (s *Server) DeleteSecret(sc Scope, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.scopes[sc]; st != nil {
		delete(st.secrets, strings.ToUpper(name))
	}
}

// Puts is how many secret writes the server accepted.
func (s *Server) Puts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.puts
}

// PublicKeyGets is how many times a scope's public key was fetched.
func (s *Server) PublicKeyGets(sc Scope) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.scopes[sc]; st != nil {
		return st.keyGets
	}
	return 0
}

// RateLimit answers the next n requests as GitHub does when the primary
// rate limit is used up: status (403 or 429), x-ratelimit-remaining: 0 and
// x-ratelimit-reset at reset.
func (s *Server) RateLimit(n, status int, reset time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rateLeft, s.rateCode, s.rateReset = n, status, reset
}

// FailNext answers the next request with status and GitHub's error body
// for it, whatever the request was.
func (s *Server) FailNext(status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failNext = append(s.failNext, status)
}

// HangNext makes the next request wait until the client gives up (or the
// test ends) without an answer.
func (s *Server) HangNext() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hangNext++
}

// Log is every request the server saw: method, path, headers (the token
// replaced by <token>) and body, and the status it answered.
func (s *Server) Log() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.log.Bytes())
}

type apiError struct {
	Message          string `json:"message"`
	DocumentationURL string `json:"documentation_url"`
	Status           string `json:"status"`
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	rec := &recorder{ResponseWriter: w}
	s.handle(rec, r, body)
	s.mu.Lock()
	defer s.mu.Unlock()
	fmt.Fprintf(&s.log, "%s %s -> %d\n", r.Method, r.URL.RequestURI(), rec.code)
	for _, name := range slices.Sorted(maps.Keys(r.Header)) {
		v := strings.Join(r.Header[name], ", ")
		if name == "Authorization" {
			v = "<token>"
		}
		fmt.Fprintf(&s.log, "  %s: %s\n", name, v)
	}
	if len(body) > 0 {
		fmt.Fprintf(&s.log, "  body: %s\n", body)
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

func (s *Server) handle(w http.ResponseWriter, r *http.Request, body []byte) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("X-GitHub-Request-Id", "C0DE:"+randomDigits(8))

	s.mu.Lock()
	hang := s.hangNext > 0
	if hang {
		s.hangNext--
	}
	var fail int
	if len(s.failNext) > 0 {
		fail, s.failNext = s.failNext[0], s.failNext[1:]
	}
	rateLimited := s.rateLeft > 0
	if rateLimited {
		s.rateLeft--
	}
	rateCode, reset := s.rateCode, s.rateReset
	s.mu.Unlock()

	if hang {
		select {
		case <-r.Context().Done():
		case <-s.done:
		}
		return
	}
	if ok := s.checkHeaders(w, r); !ok {
		return
	}
	if s.classic != nil {
		w.Header().Set("X-OAuth-Scopes", strings.Join(s.classic, ", "))
	}
	if rateLimited {
		w.Header().Set("X-RateLimit-Limit", "5000")
		w.Header().Set("X-RateLimit-Remaining", "0")
		w.Header().Set("X-RateLimit-Used", "5000")
		w.Header().Set("X-RateLimit-Reset", strconv.FormatInt(reset.Unix(), 10))
		w.Header().Set("X-RateLimit-Resource", "core")
		writeJSON(w, rateCode, apiError{Message: "API rate limit exceeded for user ID 1.", DocumentationURL: docs + "/overview/rate-limits-for-the-rest-api", Status: strconv.Itoa(rateCode)})
		return
	}
	w.Header().Set("X-RateLimit-Limit", "5000")
	w.Header().Set("X-RateLimit-Remaining", "4999")
	w.Header().Set("X-RateLimit-Reset", strconv.FormatInt(s.now().Add(time.Hour).Unix(), 10))
	if fail != 0 {
		s.writeError(w, fail)
		return
	}

	path, ok := strings.CutPrefix(r.URL.EscapedPath(), s.prefix+"/")
	if !ok {
		s.writeError(w, http.StatusNotFound)
		return
	}
	s.route(w, r, path, body)
}

// checkHeaders answers 401 for a missing or wrong token and 400 for an
// unsupported API version, as GitHub does, and fails the test for a
// client that does not send the headers GitHub asks clients to send.
func (s *Server) checkHeaders(w http.ResponseWriter, r *http.Request) bool {
	if got := r.Header.Get("Accept"); got != "application/vnd.github+json" {
		s.report("ghtest: %s %s: Accept is %q, want application/vnd.github+json", r.Method, r.URL.Path, got)
	}
	v := r.Header.Get("X-GitHub-Api-Version")
	if v == "" {
		s.report("ghtest: %s %s: no X-GitHub-Api-Version header", r.Method, r.URL.Path)
	} else if v != APIVersion {
		writeJSON(w, http.StatusBadRequest, apiError{
			Message:          fmt.Sprintf("API version '%s' is not supported.", v),
			DocumentationURL: docs + "/overview/api-versions", Status: "400",
		})
		return false
	}
	auth := r.Header.Get("Authorization")
	if auth == "" {
		writeJSON(w, http.StatusUnauthorized, apiError{Message: "Requires authentication", DocumentationURL: docs, Status: "401"})
		return false
	}
	tok, ok := strings.CutPrefix(auth, "Bearer ")
	if !ok {
		tok, ok = strings.CutPrefix(auth, "token ")
	}
	if !ok || tok != s.Token {
		s.writeError(w, http.StatusUnauthorized)
		return false
	}
	return true
}

func (s *Server) writeError(w http.ResponseWriter, code int) {
	e := apiError{DocumentationURL: docs, Status: strconv.Itoa(code)}
	switch code {
	case http.StatusUnauthorized:
		e.Message = "Bad credentials"
	case http.StatusForbidden:
		e.Message = "Resource not accessible by personal access token"
	case http.StatusNotFound:
		e.Message = "Not Found"
	case http.StatusUnprocessableEntity:
		e.Message = "Validation Failed"
	case http.StatusTooManyRequests:
		w.Header().Set("Retry-After", "60")
		e.Message = "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."
	default:
		e.Message = http.StatusText(code)
		if code >= 500 {
			e = apiError{Message: "Server Error"}
		}
	}
	writeJSON(w, code, e)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(code)
	w.Write(b)
}

// route serves:
//
//	GET  repos/{owner}/{repo}
//	GET  repos/{owner}/{repo}/environments/{env}
//	GET  orgs/{org}
//	GET  {scope}/secrets/public-key
//	GET  {scope}/secrets/{name}
//	PUT  {scope}/secrets/{name}
//	GET  orgs/{org}/actions/secrets/{name}/repositories
//
// where {scope} is repos/{owner}/{repo}/actions,
// repos/{owner}/{repo}/environments/{env} or orgs/{org}/actions.
func (s *Server) route(w http.ResponseWriter, r *http.Request, path string, body []byte) {
	parts := strings.Split(path, "/")
	for i, p := range parts {
		u, err := url.PathUnescape(p)
		if err != nil {
			s.writeError(w, http.StatusNotFound)
			return
		}
		parts[i] = u
	}
	if !s.allowed(w, r, parts) {
		return
	}
	switch {
	case r.Method == http.MethodGet && len(parts) == 3 && parts[0] == "repos":
		s.getRepo(w, parts[1]+"/"+parts[2])
		return
	case r.Method == http.MethodGet && len(parts) == 5 && parts[0] == "repos" && parts[3] == "environments":
		s.mu.Lock()
		ok := s.envs[parts[1]+"/"+parts[2]+"/"+parts[4]]
		s.mu.Unlock()
		if !ok {
			s.writeError(w, http.StatusNotFound)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"name": parts[4], "protection_rules": []any{}})
		return
	case r.Method == http.MethodGet && len(parts) == 2 && parts[0] == "orgs":
		s.mu.Lock()
		ok := s.scopes[Org(parts[1])] != nil
		s.mu.Unlock()
		if !ok {
			s.writeError(w, http.StatusNotFound)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"login": parts[1], "id": 1000})
		return
	}
	var sc Scope
	var rest []string
	switch {
	case len(parts) >= 6 && parts[0] == "repos" && parts[3] == "actions" && parts[4] == "secrets":
		sc, rest = Repo(parts[1]+"/"+parts[2]), parts[5:]
	case len(parts) >= 7 && parts[0] == "repos" && parts[3] == "environments" && parts[5] == "secrets":
		sc, rest = Env(parts[1]+"/"+parts[2], parts[4]), parts[6:]
	case len(parts) >= 5 && parts[0] == "orgs" && parts[2] == "actions" && parts[3] == "secrets":
		sc, rest = Org(parts[1]), parts[4:]
	default:
		s.writeError(w, http.StatusNotFound)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.scopes[sc]
	if st == nil {
		s.writeError(w, http.StatusNotFound)
		return
	}
	org := strings.HasPrefix(string(sc), "orgs/")
	switch {
	case len(rest) == 1 && rest[0] == "public-key" && r.Method == http.MethodGet:
		st.keyGets++
		writeJSON(w, http.StatusOK, map[string]string{"key_id": st.keyID, "key": base64.StdEncoding.EncodeToString(st.pub[:])})
	case len(rest) == 1 && r.Method == http.MethodGet:
		sec := st.secrets[strings.ToUpper(rest[0])]
		if sec == nil {
			s.writeError(w, http.StatusNotFound)
			return
		}
		out := map[string]any{
			"name":       strings.ToUpper(rest[0]),
			"created_at": sec.CreatedAt.UTC().Format(time.RFC3339),
			"updated_at": sec.UpdatedAt.UTC().Format(time.RFC3339),
		}
		if org {
			out["visibility"] = sec.Visibility
			if sec.Visibility == "selected" {
				out["selected_repositories_url"] = s.srv.URL + s.prefix + "/" + path + "/repositories"
			}
		}
		writeJSON(w, http.StatusOK, out)
	case len(rest) == 1 && r.Method == http.MethodPut:
		s.put(w, r, st, strings.ToUpper(rest[0]), org, body)
	case len(rest) == 2 && org && rest[1] == "repositories" && r.Method == http.MethodGet:
		s.listSelected(w, r, st, strings.ToUpper(rest[0]))
	case len(rest) <= 2:
		s.writeError(w, http.StatusMethodNotAllowed)
	default:
		s.writeError(w, http.StatusNotFound)
	}
}

func (s *Server) getRepo(w http.ResponseWriter, full string) {
	s.mu.Lock()
	id, ok := s.repos[full]
	public := s.public[full]
	s.mu.Unlock()
	if !ok {
		s.writeError(w, http.StatusNotFound)
		return
	}
	owner, name, _ := strings.Cut(full, "/")
	visibility := "private"
	if public {
		visibility = "public"
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"id": id, "name": name, "full_name": full, "private": !public, "visibility": visibility,
		"owner": map[string]any{"login": owner},
	})
}

// need is what a request needs of a token: the classic scopes any one of
// which allows it (none: any token) and the fine-grained permission.
type need struct {
	scopes     []string
	permission string // "secrets=read"; "" none
}

// needOf works out what the request (its path in parts) needs, as
// GitHub's documentation of each endpoint says.
func (s *Server) needOf(r *http.Request, parts []string) need {
	write := r.Method != http.MethodGet && r.Method != http.MethodHead
	level := "read"
	if write {
		level = "write"
	}
	switch {
	case len(parts) >= 2 && parts[0] == "orgs":
		if len(parts) == 2 {
			return need{}
		}
		return need{scopes: []string{"admin:org"}, permission: "organization_secrets=" + level}
	case len(parts) >= 3 && parts[0] == "repos":
		full := parts[1] + "/" + parts[2]
		s.mu.Lock()
		public := s.public[full]
		s.mu.Unlock()
		secrets := len(parts) > 3 && slices.Contains(parts, "secrets")
		switch {
		case !secrets && public:
			return need{permission: "metadata=read"}
		case !secrets:
			return need{scopes: []string{"repo"}, permission: "metadata=read"}
		case public && !write && parts[len(parts)-1] == "public-key":
			return need{permission: "secrets=read"}
		case public && write:
			return need{scopes: []string{"repo", "public_repo"}, permission: "secrets=write"}
		}
		return need{scopes: []string{"repo"}, permission: "secrets=" + level}
	}
	return need{}
}

// allowed answers a request the token may not make as GitHub does, and
// reports whether it may.
func (s *Server) allowed(w http.ResponseWriter, r *http.Request, parts []string) bool {
	org := ""
	if len(parts) >= 2 && (parts[0] == "orgs" || parts[0] == "repos") {
		org = parts[1]
	}
	if org != "" && slices.Contains(s.sso, org) {
		w.Header().Set("X-GitHub-SSO", "required; url=https://github.com/orgs/"+org+"/sso?authorization_request=A1B2C3")
		writeJSON(w, http.StatusForbidden, apiError{Message: "Resource protected by organization SAML enforcement. You must grant your Personal Access token access to this organization.",
			DocumentationURL: "https://docs.github.com/articles/authenticating-to-a-github-organization-with-saml-single-sign-on/", Status: "403"})
		return false
	}
	n := s.needOf(r, parts)
	if s.classic != nil && len(n.scopes) > 0 {
		w.Header().Set("X-Accepted-OAuth-Scopes", strings.Join(n.scopes, ", "))
		ok := false
		for _, sc := range n.scopes {
			// repo includes public_repo; admin:org includes the rest of org.
			ok = ok || slices.Contains(s.classic, sc) || (sc == "public_repo" && slices.Contains(s.classic, "repo"))
		}
		if !ok {
			s.writeError(w, http.StatusNotFound)
			return false
		}
	}
	if s.grants != nil && n.permission != "" {
		w.Header().Set("X-Accepted-GitHub-Permissions", n.permission)
		name, level, _ := strings.Cut(n.permission, "=")
		rank := map[string]int{"read": 1, "write": 2, "admin": 3}
		if rank[s.grants[name]] < rank[level] {
			writeJSON(w, http.StatusForbidden, apiError{Message: "Resource not accessible by personal access token", DocumentationURL: docs + "/actions/secrets", Status: "403"})
			return false
		}
	}
	return true
}

func (s *Server) put(w http.ResponseWriter, r *http.Request, st *scopeState, name string, org bool, body []byte) {
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		s.report("ghtest: PUT %s: Content-Type is %q, want application/json", r.URL.Path, ct)
	}
	if !validName(name) {
		writeJSON(w, http.StatusUnprocessableEntity, apiError{Message: "Secret names can only contain alphanumeric characters ([a-z], [A-Z], [0-9]) or underscores (_). Spaces are not allowed. Must start with a letter ([a-z], [A-Z]) or underscores (_).", DocumentationURL: docs, Status: "422"})
		return
	}
	var in struct {
		EncryptedValue        *string `json:"encrypted_value"`
		KeyID                 *string `json:"key_id"`
		Visibility            *string `json:"visibility"`
		SelectedRepositoryIDs []int64 `json:"selected_repository_ids"`
	}
	if err := json.Unmarshal(body, &in); err != nil {
		writeJSON(w, http.StatusBadRequest, apiError{Message: "Problems parsing JSON", DocumentationURL: docs, Status: "400"})
		return
	}
	invalid := func(msg string) {
		writeJSON(w, http.StatusUnprocessableEntity, apiError{Message: "Invalid request.\n\n" + msg, DocumentationURL: docs, Status: "422"})
	}
	switch {
	case in.EncryptedValue == nil:
		invalid(`"encrypted_value" wasn't supplied.`)
		return
	case in.KeyID == nil:
		invalid(`"key_id" wasn't supplied.`)
		return
	case *in.KeyID != st.keyID:
		invalid("Bad key_id.")
		return
	case org && in.Visibility == nil:
		invalid(`"visibility" wasn't supplied.`)
		return
	case org && !slices.Contains([]string{"all", "private", "selected"}, *in.Visibility):
		invalid(fmt.Sprintf("%q is not a member of [all, private, selected].", *in.Visibility))
		return
	case !org && (in.Visibility != nil || in.SelectedRepositoryIDs != nil):
		s.report("ghtest: PUT %s: visibility or selected_repository_ids sent for a non-organisation secret", r.URL.Path)
	}
	sealed, err := base64.StdEncoding.DecodeString(*in.EncryptedValue)
	if err != nil {
		s.report("ghtest: PUT %s: encrypted_value is not standard base64", r.URL.Path)
		invalid("encrypted_value is not valid base64.")
		return
	}
	plain, ok := box.OpenAnonymous(nil, sealed, st.pub, st.priv)
	if !ok {
		s.report("ghtest: PUT %s: encrypted_value does not open with the scope's private key", r.URL.Path)
		invalid("encrypted_value could not be decrypted.")
		return
	}
	now := s.now().UTC().Truncate(time.Second)
	sec, existed := st.secrets[name]
	if !existed {
		sec = &Secret{CreatedAt: now}
		st.secrets[name] = sec
	}
	sec.Value = secret.New(string(plain))
	sec.UpdatedAt = now
	if org {
		sec.Visibility = *in.Visibility
		sec.SelectedRepositoryIDs = nil
		if sec.Visibility == "selected" {
			sec.SelectedRepositoryIDs = slices.Clone(in.SelectedRepositoryIDs)
		}
	}
	s.puts++
	if existed {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{})
}

func (s *Server) listSelected(w http.ResponseWriter, r *http.Request, st *scopeState, name string) {
	sec := st.secrets[name]
	if sec == nil {
		s.writeError(w, http.StatusNotFound)
		return
	}
	if sec.Visibility != "selected" {
		writeJSON(w, http.StatusConflict, apiError{Message: "The visibility of the secret is not 'selected'.", DocumentationURL: docs, Status: "409"})
		return
	}
	page, perPage := 1, 30
	if p, err := strconv.Atoi(r.URL.Query().Get("page")); err == nil && p > 0 {
		page = p
	}
	if p, err := strconv.Atoi(r.URL.Query().Get("per_page")); err == nil && p > 0 {
		perPage = min(p, 100)
	}
	names := map[int64]string{}
	for n, id := range s.repos {
		names[id] = n
	}
	type repo struct {
		ID       int64  `json:"id"`
		Name     string `json:"name"`
		FullName string `json:"full_name"`
	}
	out := struct {
		TotalCount   int    `json:"total_count"`
		Repositories []repo `json:"repositories"`
	}{TotalCount: len(sec.SelectedRepositoryIDs), Repositories: []repo{}}
	start := (page - 1) * perPage
	for i := start; i < len(sec.SelectedRepositoryIDs) && i < start+perPage; i++ {
		id := sec.SelectedRepositoryIDs[i]
		full := names[id]
		_, short, _ := strings.Cut(full, "/")
		out.Repositories = append(out.Repositories, repo{ID: id, Name: short, FullName: full})
	}
	writeJSON(w, http.StatusOK, out)
}

func validName(n string) bool {
	if n == "" || strings.HasPrefix(n, "GITHUB_") || (n[0] >= '0' && n[0] <= '9') {
		return false
	}
	for _, c := range n {
		if !(c == '_' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

func randomDigits(n int) string {
	var b strings.Builder
	for range n {
		d, _ := rand.Int(rand.Reader, big.NewInt(10))
		b.WriteByte(byte('0' + d.Int64()))
	}
	return b.String()
}
