// Package netlify is the `netlify` integration type: one environment
// variable of a Netlify site, through the account-level environment
// variables API (https://open-api.netlify.com/#tag/environmentVariables).
//
//	integrations:
//	  - {id: campaign-site, key: actionnetwork-main, type: netlify,
//	     account: greens, site: 5d1b3c9e-0000-4000-8000-000000000000,
//	     variable: ACTION_NETWORK_API_KEY, token_env: NETLIFY_AUTH_TOKEN,
//	     contexts: [production, deploy-preview], build_hook_env: NETLIFY_BUILD_HOOK}
//
// Fields: account (the team's id or slug), site (the site id), variable,
// token_env (a personal access token), optional contexts (the deploy
// contexts whose value is set; default [production]), build_hook_env (the
// environment variable holding the site's build hook URL; a build is
// triggered after a changed write, since a site reads the variable at
// build time), api_url (default https://api.netlify.com/api/v1/) and
// verify (a probe shaped like the http type's).
//
// Apply reads the variable (GET /accounts/{account}/env/{key}?site_id=…)
// and sets the value of each configured context that does not already hold
// the key (PATCH …/env/{key}?site_id=… {context, value}); the values of
// other contexts, the scopes and the secret flag stay as they are. A
// variable that does not exist is created (POST …/env?site_id=…) with a
// value for each context; if someone creates it first (409), it is read
// again and patched. The build hook is triggered once after a changed
// write, and also when the variable already holds the key but rekey has no
// record of writing it there (an earlier attempt wrote it and then failed
// to trigger the build).
//
// The state is read back (exact), every configured context holding the
// key. Netlify never shows a secret variable's values (is_secret), only
// when it was last updated: such a variable is proven by its updated_at
// against rekey's record of writing it (timestamp), else by the verify
// probe.
//
// Preflight reads the site (it must belong to account) and the variable,
// and checks that build_hook_env names a URL; it never triggers a build.
package netlify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync/atomic"
	"time"

	"github.com/rekey-dev/rekey/config"
	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/integrations"
	"github.com/rekey-dev/rekey/integrations/internal/httpx"
	"github.com/rekey-dev/rekey/integrations/internal/platform"
	"github.com/rekey-dev/rekey/integrations/internal/rest"
	"github.com/rekey-dev/rekey/secret"
	"github.com/rekey-dev/rekey/state"
)

// Type is the name of this integration type in the configuration.
const Type = "netlify"

// DefaultAPIURL is Netlify's API.
const DefaultAPIURL = "https://api.netlify.com/api/v1/"

// Contexts are Netlify's deploy contexts.
var Contexts = []string{"all", "dev", "dev-server", "branch-deploy", "deploy-preview", "production"}

type fields struct {
	platform.Settings `mapstructure:",squash"`
	Account           string   `mapstructure:"account"`
	Site              string   `mapstructure:"site"`
	Contexts          []string `mapstructure:"contexts"`
	BuildHookEnv      string   `mapstructure:"build_hook_env"`
}

var spec = platform.Spec{
	VariableHint: "(the environment variable that holds the key)",
	TokenHint:    "a Netlify personal access token",
	APIURL:       DefaultAPIURL,
}

// Netlify is one environment variable of one site.
type Netlify struct {
	id           string
	account      string
	site         string
	variable     string
	contexts     []string
	buildHookEnv string
	target       string // "site … of account …"
	api          *rest.Client
	hooks        *http.Client
	getenv       func(string) string
	log          *slog.Logger
	hasProbe     bool
	secret       atomic.Bool // the variable was last seen secret
}

// withVerify is a netlify integration with its verify probe.
type withVerify struct {
	*Netlify
	platform.Verified
}

var (
	_ integrations.Integration = (*Netlify)(nil)
	_ integrations.Reader      = (*Netlify)(nil)
	_ integrations.Timestamper = (*Netlify)(nil)
	_ integrations.Preflighter = (*Netlify)(nil)
	_ integrations.Prover      = (*Netlify)(nil)
	_ integrations.Verifier    = withVerify{}
	_ integrations.Factory     = New
)

var idRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

