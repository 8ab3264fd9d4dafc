// Package heroku is the `heroku` integration type: one config var of a
// Heroku app, through the Platform API (v3).
//
//	integrations:
//	  - {id: spoke, key: actionnetwork-main, type: heroku, app: greens-spoke,
//	     variable: ACTION_NETWORK_API_KEY, token_env: HEROKU_API_KEY}
//
// Fields: app (name or id), variable (the config var), token_env (the
// variable holding a Heroku API token: `heroku authorizations:create`),
// optional api_url (default https://api.heroku.com/) and verify (a probe
// shaped like the http type's: {method, url, headers, expect_status}).
//
// Apply reads the app's config vars (GET /apps/{app}/config-vars) and,
// unless the variable already holds the key, sends PATCH
// /apps/{app}/config-vars with that one variable: Heroku merges it, so no
// other config var is touched. Heroku makes a new release for every
// config change and restarts the app's dynos with it: the restart is
// Heroku's, one per changed write, and nothing is written (so nothing is
// restarted) when the app already holds the key. The answer to a write
// lists every config var of the app; it is never read.
//
// The state is read back (exact): the config var's value against the
// key's fingerprints.
//
// Preflight reads the config vars: on Heroku the permission that shows
// config var values is the one that edits them (deploy or manage), so a
// token that can read them can write them, unless it is an OAuth
// authorization limited to the read-protected scope.
//
// Failures are classified from status and headers only: 401 and 403 are
// unauthorized, 404 (no such app, or not visible to the token) not found,
// 409 and 412 a conflict (retried on a fresh read), 429 a rate limit
// (Heroku refills its token bucket continuously and sends no reset time:
// the wait is a couple of seconds), 5xx transient.
package heroku

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"time"

	"github.com/rekey-dev/rekey/config"
	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/integrations"
	"github.com/rekey-dev/rekey/integrations/internal/platform"
	"github.com/rekey-dev/rekey/integrations/internal/rest"
	"github.com/rekey-dev/rekey/secret"
)

// Type is the name of this integration type in the configuration.
const Type = "heroku"

// DefaultAPIURL is Heroku's Platform API.
const DefaultAPIURL = "https://api.heroku.com/"

// Accept selects version 3 of the Platform API, which Heroku requires.
const Accept = "application/vnd.heroku+json; version=3"

// rateLimitWait is the wait after a 429: Heroku adds about 75 request
// tokens a minute to the account's pool and says nothing about when.
const rateLimitWait = 2 * time.Second

type fields struct {
	platform.Settings `mapstructure:",squash"`
	App               string `mapstructure:"app"`
}

var spec = platform.Spec{
	Variable:     nameRE,
	VariableIs:   "a config var name (letters, digits and '_')",
	VariableHint: "(the config var that holds the key)",
	TokenHint:    "a Heroku API token",
	APIURL:       DefaultAPIURL,
}

// Heroku is one config var of one app.
type Heroku struct {
	id       string
	app      string
	variable string
	target   string // "app greens-spoke"
	api      *rest.Client
	log      *slog.Logger
}

// withVerify is a heroku integration with its verify probe.
type withVerify struct {
	*Heroku
	platform.Verified
}

var (
	_ integrations.Integration = (*Heroku)(nil)
	_ integrations.Reader      = (*Heroku)(nil)
	_ integrations.Preflighter = (*Heroku)(nil)
	_ integrations.Verifier    = withVerify{}
	_ integrations.Factory     = New
)

var (
	appRE  = regexp.MustCompile(`^(?:[a-z][a-z0-9-]{1,29}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$`)
	nameRE = regexp.MustCompile(`^\w+$`) // Heroku's own pattern for config var keys
)

