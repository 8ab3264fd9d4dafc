// Package gitlab is the `gitlab` integration type: one CI/CD variable of a
// GitLab project, through the REST API (v4), on gitlab.com or a
// self-managed instance.
//
//	integrations:
//	  - {id: gitlab-ci, key: actionnetwork-main, type: gitlab, project: greens/campaign-site,
//	     variable: ACTION_NETWORK_API_KEY, token_env: GITLAB_TOKEN}
//	  - {id: gitlab-prod, key: actionnetwork-main, type: gitlab, project: "4711",
//	     variable: ACTION_NETWORK_API_KEY, environment_scope: production,
//	     token_env: GITLAB_TOKEN, api_url: https://gitlab.greens.example/api/v4/}
//
// Fields: project (numeric id or full path), variable, token_env (a
// personal, group or project access token with the api scope, of a
// Maintainer), optional environment_scope (default "*"), api_url (default
// https://gitlab.com/api/v4/) and verify (a probe shaped like the http
// type's).
//
// Apply reads the variable (GET /projects/:id/variables/:key with
// filter[environment_scope]) and, unless it already holds the key, sends
// PUT /projects/:id/variables/:key with the value alone: its masked,
// hidden, protected and raw flags stay as they are (GitLab refuses any
// change of masking on a hidden variable). A variable that does not exist
// is created (POST /projects/:id/variables) masked and raw, so the key
// never shows in a job log nor is expanded; if someone creates it first
// (GitLab answers 400 "has already been taken"), it is read again and
// updated.
//
// The state is read back (exact), unless the variable is hidden: GitLab
// never shows a hidden variable's value and keeps no time of its last
// change, so its state can only come from the verify probe; without one it
// is unknown ("written, not provable; add a verify probe"). For a hidden
// variable Apply trusts rekey's record of writing it.
//
// Preflight reads the project (a Maintainer or Owner may change its
// variables) and the variable: reading CI/CD variables takes the same role
// as writing them.
package gitlab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
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
	"github.com/rekey-dev/rekey/integrations/internal/platform"
	"github.com/rekey-dev/rekey/integrations/internal/rest"
	"github.com/rekey-dev/rekey/secret"
	"github.com/rekey-dev/rekey/state"
)

// Type is the name of this integration type in the configuration.
const Type = "gitlab"

// DefaultAPIURL is gitlab.com's REST API.
const DefaultAPIURL = "https://gitlab.com/api/v4/"

// maintainer is GitLab's access level that may change CI/CD variables.
const maintainer = 40

type fields struct {
	platform.Settings `mapstructure:",squash"`
	Project           string `mapstructure:"project"`
	EnvironmentScope  string `mapstructure:"environment_scope"`
}

var spec = platform.Spec{
	Variable:     varRE,
	VariableIs:   "a CI/CD variable key (letters, digits and '_')",
	VariableHint: "(the CI/CD variable that holds the key)",
	TokenHint:    "a GitLab access token with the api scope",
	APIURL:       DefaultAPIURL,
}

// GitLab is one CI/CD variable of one project.
type GitLab struct {
	id       string
	project  string
	variable string
	scope    string
	target   string // "project greens/site"
	api      *rest.Client
	log      *slog.Logger
	hasProbe bool
	hidden   atomic.Bool // the variable was last seen hidden
}

// withVerify is a gitlab integration with its verify probe.
type withVerify struct {
	*GitLab
	platform.Verified
}

var (
	_ integrations.Integration = (*GitLab)(nil)
	_ integrations.Reader      = (*GitLab)(nil)
	_ integrations.Preflighter = (*GitLab)(nil)
	_ integrations.Prover      = (*GitLab)(nil)
	_ integrations.Verifier    = withVerify{}
	_ integrations.Factory     = New
)

var (
	projectRE = regexp.MustCompile(`^(?:[0-9]+|[A-Za-z0-9_.][A-Za-z0-9_.-]*(?:/[A-Za-z0-9_.][A-Za-z0-9_.-]*)+)$`)
	varRE     = regexp.MustCompile(`^[A-Za-z0-9_]{1,255}$`) // GitLab's rule for variable keys
)