// New builds a netlify integration from its configuration item.
func New(h integrations.Host, in config.Integration) (integrations.Integration, error) {
	var f fields
	if err := h.Config.DecodeSettings(in, &f); err != nil {
		return nil, err
	}
	switch {
	case f.Account == "":
		return nil, h.Config.Required(in, "account", "(the team's id or slug, as in app.netlify.com/teams/<slug>)")
	case !idRE.MatchString(f.Account):
		return nil, h.Config.Invalid(in, "account", "%q is not an account id or slug", f.Account)
	case f.Site == "":
		return nil, h.Config.Required(in, "site", "(the site id: Site configuration → Site information)")
	case !idRE.MatchString(f.Site):
		return nil, h.Config.Invalid(in, "site", "%q is not a site id", f.Site)
	}
	if err := f.Check(h, in, spec); err != nil {
		return nil, err
	}
	if f.BuildHookEnv != "" && !rest.EnvVarName.MatchString(f.BuildHookEnv) {
		return nil, h.Config.Invalid(in, "build_hook_env", "%q is not an environment variable name", f.BuildHookEnv)
	}
	contexts, err := platform.Choices(h, in, "contexts", f.Contexts, []string{"production"}, Contexts)
	if err != nil {
		return nil, err
	}
	api, err := f.Client(h, in, spec)
	if err != nil {
		return nil, err
	}
	api.DefaultWait = 10 * time.Second
	x := &Netlify{
		id: in.ID, account: f.Account, site: f.Site, variable: f.Variable, contexts: contexts,
		buildHookEnv: f.BuildHookEnv, getenv: h.Getenv, log: platform.Logger(h.Logger),
		target: "site " + f.Site + " of account " + f.Account, api: api, hooks: api.HTTP,
	}
	if x.getenv == nil {
		x.getenv = func(string) string { return "" }
	}
	probe, ok, err := f.Probe(h, in)
	switch {
	case err != nil:
		return nil, err
	case !ok:
		return x, nil
	}
	x.hasProbe = true
	return withVerify{Netlify: x, Verified: probe}, nil
}

// ID implements integrations.Integration.
func (x *Netlify) ID() string { return x.id }

// Proof implements integrations.Prover: exact, unless the variable was
// found secret; then its timestamp.
func (x *Netlify) Proof() state.Proof {
	if x.secret.Load() {
		return state.Timestamp
	}
	return state.Exact
}

func (x *Netlify) query() string { return "?" + url.Values{"site_id": {x.site}}.Encode() }

func (x *Netlify) varPath() string {
	return "accounts/" + url.PathEscape(x.account) + "/env/" + url.PathEscape(x.variable) + x.query()
}

// envVar is Netlify's envVar model.
type envVar struct {
	Key       string     `json:"key"`
	Scopes    []string   `json:"scopes"`
	Values    []envValue `json:"values"`
	IsSecret  bool       `json:"is_secret"`
	UpdatedAt time.Time  `json:"updated_at"`
}

type envValue struct {
	ID      string  `json:"id"`
	Value   *string `json:"value"`
	Context string  `json:"context"`
}

// valueFor is the value context c uses: its own, else the "all" one.
func (v envVar) valueFor(c string) (string, bool) {
	var all *string
	for _, e := range v.Values {
		switch {
		case e.Context == c && e.Value != nil:
			return *e.Value, true
		case e.Context == "all" && e.Value != nil:
			all = e.Value
		}
	}
	if all != nil {
		return *all, true
	}
	return "", false
}

func (x *Netlify) get(ctx context.Context) (envVar, error) {
	what := fmt.Sprintf("netlify: read variable %s of %s", x.variable, x.target)
	resp, err := x.api.Do(ctx, rest.Request{Method: http.MethodGet, Path: x.varPath(), What: what, Target: "variable " + x.variable + " of " + x.target})
	if err != nil {
		return envVar{}, err
	}
	var v envVar
	if err := rest.Decode(resp, &v, what); err != nil {
		return envVar{}, err
	}
	x.secret.Store(v.IsSecret)
	return v, nil
}

