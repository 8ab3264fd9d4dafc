// Package github is the `github` integration type: a GitHub Actions secret
// of a repository, of one of its environments, or of an organisation.
//
//	integrations:
//	  - {id: ci, key: actionnetwork-main, type: github, repo: greens/site,
//	     secret: ACTION_NETWORK_API_KEY, token_env: GITHUB_TOKEN}
//	  - {id: deploy, key: actionnetwork-main, type: github, repo: greens/site,
//	     environment: production, secret: ACTION_NETWORK_API_KEY, token_env: GITHUB_TOKEN}
//	  - {id: org-ci, key: actionnetwork-main, type: github, org: greens,
//	     secret: ACTION_NETWORK_API_KEY, token_env: GITHUB_TOKEN,
//	     api_url: https://ghe.example/api/v3/}
//
// Apply fetches the target's public key (once per rotation), seals the key
// with it (libsodium sealed box) and PUTs it. An organisation secret keeps
// the visibility and selected repositories it has; a new one is created
// with visibility "private", as `gh secret set --org` does.
//
// Secrets are write-only, so the state is worked out from the secret's
// updated_at against what rekey recorded writing (integrations.Timestamper).
// Apply writes nothing when rekey's record says it wrote the same key and
// updated_at is that write.
//
// The client is plain net/http rather than go-github: three calls per
// scope read plainly here, environment secrets use the current
// /repos/{owner}/{repo}/environments/{env} paths (go-github's need the
// repository id and another request), and every failure is classified in
// one place from status and headers, without a library's error text
// carrying GitHub's response body or a client-side rate-limit wait hiding
// the class.
package github

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/nacl/box"

	"github.com/rekey-dev/rekey/config"
	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/integrations"
	"github.com/rekey-dev/rekey/integrations/internal/httpx"
	"github.com/rekey-dev/rekey/integrations/internal/rest"
)

// Type is the name of this integration type in the configuration.
const Type = "github"

// DefaultAPIURL is GitHub's REST API.
const DefaultAPIURL = "https://api.github.com/"

// APIVersion is the REST API version rekey speaks.
const APIVersion = "2022-11-28"

// fields are the type's settings.
type fields struct {
	Repo        string `mapstructure:"repo"`
	Org         string `mapstructure:"org"`
	Environment string `mapstructure:"environment"`
	Secret      string `mapstructure:"secret"`
	TokenEnv    string `mapstructure:"token_env"`
	APIURL      string `mapstructure:"api_url"`
}

// GitHub is one Actions secret.
type GitHub struct {
	id       string
	api      *url.URL
	scope    string // "repos/o/r/actions/secrets/", "repos/o/r/environments/e/secrets/", "orgs/o/actions/secrets/"
	target   string // "repository o/r", "environment e of o/r", "organisation o"
	org      bool
	owner    string // the organisation, or the repository's owner/name
	env      string // the environment, if any
	name     string
	tokenEnv string
	getenv   func(string) string
	client   *http.Client
	log      *slog.Logger

	mu  sync.Mutex
	pub *publicKey // for pub.rotationID only
}

var (
	_ integrations.Integration = (*GitHub)(nil)
	_ integrations.Timestamper = (*GitHub)(nil)
	_ integrations.Preflighter = (*GitHub)(nil)
	_ integrations.Factory     = New
)

type publicKey struct {
	rotationID string
	keyID      string
	key        [32]byte
}

