// Package vercel is the `vercel` integration type: one environment
// variable of a Vercel project, through Vercel's REST API.
//
//	integrations:
//	  - {id: campaign-vercel, key: actionnetwork-main, type: vercel,
//	     project: campaign-site, team: greens, variable: ACTION_NETWORK_API_KEY,
//	     token_env: VERCEL_TOKEN, targets: [production, preview], redeploy: true}
//
// Fields: project (id or name), variable, token_env (an access token
// scoped to the team), optional team (team id team_…, or slug), targets
// (the environments that get the key: production, preview, development;
// default [production]), redeploy (redeploy the latest ready production
// deployment after a changed write: a site reads the variable at build
// time), api_url (default https://api.vercel.com/) and verify (a probe
// shaped like the http type's).
//
// Apply lists the project's variables (GET /v10/projects/{project}/env),
// reads the value of each entry of the variable that serves one of the
// targets (GET /v1/projects/{project}/env/{id}), and writes each that does
// not hold the key, and creates one for targets no entry serves, with
// POST /v10/projects/{project}/env?upsert=true. An existing entry keeps
// its type and its targets: an entry shared by production and preview
// holds one value, so both get the key. A new entry is of type
// "encrypted". With redeploy, the latest ready production deployment is
// redeployed (GET /v7/deployments, POST /v13/deployments with its id)
// after a changed write, and also when the variable already holds the key
// but rekey has no record of writing it there (an earlier attempt wrote it
// and then failed to redeploy).
//
// The state is read back (exact) where the type allows. A "sensitive"
// variable's value can never be read back: it is proven by its updatedAt
// against rekey's record of writing it (timestamp), else by the verify
// probe.
//
// Preflight reads the project (with the team), its variables, and with
// redeploy its latest ready production deployment.
package vercel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"slices"
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
const Type = "vercel"

// DefaultAPIURL is Vercel's REST API.
const DefaultAPIURL = "https://api.vercel.com/"

// Targets are Vercel's environments.
var Targets = []string{"production", "preview", "development"}

type fields struct {
	platform.Settings `mapstructure:",squash"`
	Project           string   `mapstructure:"project"`
	Team              string   `mapstructure:"team"`
	Targets           []string `mapstructure:"targets"`
	Redeploy          bool     `mapstructure:"redeploy"`
}

var spec = platform.Spec{
	VariableHint: "(the environment variable that holds the key)",
	TokenHint:    "a Vercel access token",
	APIURL:       DefaultAPIURL,
}

// Vercel is one environment variable of one project.
type Vercel struct {
	id        string
	project   string
	variable  string
	team      url.Values // teamId or slug, or nothing
	targets   []string
	redeploy  bool
	target    string // "project campaign-site (team greens)"
	api       *rest.Client
	log       *slog.Logger
	hasProbe  bool
	sensitive atomic.Bool // an entry was last seen sensitive
}

// withVerify is a vercel integration with its verify probe.
type withVerify struct {
	*Vercel
	platform.Verified
}