// New builds a gitlab integration from its configuration item.
func New(h integrations.Host, in config.Integration) (integrations.Integration, error) {
	var f fields
	if err := h.Config.DecodeSettings(in, &f); err != nil {
		return nil, err
	}
	switch {
	case f.Project == "":
		return nil, h.Config.Required(in, "project", "(the project's numeric id or full path, like greens/campaign-site)")
	case !projectRE.MatchString(f.Project):
		return nil, h.Config.Invalid(in, "project", "%q is not a project id or a full path like group/project", f.Project)
	}
	if err := f.Check(h, in, spec); err != nil {
		return nil, err
	}
	if strings.ContainsAny(f.EnvironmentScope, " \t\r\n") {
		return nil, h.Config.Invalid(in, "environment_scope", "%q holds white space", f.EnvironmentScope)
	}
	if f.EnvironmentScope == "" {
		f.EnvironmentScope = "*"
	}
	api, err := f.Client(h, in, spec)
	if err != nil {
		return nil, err
	}
	api.DefaultWait, api.Explain = time.Minute, explain
	x := &GitLab{id: in.ID, project: f.Project, variable: f.Variable, scope: f.EnvironmentScope, log: platform.Logger(h.Logger), api: api}
	x.target = "project " + f.Project
	if x.scope != "*" {
		x.target += " (environment scope " + x.scope + ")"
	}
	probe, ok, err := f.Probe(h, in)
	switch {
	case err != nil:
		return nil, err
	case !ok:
		return x, nil
	}
	x.hasProbe = true
	return withVerify{GitLab: x, Verified: probe}, nil
}

// explain tells a lost creation race (GitLab answers 400 "has already been
// taken") from a bad request. Its shape is rest.Client's Explain: the
// failure class, then the words.
//
//lint:ignore ST1008 the class is what the caller branches on, not an error result
func explain(code int, body []byte) (error, string) {
	if code == http.StatusBadRequest && bytes.Contains(body, []byte("has already been taken")) {
		return failure.ErrConflict, "the variable was created meanwhile"
	}
	if code == http.StatusBadRequest && bytes.Contains(body, []byte("cannot be changed for masked and hidden")) {
		return failure.ErrInvalid, "GitLab refuses to change the masking of a hidden variable"
	}
	if code == http.StatusBadRequest && bytes.Contains(body, []byte(`"value"`)) {
		return failure.ErrInvalid, "GitLab refuses the value (a masked variable's value must meet GitLab's masking rules)"
	}
	return nil, ""
}

// ID implements integrations.Integration.
func (x *GitLab) ID() string { return x.id }

// Proof implements integrations.Prover: exact, unless the variable was
// found hidden; then the probe, or nothing.
func (x *GitLab) Proof() state.Proof {
	switch {
	case !x.hidden.Load():
		return state.Exact
	case x.hasProbe:
		return state.Probe
	}
	return state.NoProof
}

func (x *GitLab) projectPath() string { return "projects/" + url.PathEscape(x.project) }

func (x *GitLab) varPath() string {
	return x.projectPath() + "/variables/" + url.PathEscape(x.variable) + "?" + url.Values{"filter[environment_scope]": {x.scope}}.Encode()
}

// variable is what GitLab answers for a variable (value null when hidden).
type variable struct {
	Key    string  `json:"key"`
	Value  *string `json:"value"`
	Hidden bool    `json:"hidden"`
	Masked bool    `json:"masked"`
}

func (x *GitLab) get(ctx context.Context) (variable, error) {
	what := fmt.Sprintf("gitlab: read variable %s of %s", x.variable, x.target)
	resp, err := x.api.Do(ctx, rest.Request{Method: http.MethodGet, Path: x.varPath(), What: what, Target: "variable " + x.variable + " of " + x.target})
	if err != nil {
		return variable{}, err
	}
	var v variable
	if err := rest.Decode(resp, &v, what); err != nil {
		return variable{}, err
	}
	x.hidden.Store(v.Hidden)
	return v, nil
}

// Read implements integrations.Reader. A hidden variable's Read wraps
// integrations.ErrWriteOnly.
func (x *GitLab) Read(ctx context.Context) (secret.Key, error) {
	v, err := x.get(ctx)
	switch {
	case err != nil:
		return secret.Key{}, err
	case v.Hidden:
		return secret.Key{}, fmt.Errorf("gitlab: variable %s of %s is hidden: %w", x.variable, x.target, integrations.ErrWriteOnly)
	case v.Value == nil || *v.Value == "":
		return secret.Key{}, fmt.Errorf("gitlab: variable %s of %s is empty: %w", x.variable, x.target, failure.ErrNotFound)
	}
	return secret.New(*v.Value), nil
}