var (
	repoRE   = regexp.MustCompile(`^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?/[A-Za-z0-9._-]+$`)
	orgRE    = regexp.MustCompile(`^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?$`)
	secretRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// New builds a github integration from its configuration item.
func New(h integrations.Host, in config.Integration) (integrations.Integration, error) {
	var f fields
	if err := h.Config.DecodeSettings(in, &f); err != nil {
		return nil, err
	}
	g := &GitHub{id: in.ID, name: f.Secret, tokenEnv: f.TokenEnv, getenv: h.Getenv, log: h.Logger}
	switch {
	case f.Repo == "" && f.Org == "":
		return nil, h.Config.Required(in, "repo", "(owner/name), or org for an organisation secret")
	case f.Repo != "" && f.Org != "":
		return nil, h.Config.Invalid(in, "org", "give repo or org, not both")
	case f.Org != "" && f.Environment != "":
		return nil, h.Config.Invalid(in, "environment", "an environment belongs to a repository: give repo, not org")
	case f.Repo != "" && !repoRE.MatchString(f.Repo):
		return nil, h.Config.Invalid(in, "repo", "%q is not owner/name", f.Repo)
	case f.Org != "" && !orgRE.MatchString(f.Org):
		return nil, h.Config.Invalid(in, "org", "%q is not an organisation name", f.Org)
	case f.Environment != "" && (strings.TrimSpace(f.Environment) == "" || strings.ContainsAny(f.Environment, "/\x00")):
		return nil, h.Config.Invalid(in, "environment", "%q is not an environment name", f.Environment)
	case f.Secret == "":
		return nil, h.Config.Required(in, "secret", "(the Actions secret's name)")
	case !secretRE.MatchString(f.Secret) || strings.HasPrefix(strings.ToUpper(f.Secret), "GITHUB_"):
		return nil, h.Config.Invalid(in, "secret", "%q: use letters, digits and '_', not starting with a digit or GITHUB_", f.Secret)
	case f.TokenEnv == "":
		return nil, h.Config.Required(in, "token_env", "(the environment variable holding a GitHub token)")
	case !rest.EnvVarName.MatchString(f.TokenEnv):
		return nil, h.Config.Invalid(in, "token_env", "%q is not an environment variable name", f.TokenEnv)
	}
	g.owner, g.env = f.Repo, f.Environment
	switch {
	case f.Org != "":
		g.org, g.owner = true, f.Org
		g.scope = "orgs/" + url.PathEscape(f.Org) + "/actions/secrets/"
		g.target = "organisation " + f.Org
	case f.Environment != "":
		g.scope = "repos/" + f.Repo + "/environments/" + url.PathEscape(f.Environment) + "/secrets/"
		g.target = "environment " + f.Environment + " of " + f.Repo
	default:
		g.scope = "repos/" + f.Repo + "/actions/secrets/"
		g.target = "repository " + f.Repo
	}

	raw := f.APIURL
	if raw == "" {
		raw = DefaultAPIURL
	}
	u, err := rest.ParseBase(raw)
	if err != nil {
		return nil, h.Config.Invalid(in, "api_url", "%v (such as https://ghe.example/api/v3/)", err)
	}
	g.api = u

	if g.getenv == nil {
		g.getenv = func(string) string { return "" }
	}
	if g.log == nil {
		g.log = slog.New(slog.DiscardHandler)
	}
	g.client = httpx.Client(h.HTTPClient)
	return g, nil
}

// ID implements integrations.Integration.
func (g *GitHub) ID() string { return g.id }

// Apply implements integrations.Integration.
func (g *GitHub) Apply(ctx context.Context, req integrations.ApplyRequest) (integrations.ApplyResult, error) {
	if err := ctx.Err(); err != nil {
		return integrations.ApplyResult{}, fmt.Errorf("github: put secret %s in %s: %w", g.name, g.target, err)
	}
	if req.Key.IsZero() {
		return integrations.ApplyResult{}, fmt.Errorf("github: put secret %s in %s: empty key: %w", g.name, g.target, failure.ErrInvalid)
	}
	cur, err := g.getSecret(ctx)
	exists := err == nil
	if err != nil && !errors.Is(err, failure.ErrNotFound) {
		return integrations.ApplyResult{}, err
	}
	if exists && req.Last.Fingerprint == req.Key.Fingerprint() && integrations.SameWrite(cur.UpdatedAt, req.Last) {
		g.log.DebugContext(ctx, "github: secret already written by rekey", "integration", g.id, "fingerprint", req.Last.Fingerprint)
		return integrations.ApplyResult{Changed: false, At: cur.UpdatedAt}, nil
	}

	pk, err := g.publicKey(ctx, req.RotationID)
	if err != nil {
		return integrations.ApplyResult{}, err
	}
	sealed, err := box.SealAnonymous(nil, []byte(req.Key.Reveal()), &pk.key, rand.Reader)
	if err != nil {
		return integrations.ApplyResult{}, fmt.Errorf("github: seal secret %s for %s: %w", g.name, g.target, err)
	}
	body := map[string]any{
		"encrypted_value": base64.StdEncoding.EncodeToString(sealed),
		"key_id":          pk.keyID,
	}
	if g.org {
		visibility := "private"
		if exists && cur.Visibility != "" {
			visibility = cur.Visibility
		}
		body["visibility"] = visibility
		if visibility == "selected" {
			ids, err := g.selectedRepos(ctx)
			if err != nil {
				return integrations.ApplyResult{}, err
			}
			body["selected_repository_ids"] = ids
		}
	}
	what := fmt.Sprintf("github: put secret %s in %s", g.name, g.target)
	resp, err := g.do(ctx, http.MethodPut, g.scope+url.PathEscape(g.name), body, what)
	if err != nil {
		if errors.Is(err, failure.ErrInvalid) {
			g.forgetPublicKey() // a 422 may be a public key GitHub has replaced
		}
		return integrations.ApplyResult{}, err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusNoContent {
		return integrations.ApplyResult{}, fmt.Errorf("%s: unexpected status %d: %w", what, resp.StatusCode, failure.ErrInvalid)
	}
	// Record GitHub's own updated_at, so that a later Observe (and the
	// next Apply) compares GitHub's clock with GitHub's clock; when it
	// cannot be read, the write still happened: use ours.
	at := time.Now()
	if after, err := g.getSecret(ctx); err == nil {
		at = after.UpdatedAt
	}
	g.log.InfoContext(ctx, "github: secret written", "integration", g.id, "target", g.target, "secret", g.name, "fingerprint", req.Key.Fingerprint())
	return integrations.ApplyResult{Changed: true, At: at}, nil
}

// UpdatedAt implements integrations.Timestamper.
func (g *GitHub) UpdatedAt(ctx context.Context) (time.Time, error) {
	s, err := g.getSecret(ctx)
	if err != nil {
		return time.Time{}, err
	}
	return s.UpdatedAt, nil
}

type secretInfo struct {
	Name       string    `json:"name"`
	UpdatedAt  time.Time `json:"updated_at"`
	Visibility string    `json:"visibility"`
}

func (g *GitHub) getSecret(ctx context.Context) (secretInfo, error) {
	what := fmt.Sprintf("github: get secret %s of %s", g.name, g.target)
	var s secretInfo
	resp, err := g.do(ctx, http.MethodGet, g.scope+url.PathEscape(g.name), nil, what)
	if err != nil {
		return s, err
	}
	if err := decode(resp, &s, what); err != nil {
		return s, err
	}
	if s.UpdatedAt.IsZero() {
		return s, fmt.Errorf("%s: answer has no updated_at: %w", what, failure.ErrInvalid)
	}
	return s, nil
}

// publicKey fetches the target's public key once per rotation.
func (g *GitHub) publicKey(ctx context.Context, rotationID string) (publicKey, error) {
	g.mu.Lock()
	if g.pub != nil && g.pub.rotationID == rotationID && rotationID != "" {
		pk := *g.pub
		g.mu.Unlock()
		return pk, nil
	}
	g.mu.Unlock()

	pk, _, err := g.fetchPublicKey(ctx)
	if err != nil {
		return publicKey{}, err
	}
	pk.rotationID = rotationID
	g.mu.Lock()
	g.pub = &pk
	g.mu.Unlock()
	return pk, nil
}

// fetchPublicKey fetches the target's public key, and the answer's
// headers (what GitHub says of the token).
func (g *GitHub) fetchPublicKey(ctx context.Context) (publicKey, http.Header, error) {
	what := fmt.Sprintf("github: get public key of %s", g.target)
	resp, err := g.do(ctx, http.MethodGet, g.scope+"public-key", nil, what)
	if err != nil {
		return publicKey{}, nil, err
	}
	var out struct {
		KeyID string `json:"key_id"`
		Key   string `json:"key"`
	}
	if err := decode(resp, &out, what); err != nil {
		return publicKey{}, nil, err
	}
	raw, err := base64.StdEncoding.DecodeString(out.Key)
	if err != nil || len(raw) != 32 || out.KeyID == "" {
		return publicKey{}, nil, fmt.Errorf("%s: answer is not a key_id and a base64 curve25519 key: %w", what, failure.ErrInvalid)
	}
	pk := publicKey{keyID: out.KeyID}
	copy(pk.key[:], raw)
	g.log.DebugContext(ctx, "github: fetched public key", "integration", g.id, "target", g.target, "key_id", out.KeyID)
	return pk, resp.Header, nil
}

// Preflight implements integrations.Preflighter: it checks, writing
// nothing, what Apply needs:
//
//   - the token in $token_env is set and GitHub accepts it;
//   - the repository, environment or organisation exists and the token
//     sees it: a 404 is followed by a look at the repository (and the
//     environment) or the organisation, to say which is missing;
//   - the target's Actions public key can be read and is a curve25519
//     key: the write seals the value with it;
//   - what GitHub tells of the token's permissions: a personal access
//     token (classic) lists its scopes in X-OAuth-Scopes, and writing
//     Actions secrets needs repo (public_repo is enough for a public
//     repository) or, for an organisation, admin:org; GitHub answers 404
//     for what the scopes do not reach, and Preflight says so. A
//     fine-grained token or a GitHub App is told, in a 403 naming the
//     permission (X-Accepted-GitHub-Permissions), only when a request
//     needs one it lacks: Preflight proves "secrets: read" (or
//     "organization_secrets: read"); whether it may write shows at the
//     write, whose error names the permission. An organisation that
//     enforces SAML single sign-on for a token not authorised there
//     answers 403 with X-GitHub-SSO, said as such.
//
// The secret itself need not exist: Apply creates it.
func (g *GitHub) Preflight(ctx context.Context) error {
	_, h, err := g.fetchPublicKey(ctx)
	if errors.Is(err, failure.ErrNotFound) {
		return g.whichMissing(ctx, err)
	}
	if err != nil {
		return err
	}
	have, classic := oauthScopes(h)
	if !classic {
		return nil
	}
	need := g.neededScopes()
	if g.anyScope(have, need) {
		return nil
	}
	if !g.org && slices.Contains(have, "public_repo") {
		if public, err := g.publicRepository(ctx); err != nil {
			return err
		} else if public {
			return nil
		}
	}
	what := fmt.Sprintf("github: check the write of secret %s in %s", g.name, g.target)
	return fmt.Errorf("%s: the classic token in $%s has scopes %s; writing Actions secrets of %s needs %s: %w",
		what, g.tokenEnv, scopeWords(h), g.kind(), strings.Join(need, " or "), failure.ErrUnauthorized)
}

// kind names what the target is, for messages about scopes.
func (g *GitHub) kind() string {
	if g.org {
		return "an organisation"
	}
	return "a repository (public_repo is enough for a public one)"
}

// neededScopes are the classic scopes, any one of which lets a token
// write the target's secrets (public_repo only for a public repository).
func (g *GitHub) neededScopes() []string {
	if g.org {
		return []string{"admin:org"}
	}
	return []string{"repo"}
}

func (g *GitHub) anyScope(have, need []string) bool {
	for _, n := range need {
		if slices.Contains(have, n) {
			return true
		}
	}
	return false
}

// publicRepository asks whether the repository is public.
func (g *GitHub) publicRepository(ctx context.Context) (bool, error) {
	what := fmt.Sprintf("github: get repository %s", g.owner)
	resp, err := g.do(ctx, http.MethodGet, "repos/"+g.owner, nil, what)
	if err != nil {
		return false, err
	}
	var out struct {
		Private *bool `json:"private"`
	}
	if err := decode(resp, &out, what); err != nil {
		return false, err
	}
	return out.Private != nil && !*out.Private, nil
}

// whichMissing turns the 404 of the target's public key into which of
// the organisation, repository or environment the token cannot see, when
// one more look tells; else it returns err as it is.
func (g *GitHub) whichMissing(ctx context.Context, err error) error {
	if errors.Is(err, failure.ErrUnauthorized) {
		return err // the scopes, already said
	}
	var hint string
	exists := func(path, what string) (bool, error) {
		resp, h, err := g.send(ctx, http.MethodGet, path, nil, what)
		switch {
		case err == nil:
			resp.Body.Close()
			return true, nil
		case errors.Is(err, failure.ErrNotFound):
			hint = g.scopeHint(h)
			return false, nil
		}
		return false, err
	}
	prefix := fmt.Sprintf("github: get public key of %s: status 404", g.target)
	if g.org {
		ok, lerr := exists("orgs/"+url.PathEscape(g.owner), "github: get organisation "+g.owner)
		if lerr == nil && !ok {
			return fmt.Errorf("%s: organisation %s does not exist or is not visible to the token in $%s: %w", prefix, g.owner, g.tokenEnv, failure.ErrNotFound)
		}
		return err
	}
	ok, lerr := exists("repos/"+g.owner, "github: get repository "+g.owner)
	if lerr != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%s: repository %s does not exist or is not visible to the token in $%s%s: %w", prefix, g.owner, g.tokenEnv, hint, failure.ErrNotFound)
	}
	if g.env != "" {
		ok, lerr := exists("repos/"+g.owner+"/environments/"+url.PathEscape(g.env), "github: get environment "+g.env+" of "+g.owner)
		if lerr == nil && !ok {
			return fmt.Errorf("%s: environment %s does not exist in %s: %w", prefix, g.env, g.owner, failure.ErrNotFound)
		}
	}
	return err
}

func (g *GitHub) forgetPublicKey() {
	g.mu.Lock()
	g.pub = nil
	g.mu.Unlock()
}

// selectedRepos lists the repositories an organisation secret with
// visibility "selected" is shared with, so that a write keeps them.
func (g *GitHub) selectedRepos(ctx context.Context) ([]int64, error) {
	what := fmt.Sprintf("github: list repositories of secret %s of %s", g.name, g.target)
	ids := []int64{}
	for page := 1; ; page++ {
		path := g.scope + url.PathEscape(g.name) + "/repositories?per_page=100&page=" + strconv.Itoa(page)
		resp, err := g.do(ctx, http.MethodGet, path, nil, what)
		if err != nil {
			return nil, err
		}
		var out struct {
			TotalCount   int `json:"total_count"`
			Repositories []struct {
				ID int64 `json:"id"`
			} `json:"repositories"`
		}
		if err := decode(resp, &out, what); err != nil {
			return nil, err
		}
		for _, r := range out.Repositories {
			ids = append(ids, r.ID)
		}
		if len(out.Repositories) == 0 || len(ids) >= out.TotalCount {
			return ids, nil
		}
	}
}

// do sends one request and returns the response when its status is 2xx;
// otherwise a classified error built from status and headers only.
func (g *GitHub) do(ctx context.Context, method, path string, body any, what string) (*http.Response, error) {
	resp, _, err := g.send(ctx, method, path, body, what)
	return resp, err
}

// send is do that also returns the headers of a failed answer (nil when
// there was none).
func (g *GitHub) send(ctx context.Context, method, path string, body any, what string) (*http.Response, http.Header, error) {
	token := g.getenv(g.tokenEnv)
	if token == "" {
		return nil, nil, fmt.Errorf("%s: $%s is empty or not set: %w", what, g.tokenEnv, failure.ErrUnauthorized)
	}
	ref, err := url.Parse(path)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w: %w", what, err, failure.ErrInvalid)
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", what, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, g.api.ResolveReference(ref).String(), rd)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w: %w", what, err, failure.ErrInvalid)
	}
	req.Header.Set("Accept", "application/vnd.github+json")
	req.Header.Set("X-GitHub-Api-Version", APIVersion)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("User-Agent", "rekey")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := g.client.Do(req)
	if err != nil {
		return nil, nil, httpx.TransportError(ctx, what, err)
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return resp, nil, nil
	}
	defer resp.Body.Close()
	return nil, resp.Header, g.statusError(resp, what)
}