// New builds a heroku integration from its configuration item.
func New(h integrations.Host, in config.Integration) (integrations.Integration, error) {
	var f fields
	if err := h.Config.DecodeSettings(in, &f); err != nil {
		return nil, err
	}
	switch {
	case f.App == "":
		return nil, h.Config.Required(in, "app", "(the Heroku app's name or id)")
	case !appRE.MatchString(f.App):
		return nil, h.Config.Invalid(in, "app", "%q is not a Heroku app name (lower-case letters, digits and dashes, starting with a letter) or id", f.App)
	}
	if err := f.Check(h, in, spec); err != nil {
		return nil, err
	}
	api, err := f.Client(h, in, spec)
	if err != nil {
		return nil, err
	}
	api.Header, api.DefaultWait = http.Header{"Accept": {Accept}}, rateLimitWait
	x := &Heroku{id: in.ID, app: f.App, variable: f.Variable, target: "app " + f.App, log: platform.Logger(h.Logger), api: api}
	probe, ok, err := f.Probe(h, in)
	switch {
	case err != nil:
		return nil, err
	case !ok:
		return x, nil
	}
	return withVerify{Heroku: x, Verified: probe}, nil
}

// ID implements integrations.Integration.
func (x *Heroku) ID() string { return x.id }

func (x *Heroku) varsPath() string { return "apps/" + url.PathEscape(x.app) + "/config-vars" }

// Apply implements integrations.Integration.
func (x *Heroku) Apply(ctx context.Context, req integrations.ApplyRequest) (integrations.ApplyResult, error) {
	what := fmt.Sprintf("heroku: set config var %s on %s", x.variable, x.target)
	if err := ctx.Err(); err != nil {
		return integrations.ApplyResult{}, fmt.Errorf("%s: %w", what, err)
	}
	if req.Key.IsZero() {
		return integrations.ApplyResult{}, fmt.Errorf("%s: empty key: %w", what, failure.ErrInvalid)
	}
	return rest.RetryConflicts(ctx, func() (integrations.ApplyResult, error) {
		held, err := x.read(ctx)
		if err == nil && held.Equal(req.Key) {
			x.log.DebugContext(ctx, "heroku: config var already holds the key", "integration", x.id, "fingerprint", req.Key.Fingerprint())
			return integrations.ApplyResult{Changed: false, At: time.Now()}, nil
		}
		if err != nil && !isMissingVar(err) {
			return integrations.ApplyResult{}, err
		}
		resp, err := x.api.Do(ctx, rest.Request{
			Method: http.MethodPatch, Path: x.varsPath(), What: what, Target: x.target,
			Body: map[string]string{x.variable: req.Key.Reveal()},
		})
		if err != nil {
			return integrations.ApplyResult{}, err
		}
		rest.Drain(resp) // every config var of the app: not ours to read
		x.log.InfoContext(ctx, "heroku: config var set; Heroku restarts the app with a new release", "integration", x.id, "target", x.target, "variable", x.variable, "fingerprint", req.Key.Fingerprint())
		return integrations.ApplyResult{Changed: true, At: time.Now()}, nil
	})
}

// errMissingVar marks a config var the app does not have.
type errMissingVar struct{ error }

func (e errMissingVar) Unwrap() error { return e.error }

func isMissingVar(err error) bool {
	var m errMissingVar
	return errors.As(err, &m)
}

// Read implements integrations.Reader.
func (x *Heroku) Read(ctx context.Context) (secret.Key, error) { return x.read(ctx) }

func (x *Heroku) read(ctx context.Context) (secret.Key, error) {
	what := fmt.Sprintf("heroku: read config vars of %s", x.target)
	resp, err := x.api.Do(ctx, rest.Request{Method: http.MethodGet, Path: x.varsPath(), What: what, Target: x.target})
	if err != nil {
		return secret.Key{}, err
	}
	var vars map[string]*string
	if err := rest.Decode(resp, &vars, what); err != nil {
		return secret.Key{}, err
	}
	v := vars[x.variable]
	if v == nil || *v == "" {
		return secret.Key{}, errMissingVar{fmt.Errorf("heroku: %s has no config var %s: %w", x.target, x.variable, failure.ErrNotFound)}
	}
	return secret.New(*v), nil
}

// Preflight implements integrations.Preflighter: the token is valid, the
// app exists, and the token may see (and so edit) its config vars.
func (x *Heroku) Preflight(ctx context.Context) error {
	_, err := x.read(ctx)
	if isMissingVar(err) {
		return nil // the first write creates it
	}
	return err
}