// Read implements integrations.Reader: the key every configured context
// holds. A secret variable's Read wraps integrations.ErrWriteOnly.
func (x *Netlify) Read(ctx context.Context) (secret.Key, error) {
	v, err := x.get(ctx)
	if err != nil {
		return secret.Key{}, err
	}
	what := fmt.Sprintf("netlify: variable %s of %s", x.variable, x.target)
	if v.IsSecret {
		return secret.Key{}, fmt.Errorf("%s is secret: %w", what, integrations.ErrWriteOnly)
	}
	var held string
	for i, c := range x.contexts {
		val, ok := v.valueFor(c)
		switch {
		case !ok || val == "":
			return secret.Key{}, fmt.Errorf("%s has no value for the %s context: %w", what, c, failure.ErrNotFound)
		case i == 0:
			held = val
		case val != held:
			return secret.Key{}, fmt.Errorf("%s holds different values in the %s and %s contexts: %w", what, x.contexts[0], c, failure.ErrInvalid)
		}
	}
	return secret.New(held), nil
}

// UpdatedAt implements integrations.Timestamper (for a secret variable).
func (x *Netlify) UpdatedAt(ctx context.Context) (time.Time, error) {
	v, err := x.get(ctx)
	if err != nil {
		return time.Time{}, err
	}
	if v.UpdatedAt.IsZero() {
		return time.Time{}, fmt.Errorf("netlify: variable %s of %s: answer has no updated_at: %w", x.variable, x.target, failure.ErrInvalid)
	}
	return v.UpdatedAt, nil
}

// Apply implements integrations.Integration.
func (x *Netlify) Apply(ctx context.Context, req integrations.ApplyRequest) (integrations.ApplyResult, error) {
	what := fmt.Sprintf("netlify: set variable %s of %s", x.variable, x.target)
	if err := ctx.Err(); err != nil {
		return integrations.ApplyResult{}, fmt.Errorf("%s: %w", what, err)
	}
	if req.Key.IsZero() {
		return integrations.ApplyResult{}, fmt.Errorf("%s: empty key: %w", what, failure.ErrInvalid)
	}
	recorded := req.Last.Fingerprint == req.Key.Fingerprint()
	return rest.RetryConflicts(ctx, func() (integrations.ApplyResult, error) {
		v, err := x.get(ctx)
		if errors.Is(err, failure.ErrNotFound) {
			if err := x.create(ctx, req.Key); err != nil {
				return integrations.ApplyResult{}, err
			}
			return x.written(ctx, req.Key)
		}
		if err != nil {
			return integrations.ApplyResult{}, err
		}
		var todo []string
		for _, c := range x.contexts {
			if val, ok := v.valueFor(c); v.IsSecret || !ok || !secret.New(val).Equal(req.Key) {
				todo = append(todo, c)
			}
		}
		if v.IsSecret && recorded && integrations.SameWrite(v.UpdatedAt, req.Last) {
			todo = nil // rekey wrote this key, and nobody has written since
		}
		if len(todo) == 0 {
			if x.buildHookEnv == "" || recorded {
				return integrations.ApplyResult{Changed: false, At: atOf(v)}, nil
			}
			// Written by an earlier attempt that did not get to build.
			if err := x.build(ctx); err != nil {
				return integrations.ApplyResult{}, err
			}
			return integrations.ApplyResult{Changed: true, At: atOf(v)}, nil
		}
		for _, c := range todo {
			resp, err := x.api.Do(ctx, rest.Request{
				Method: http.MethodPatch, Path: x.varPath(), What: what + " in the " + c + " context", Target: "variable " + x.variable + " of " + x.target,
				Body: map[string]string{"context": c, "value": req.Key.Reveal()},
			})
			if err != nil {
				return integrations.ApplyResult{}, err
			}
			rest.Drain(resp) // it echoes the values
		}
		return x.written(ctx, req.Key)
	})
}

func atOf(v envVar) time.Time {
	if v.UpdatedAt.IsZero() {
		return time.Now()
	}
	return v.UpdatedAt
}