// statusError classifies a failed answer. The body is read only to tell a
// secondary rate limit from a missing permission; it never reaches the
// error. What GitHub says of the token in its headers (X-GitHub-SSO,
// X-Accepted-GitHub-Permissions, X-OAuth-Scopes) is said in rekey's
// words, with only the scope and permission names rekey knows.
func (g *GitHub) statusError(resp *http.Response, what string) error {
	code := resp.StatusCode
	if code == http.StatusForbidden || code == http.StatusTooManyRequests {
		if resp.Header.Get("X-RateLimit-Remaining") == "0" {
			wait := time.Minute
			if reset, err := strconv.ParseInt(resp.Header.Get("X-RateLimit-Reset"), 10, 64); err == nil {
				wait = time.Until(time.Unix(reset, 0))
			}
			wait = min(max(wait, time.Second), time.Hour)
			return &failure.RetryAfterError{After: wait, Err: fmt.Errorf("%s: status %d: rate limit used up", what, code)}
		}
		if d := failure.ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now()); d > 0 {
			return &failure.RetryAfterError{After: d, Err: fmt.Errorf("%s: status %d: secondary rate limit", what, code)}
		}
		if code == http.StatusForbidden && resp.Header.Get("X-GitHub-SSO") != "" {
			return fmt.Errorf("%s: status 403: the organisation enforces SAML single sign-on, and the token in $%s is not authorised for it (GitHub → Settings → Developer settings → the token → Configure SSO): %w", what, g.tokenEnv, failure.ErrUnauthorized)
		}
		if code == http.StatusTooManyRequests || secondaryRateLimit(resp.Body) {
			return &failure.RetryAfterError{After: time.Minute, Err: fmt.Errorf("%s: status %d: secondary rate limit", what, code)}
		}
	}
	switch code {
	case http.StatusUnauthorized:
		return fmt.Errorf("%s: status 401: the token in $%s was refused (bad credentials): %w", what, g.tokenEnv, failure.ErrUnauthorized)
	case http.StatusForbidden:
		if p := permissionWords(resp.Header.Get("X-Accepted-GitHub-Permissions")); p != "" {
			return fmt.Errorf("%s: status 403: the token in $%s (fine-grained, or a GitHub App's) lacks the permission GitHub asks for here: %s: %w", what, g.tokenEnv, p, failure.ErrUnauthorized)
		}
		return fmt.Errorf("%s: status 403: the token in $%s may not write Actions secrets there: %w", what, g.tokenEnv, failure.ErrUnauthorized)
	case http.StatusNotFound:
		have, classic := oauthScopes(resp.Header)
		if classic && !g.anyScope(have, g.neededScopes()) && (g.org || !slices.Contains(have, "public_repo")) {
			return fmt.Errorf("%s: status 404: the classic token in $%s has scopes %s, and %s needs %s; GitHub answers 404 for what a token's scopes do not reach: %w",
				what, g.tokenEnv, scopeWords(resp.Header), g.target, strings.Join(g.neededScopes(), " or "), failure.ErrUnauthorized)
		}
		return fmt.Errorf("%s: status 404: the %s or secret %s is not visible to the token in $%s (or does not exist)%s: %w", what, g.target, g.name, g.tokenEnv, g.scopeHint(resp.Header), failure.ErrNotFound)
	}
	return failure.StatusError(what, resp)
}