// Apply implements integrations.Integration.
func (x *GitLab) Apply(ctx context.Context, req integrations.ApplyRequest) (integrations.ApplyResult, error) {
	what := fmt.Sprintf("gitlab: set variable %s of %s", x.variable, x.target)
	if err := ctx.Err(); err != nil {
		return integrations.ApplyResult{}, fmt.Errorf("%s: %w", what, err)
	}
	if req.Key.IsZero() {
		return integrations.ApplyResult{}, fmt.Errorf("%s: empty key: %w", what, failure.ErrInvalid)
	}
	return rest.RetryConflicts(ctx, func() (integrations.ApplyResult, error) {
		v, err := x.get(ctx)
		switch {
		case errors.Is(err, failure.ErrNotFound):
			return x.create(ctx, req.Key)
		case err != nil:
			return integrations.ApplyResult{}, err
		case !v.Hidden && v.Value != nil && secret.New(*v.Value).Equal(req.Key):
			return integrations.ApplyResult{Changed: false, At: time.Now()}, nil
		case v.Hidden && req.Last.Fingerprint == req.Key.Fingerprint():
			x.log.DebugContext(ctx, "gitlab: hidden variable; rekey's record says it holds the key", "integration", x.id, "fingerprint", req.Key.Fingerprint())
			return integrations.ApplyResult{Changed: false, At: req.Last.At}, nil
		}
		resp, err := x.api.Do(ctx, rest.Request{
			Method: http.MethodPut, Path: x.varPath(), What: what, Target: "variable " + x.variable + " of " + x.target,
			Body: map[string]string{"value": req.Key.Reveal()},
		})
		if err != nil {
			return integrations.ApplyResult{}, err
		}
		rest.Drain(resp) // it echoes the value
		x.log.InfoContext(ctx, "gitlab: variable updated", "integration", x.id, "target", x.target, "variable", x.variable, "hidden", v.Hidden, "fingerprint", req.Key.Fingerprint())
		return integrations.ApplyResult{Changed: true, At: time.Now()}, nil
	})
}

func (x *GitLab) create(ctx context.Context, key secret.Key) (integrations.ApplyResult, error) {
	what := fmt.Sprintf("gitlab: create variable %s in %s", x.variable, x.target)
	resp, err := x.api.Do(ctx, rest.Request{
		Method: http.MethodPost, Path: x.projectPath() + "/variables", What: what, Target: x.target,
		Body: map[string]any{
			"key": x.variable, "value": key.Reveal(), "environment_scope": x.scope,
			"variable_type": "env_var", "masked": true, "raw": true,
		},
	})
	if err != nil {
		return integrations.ApplyResult{}, err
	}
	rest.Drain(resp)
	x.hidden.Store(false)
	x.log.InfoContext(ctx, "gitlab: variable created, masked", "integration", x.id, "target", x.target, "variable", x.variable, "fingerprint", key.Fingerprint())
	return integrations.ApplyResult{Changed: true, At: time.Now()}, nil
}

// Preflight implements integrations.Preflighter: the token is valid, the
// project exists, the token's user is a Maintainer or Owner there, and
// it can read the project's variables.
func (x *GitLab) Preflight(ctx context.Context) error {
	what := fmt.Sprintf("gitlab: read %s", x.target)
	resp, err := x.api.Do(ctx, rest.Request{Method: http.MethodGet, Path: x.projectPath(), What: what, Target: x.target})
	if err != nil {
		return err
	}
	var p struct {
		Permissions *struct {
			ProjectAccess *struct {
				AccessLevel int `json:"access_level"`
			} `json:"project_access"`
			GroupAccess *struct {
				AccessLevel int `json:"access_level"`
			} `json:"group_access"`
		} `json:"permissions"`
	}
	if err := rest.Decode(resp, &p, what); err != nil {
		return err
	}
	if pm := p.Permissions; pm != nil && (pm.ProjectAccess != nil || pm.GroupAccess != nil) {
		level := 0
		if pm.ProjectAccess != nil {
			level = pm.ProjectAccess.AccessLevel
		}
		if pm.GroupAccess != nil {
			level = max(level, pm.GroupAccess.AccessLevel)
		}
		if level < maintainer {
			return fmt.Errorf("%s: the token's user has access level %d there; changing CI/CD variables takes Maintainer (40): %w", what, level, failure.ErrUnauthorized)
		}
	}
	if _, err := x.get(ctx); err != nil && !errors.Is(err, failure.ErrNotFound) {
		return err
	}
	return nil
}