// written finishes a changed write: the build hook, and the time Netlify
// says it was written (for a secret variable's timestamp proof).
func (x *Netlify) written(ctx context.Context, key secret.Key) (integrations.ApplyResult, error) {
	x.log.InfoContext(ctx, "netlify: variable set", "integration", x.id, "target", x.target, "variable", x.variable, "contexts", x.contexts, "fingerprint", key.Fingerprint())
	at := time.Now()
	if v, err := x.get(ctx); err == nil && !v.UpdatedAt.IsZero() {
		at = v.UpdatedAt
	}
	if x.buildHookEnv != "" {
		if err := x.build(ctx); err != nil {
			return integrations.ApplyResult{}, err
		}
	}
	return integrations.ApplyResult{Changed: true, At: at}, nil
}

func (x *Netlify) create(ctx context.Context, key secret.Key) error {
	what := fmt.Sprintf("netlify: create variable %s in %s", x.variable, x.target)
	values := make([]map[string]string, len(x.contexts))
	for i, c := range x.contexts {
		values[i] = map[string]string{"context": c, "value": key.Reveal()}
	}
	resp, err := x.api.Do(ctx, rest.Request{
		Method: http.MethodPost, Path: "accounts/" + url.PathEscape(x.account) + "/env" + x.query(), What: what, Target: x.target,
		Body: []map[string]any{{"key": x.variable, "values": values}},
	})
	if err != nil {
		return err
	}
	rest.Drain(resp)
	return nil
}

// hookURL reads and checks the build hook URL.
func (x *Netlify) hookURL(what string) (string, error) {
	raw := strings.TrimSpace(x.getenv(x.buildHookEnv))
	if raw == "" {
		return "", fmt.Errorf("%s: $%s is empty or not set: %w", what, x.buildHookEnv, failure.ErrInvalid)
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return "", fmt.Errorf("%s: $%s is not a build hook URL: %w", what, x.buildHookEnv, failure.ErrInvalid)
	}
	return raw, nil
}

// build triggers the site's build hook (a credential: its URL never
// reaches an error or a log).
func (x *Netlify) build(ctx context.Context) error {
	what := fmt.Sprintf("netlify: variable %s written; trigger the build hook in $%s for %s", x.variable, x.buildHookEnv, x.target)
	u, err := x.hookURL(what)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(nil))
	if err != nil {
		return fmt.Errorf("%s: %w", what, failure.ErrInvalid)
	}
	req.Header.Set("User-Agent", "rekey")
	resp, err := x.hooks.Do(req)
	if err != nil {
		return httpx.TransportError(ctx, what, err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode == http.StatusNotFound {
		return fmt.Errorf("%s: status 404: the build hook does not exist (deleted?): %w", what, failure.ErrNotFound)
	}
	if resp.StatusCode >= 300 {
		if err := x.api.Failure(resp, rest.Request{What: what, Target: "the build hook"}); err != nil {
			return err
		}
		return fmt.Errorf("%s: unexpected status %d: %w", what, resp.StatusCode, failure.ErrInvalid)
	}
	x.log.InfoContext(ctx, "netlify: build triggered", "integration", x.id, "target", x.target)
	return nil
}

// Preflight implements integrations.Preflighter.
func (x *Netlify) Preflight(ctx context.Context) error {
	what := fmt.Sprintf("netlify: read %s", x.target)
	resp, err := x.api.Do(ctx, rest.Request{Method: http.MethodGet, Path: "sites/" + url.PathEscape(x.site), What: what, Target: "site " + x.site})
	if err != nil {
		return err
	}
	var s struct {
		ID          string `json:"id"`
		AccountID   string `json:"account_id"`
		AccountSlug string `json:"account_slug"`
	}
	if err := rest.Decode(resp, &s, what); err != nil {
		return err
	}
	if x.account != s.AccountID && x.account != s.AccountSlug {
		return fmt.Errorf("%s: the site belongs to account %s, not %s: %w", what, s.AccountSlug, x.account, failure.ErrInvalid)
	}
	if _, err := x.get(ctx); err != nil && !errors.Is(err, failure.ErrNotFound) {
		return err
	}
	if x.buildHookEnv != "" {
		if _, err := x.hookURL("netlify: build hook of " + x.target); err != nil {
			return err
		}
	}
	return nil
}