// scopeHint says, for a 404 about a repository, when a classic token's
// scopes may be why: public_repo without repo reaches public
// repositories only. "" otherwise.
func (g *GitHub) scopeHint(h http.Header) string {
	have, classic := oauthScopes(h)
	if !classic || g.org || slices.Contains(have, "repo") || !slices.Contains(have, "public_repo") {
		return ""
	}
	return fmt.Sprintf(" (the classic token's scopes are %s: a private repository needs repo)", scopeWords(h))
}

// knownScopes are the OAuth scopes of GitHub's documentation ("Scopes for
// OAuth apps"): the only ones rekey repeats from X-OAuth-Scopes, a header
// the peer chose.
var knownScopes = map[string]bool{
	"repo": true, "repo:status": true, "repo_deployment": true, "public_repo": true, "repo:invite": true, "security_events": true,
	"admin:repo_hook": true, "write:repo_hook": true, "read:repo_hook": true, "admin:org": true, "write:org": true, "read:org": true,
	"admin:public_key": true, "write:public_key": true, "read:public_key": true, "admin:org_hook": true, "gist": true, "notifications": true,
	"user": true, "read:user": true, "user:email": true, "user:follow": true, "project": true, "read:project": true, "delete_repo": true,
	"write:packages": true, "read:packages": true, "delete:packages": true, "admin:gpg_key": true, "write:gpg_key": true, "read:gpg_key": true,
	"codespace": true, "workflow": true, "admin:enterprise": true, "manage_runners:enterprise": true, "read:enterprise": true,
	"audit_log": true, "read:audit_log": true, "copilot": true, "admin:ssh_signing_key": true, "write:ssh_signing_key": true,
	"read:ssh_signing_key": true, "write:discussion": true, "read:discussion": true,
}