var (
	_ integrations.Integration = (*Vercel)(nil)
	_ integrations.Reader      = (*Vercel)(nil)
	_ integrations.Timestamper = (*Vercel)(nil)
	_ integrations.Preflighter = (*Vercel)(nil)
	_ integrations.Prover      = (*Vercel)(nil)
	_ integrations.Verifier    = withVerify{}
	_ integrations.Factory     = New
)

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$`)

// New builds a vercel integration from its configuration item.
func New(h integrations.Host, in config.Integration) (integrations.Integration, error) {
	var f fields
	if err := h.Config.DecodeSettings(in, &f); err != nil {
		return nil, err
	}
	switch {
	case f.Project == "":
		return nil, h.Config.Required(in, "project", "(the project's name or id, prj_…)")
	case !nameRE.MatchString(f.Project):
		return nil, h.Config.Invalid(in, "project", "%q is not a project name or id", f.Project)
	}
	if err := f.Check(h, in, spec); err != nil {
		return nil, err
	}
	if f.Team != "" && !nameRE.MatchString(f.Team) {
		return nil, h.Config.Invalid(in, "team", "%q is not a team id or slug", f.Team)
	}
	targets, err := platform.Choices(h, in, "targets", f.Targets, []string{"production"}, Targets)
	if err != nil {
		return nil, err
	}
	if f.Redeploy && !slices.Contains(targets, "production") {
		return nil, h.Config.Invalid(in, "redeploy", "redeploys the production deployment: add production to targets, or drop redeploy")
	}
	api, err := f.Client(h, in, spec)
	if err != nil {
		return nil, err
	}
	api.DefaultWait = 10 * time.Second
	x := &Vercel{id: in.ID, project: f.Project, variable: f.Variable, targets: targets, redeploy: f.Redeploy, log: platform.Logger(h.Logger), team: url.Values{}, api: api}
	x.target = "project " + f.Project
	switch {
	case strings.HasPrefix(f.Team, "team_"):
		x.team.Set("teamId", f.Team)
		x.target += " (team " + f.Team + ")"
	case f.Team != "":
		x.team.Set("slug", f.Team)
		x.target += " (team " + f.Team + ")"
	}
	probe, ok, err := f.Probe(h, in)
	switch {
	case err != nil:
		return nil, err
	case !ok:
		return x, nil
	}
	x.hasProbe = true
	return withVerify{Vercel: x, Verified: probe}, nil
}

// ID implements integrations.Integration.
func (x *Vercel) ID() string { return x.id }

// Proof implements integrations.Prover: exact, unless an entry was found
// sensitive; then its timestamp.
func (x *Vercel) Proof() state.Proof {
	if x.sensitive.Load() {
		return state.Timestamp
	}
	return state.Exact
}

// path joins a path with the team and extra query parameters.
func (x *Vercel) path(p string, extra url.Values) string {
	q := url.Values{}
	for k, v := range x.team {
		q[k] = v
	}
	for k, v := range extra {
		q[k] = v
	}
	if len(q) == 0 {
		return p
	}
	return p + "?" + q.Encode()
}

func (x *Vercel) projectPath() string { return url.PathEscape(x.project) }

// entry is one of Vercel's environment variable records.
type entry struct {
	ID        string   `json:"id"`
	Key       string   `json:"key"`
	Type      string   `json:"type"`
	Target    []string `json:"target"`
	GitBranch string   `json:"gitBranch"`
	UpdatedAt int64    `json:"updatedAt"` // Unix milliseconds
}

func (e entry) serves(targets []string) bool {
	return slices.ContainsFunc(e.Target, func(t string) bool { return slices.Contains(targets, t) })
}

// entries lists the entries of the variable that serve a configured target
// (branch-specific preview entries aside).
func (x *Vercel) entries(ctx context.Context) ([]entry, error) {
	what := fmt.Sprintf("vercel: list variables of %s", x.target)
	resp, err := x.api.Do(ctx, rest.Request{Method: http.MethodGet, Path: x.path("v10/projects/"+x.projectPath()+"/env", nil), What: what, Target: x.target})
	if err != nil {
		return nil, err
	}
	// The listing carries every variable's value (encrypted, or plain for
	// plain ones): only the fields below are kept.
	var out struct {
		Envs []entry `json:"envs"`
	}
	if err := rest.Decode(resp, &out, what); err != nil {
		return nil, err
	}
	var mine []entry
	sensitive := false
	for _, e := range out.Envs {
		if e.Key == x.variable && e.GitBranch == "" && e.serves(x.targets) {
			mine = append(mine, e)
			sensitive = sensitive || e.Type == "sensitive"
		}
	}
	x.sensitive.Store(sensitive)
	return mine, nil
}

// value reads an entry's decrypted value; a sensitive entry's wraps
// integrations.ErrWriteOnly.
func (x *Vercel) value(ctx context.Context, e entry) (secret.Key, error) {
	what := fmt.Sprintf("vercel: read variable %s (%s) of %s", x.variable, strings.Join(e.Target, ", "), x.target)
	if e.Type == "sensitive" {
		return secret.Key{}, fmt.Errorf("%s: it is sensitive: %w", what, integrations.ErrWriteOnly)
	}
	resp, err := x.api.Do(ctx, rest.Request{Method: http.MethodGet, Path: x.path("v1/projects/"+x.projectPath()+"/env/"+url.PathEscape(e.ID), nil), What: what, Target: "variable " + x.variable + " of " + x.target})
	if err != nil {
		return secret.Key{}, err
	}
	var v struct {
		Value     *string `json:"value"`
		Decrypted *bool   `json:"decrypted"`
		Type      string  `json:"type"`
	}
	if err := rest.Decode(resp, &v, what); err != nil {
		return secret.Key{}, err
	}
	switch {
	case v.Type == "sensitive":
		return secret.Key{}, fmt.Errorf("%s: it is sensitive: %w", what, integrations.ErrWriteOnly)
	case v.Decrypted != nil && !*v.Decrypted:
		return secret.Key{}, fmt.Errorf("%s: Vercel did not decrypt it: %w", what, failure.ErrInvalid)
	case v.Value == nil || *v.Value == "":
		return secret.Key{}, fmt.Errorf("%s: it is empty: %w", what, failure.ErrNotFound)
	}
	return secret.New(*v.Value), nil
}

// uncovered lists the configured targets no entry serves.
func (x *Vercel) uncovered(es []entry) []string {
	var out []string
	for _, t := range x.targets {
		if !slices.ContainsFunc(es, func(e entry) bool { return slices.Contains(e.Target, t) }) {
			out = append(out, t)
		}
	}
	return out
}

// Read implements integrations.Reader: the key every configured target
// gets.
func (x *Vercel) Read(ctx context.Context) (secret.Key, error) {
	es, err := x.entries(ctx)
	if err != nil {
		return secret.Key{}, err
	}
	what := fmt.Sprintf("vercel: variable %s of %s", x.variable, x.target)
	if miss := x.uncovered(es); len(miss) > 0 {
		return secret.Key{}, fmt.Errorf("%s: no value for %s: %w", what, strings.Join(miss, ", "), failure.ErrNotFound)
	}
	var held secret.Key
	for i, e := range es {
		k, err := x.value(ctx, e)
		switch {
		case err != nil:
			return secret.Key{}, err
		case i == 0:
			held = k
		case !k.Equal(held):
			return secret.Key{}, fmt.Errorf("%s holds different values for %s and %s: %w", what, strings.Join(es[0].Target, ", "), strings.Join(e.Target, ", "), failure.ErrInvalid)
		}
	}
	return held, nil
}

// UpdatedAt implements integrations.Timestamper: the oldest last update of
// the entries serving the configured targets.
func (x *Vercel) UpdatedAt(ctx context.Context) (time.Time, error) {
	es, err := x.entries(ctx)
	if err != nil {
		return time.Time{}, err
	}
	if miss := x.uncovered(es); len(miss) > 0 {
		return time.Time{}, fmt.Errorf("vercel: variable %s of %s: no value for %s: %w", x.variable, x.target, strings.Join(miss, ", "), failure.ErrNotFound)
	}
	return oldest(es), nil
}

func oldest(es []entry) time.Time {
	var at time.Time
	for _, e := range es {
		t := time.UnixMilli(e.UpdatedAt)
		if at.IsZero() || t.Before(at) {
			at = t
		}
	}
	return at
}

// Apply implements integrations.Integration.
func (x *Vercel) Apply(ctx context.Context, req integrations.ApplyRequest) (integrations.ApplyResult, error) {
	what := fmt.Sprintf("vercel: set variable %s of %s", x.variable, x.target)
	if err := ctx.Err(); err != nil {
		return integrations.ApplyResult{}, fmt.Errorf("%s: %w", what, err)
	}
	if req.Key.IsZero() {
		return integrations.ApplyResult{}, fmt.Errorf("%s: empty key: %w", what, failure.ErrInvalid)
	}
	recorded := req.Last.Fingerprint == req.Key.Fingerprint()
	return rest.RetryConflicts(ctx, func() (integrations.ApplyResult, error) {
		es, err := x.entries(ctx)
		if err != nil {
			return integrations.ApplyResult{}, err
		}
		type upsert struct {
			typ     string
			targets []string
		}
		var todo []upsert
		for _, e := range es {
			k, err := x.value(ctx, e)
			switch {
			case errors.Is(err, integrations.ErrWriteOnly):
				if recorded && integrations.SameWrite(time.UnixMilli(e.UpdatedAt), req.Last) {
					continue // rekey wrote this key, and nobody has written since
				}
			case err != nil:
				return integrations.ApplyResult{}, err
			case k.Equal(req.Key):
				continue
			}
			todo = append(todo, upsert{e.Type, e.Target})
		}
		if miss := x.uncovered(es); len(miss) > 0 {
			todo = append(todo, upsert{"encrypted", miss})
		}
		if len(todo) == 0 {
			if !x.redeploy || recorded {
				return integrations.ApplyResult{Changed: false, At: oldest(es)}, nil
			}
			// Written by an earlier attempt that did not get to redeploy.
			if err := x.redeployLatest(ctx); err != nil {
				return integrations.ApplyResult{}, err
			}
			return integrations.ApplyResult{Changed: true, At: oldest(es)}, nil
		}
		for _, u := range todo {
			resp, err := x.api.Do(ctx, rest.Request{
				Method: http.MethodPost, Path: x.path("v10/projects/"+x.projectPath()+"/env", url.Values{"upsert": {"true"}}),
				What: what + " for " + strings.Join(u.targets, ", "), Target: x.target,
				Body: map[string]any{"key": x.variable, "value": req.Key.Reveal(), "type": u.typ, "target": u.targets},
			})
			if err != nil {
				return integrations.ApplyResult{}, err
			}
			var out struct {
				Failed []struct {
					Error struct {
						Code string `json:"code"`
					} `json:"error"`
				} `json:"failed"`
			}
			if err := rest.Decode(resp, &out, what); err != nil {
				return integrations.ApplyResult{}, err
			}
			if len(out.Failed) > 0 {
				// Vercel's code only: its message and value fields may hold the key.
				return integrations.ApplyResult{}, fmt.Errorf("%s for %s: Vercel refused it (%s): %w", what, strings.Join(u.targets, ", "), safeCode(out.Failed[0].Error.Code), failure.ErrInvalid)
			}
		}
		x.log.InfoContext(ctx, "vercel: variable set", "integration", x.id, "target", x.target, "variable", x.variable, "targets", x.targets, "fingerprint", req.Key.Fingerprint())
		at := time.Now()
		if es, err := x.entries(ctx); err == nil && len(x.uncovered(es)) == 0 {
			at = oldest(es) // Vercel's clock, for the timestamp proof
		}
		if x.redeploy {
			if err := x.redeployLatest(ctx); err != nil {
				return integrations.ApplyResult{}, err
			}
		}
		return integrations.ApplyResult{Changed: true, At: at}, nil
	})
}

var codeRE = regexp.MustCompile(`^[A-Za-z0-9_]{1,64}$`)

func safeCode(c string) string {
	if codeRE.MatchString(c) {
		return c
	}
	return "no code given"
}

// projectInfo reads the project's id and name.
func (x *Vercel) projectInfo(ctx context.Context, what string) (id, name string, err error) {
	resp, err := x.api.Do(ctx, rest.Request{Method: http.MethodGet, Path: x.path("v9/projects/"+x.projectPath(), nil), What: what, Target: x.target})
	if err != nil {
		return "", "", err
	}
	var p struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	}
	if err := rest.Decode(resp, &p, what); err != nil {
		return "", "", err
	}
	return p.ID, p.Name, nil
}

// latest finds the latest ready production deployment.
func (x *Vercel) latest(ctx context.Context, what string) (projectName, deployment string, err error) {
	id, name, err := x.projectInfo(ctx, what)
	if err != nil {
		return "", "", err
	}
	resp, err := x.api.Do(ctx, rest.Request{
		Method: http.MethodGet, Path: x.path("v7/deployments", url.Values{"projectId": {id}, "target": {"production"}, "state": {"READY"}, "limit": {"1"}}),
		What: what, Target: x.target,
	})
	if err != nil {
		return "", "", err
	}
	var out struct {
		Deployments []struct {
			UID string `json:"uid"`
		} `json:"deployments"`
	}
	if err := rest.Decode(resp, &out, what); err != nil {
		return "", "", err
	}
	if len(out.Deployments) == 0 || out.Deployments[0].UID == "" {
		return "", "", fmt.Errorf("%s: the project has no ready production deployment to redeploy: %w", what, failure.ErrNotFound)
	}
	return name, out.Deployments[0].UID, nil
}

func (x *Vercel) redeployLatest(ctx context.Context) error {
	what := fmt.Sprintf("vercel: variable %s written; redeploy production of %s", x.variable, x.target)
	name, dep, err := x.latest(ctx, what)
	if err != nil {
		return err
	}
	resp, err := x.api.Do(ctx, rest.Request{
		Method: http.MethodPost, Path: x.path("v13/deployments", nil), What: what, Target: x.target,
		Body: map[string]string{"name": name, "deploymentId": dep, "target": "production"},
	})
	if err != nil {
		return err
	}
	var d struct {
		ID string `json:"id"`
	}
	if err := rest.Decode(resp, &d, what); err != nil {
		return err
	}
	x.log.InfoContext(ctx, "vercel: redeploy started", "integration", x.id, "target", x.target, "from", dep, "deployment", d.ID)
	return nil
}

// Preflight implements integrations.Preflighter.
func (x *Vercel) Preflight(ctx context.Context) error {
	what := fmt.Sprintf("vercel: read %s", x.target)
	if _, _, err := x.projectInfo(ctx, what); err != nil {
		return err
	}
	if _, err := x.entries(ctx); err != nil {
		return err
	}
	if x.redeploy {
		if _, _, err := x.latest(ctx, what); err != nil {
			return err
		}
	}
	return nil
}