// oauthScopes reads X-OAuth-Scopes: the scopes of a classic token (or an
// OAuth app's), and whether the header was there at all (a fine-grained
// token or a GitHub App gets none).
func oauthScopes(h http.Header) (scopes []string, classic bool) {
	v, ok := h["X-Oauth-Scopes"]
	if !ok {
		return nil, false
	}
	for _, s := range strings.Split(strings.Join(v, ","), ",") {
		if s = strings.TrimSpace(s); s != "" {
			scopes = append(scopes, s)
		}
	}
	return scopes, true
}

// scopeWords lists a classic token's scopes for a message: the known
// ones by name, the others counted.
func scopeWords(h http.Header) string {
	scopes, _ := oauthScopes(h)
	var known []string
	other := 0
	for _, s := range scopes {
		if knownScopes[s] {
			known = append(known, s)
		} else {
			other++
		}
	}
	if other > 0 {
		known = append(known, fmt.Sprintf("%d other", other))
	}
	if len(known) == 0 {
		return "(none)"
	}
	return strings.Join(known, ", ")
}

var permissionRE = regexp.MustCompile(`^[a-z_]{1,40}=(read|write|admin)$`)

// permissionWords reads X-Accepted-GitHub-Permissions ("secrets=write;
// organization_secrets=write": sets separated by ';', any one of which
// is enough, each a list of name=level) into a message, keeping only
// entries of that shape, at most ten.
func permissionWords(v string) string {
	var sets []string
	n := 0
	for _, set := range strings.Split(v, ";") {
		var ps []string
		for _, p := range strings.Split(set, ",") {
			if p = strings.TrimSpace(p); permissionRE.MatchString(p) && n < 10 {
				ps = append(ps, p)
				n++
			}
		}
		if len(ps) > 0 {
			sets = append(sets, strings.Join(ps, " and "))
		}
	}
	return strings.Join(sets, ", or ")
}

func secondaryRateLimit(body io.Reader) bool {
	var e struct {
		Message string `json:"message"`
	}
	if json.NewDecoder(io.LimitReader(body, 64<<10)).Decode(&e) != nil {
		return false
	}
	return strings.Contains(strings.ToLower(e.Message), "rate limit")
}

// decode reads a JSON answer into v. A body that does not decode is
// reported by its size only.
func decode(resp *http.Response, v any, what string) error {
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("%s: read answer: %w", what, failure.ErrTransient)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: answer (%d bytes) is not the JSON GitHub sends: %w", what, len(b), failure.ErrInvalid)
	}
	return nil
}
