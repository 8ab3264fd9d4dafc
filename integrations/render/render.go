// Package render is the `render` integration type: one environment
// variable of a Render service, through Render's REST API (v1).
//
//	integrations:
//	  - {id: spoke-render, key: actionnetwork-main, type: render,
//	     service: srv-cq1example0000000000, variable: ACTION_NETWORK_API_KEY,
//	     token_env: RENDER_API_KEY, deploy: true}
//
// Fields: service (the service id, srv-…), variable, token_env (the
// variable holding a Render API key), optional deploy (start a deploy
// after a changed write, so the running service gets the key), api_url
// (default https://api.render.com/v1/) and verify (a probe shaped like the
// http type's).
//
// Apply reads the variable (GET /services/{id}/env-vars/{key}) and, unless
// it already holds the key, writes that one variable (PUT
// /services/{id}/env-vars/{key}). It never uses PUT /services/{id}/env-vars,
// which replaces every variable of the service: no other variable can be
// dropped. With deploy, a deploy is started (POST
// /services/{id}/deploys) after a changed write, and also when the
// variable already holds the key but rekey has no record of writing it
// there (an earlier attempt wrote it and then failed to deploy): one
// deploy per rotation, none when resume finds the service current.
//
// The state is read back (exact). Preflight reads the service and the
// variable: a Render API key acts for its owner, so one that can read a
// service can change it.
//
// Failures are classified from status and headers only; a 429 waits what
// Ratelimit-Reset says (Render allows 30 writes a minute, and 10 deploys a
// minute per service).
package render

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
const Type = "render"

// DefaultAPIURL is Render's REST API.
const DefaultAPIURL = "https://api.render.com/v1/"

type fields struct {
	platform.Settings `mapstructure:",squash"`
	Service           string `mapstructure:"service"`
	Deploy            bool   `mapstructure:"deploy"`
}

var spec = platform.Spec{
	VariableHint: "(the environment variable that holds the key)",
	TokenHint:    "a Render API key",
	APIURL:       DefaultAPIURL,
}

// Render is one environment variable of one service.
type Render struct {
	id       string
	service  string
	variable string
	deploy   bool
	target   string // "service srv-…"
	api      *rest.Client
	log      *slog.Logger
}

// withVerify is a render integration with its verify probe.
type withVerify struct {
	*Render
	platform.Verified
}

var (
	_ integrations.Integration = (*Render)(nil)
	_ integrations.Reader      = (*Render)(nil)
	_ integrations.Preflighter = (*Render)(nil)
	_ integrations.Verifier    = withVerify{}
	_ integrations.Factory     = New
)

var serviceRE = regexp.MustCompile(`^(?:srv|crn)-[a-z0-9]{6,}$`)

// New builds a render integration from its configuration item.
func New(h integrations.Host, in config.Integration) (integrations.Integration, error) {
	var f fields
	if err := h.Config.DecodeSettings(in, &f); err != nil {
		return nil, err
	}
	switch {
	case f.Service == "":
		return nil, h.Config.Required(in, "service", "(the service's id, srv-…, from its dashboard URL)")
	case !serviceRE.MatchString(f.Service):
		return nil, h.Config.Invalid(in, "service", "%q is not a Render service id (srv-… or crn-…)", f.Service)
	}
	if err := f.Check(h, in, spec); err != nil {
		return nil, err
	}
	api, err := f.Client(h, in, spec)
	if err != nil {
		return nil, err
	}
	api.DefaultWait = 10 * time.Second
	x := &Render{id: in.ID, service: f.Service, variable: f.Variable, deploy: f.Deploy, target: "service " + f.Service, log: platform.Logger(h.Logger), api: api}
	probe, ok, err := f.Probe(h, in)
	switch {
	case err != nil:
		return nil, err
	case !ok:
		return x, nil
	}
	return withVerify{Render: x, Verified: probe}, nil
}

// ID implements integrations.Integration.
func (x *Render) ID() string { return x.id }

func (x *Render) varPath() string {
	return "services/" + url.PathEscape(x.service) + "/env-vars/" + url.PathEscape(x.variable)
}

// Apply implements integrations.Integration.
func (x *Render) Apply(ctx context.Context, req integrations.ApplyRequest) (integrations.ApplyResult, error) {
	what := fmt.Sprintf("render: set env var %s on %s", x.variable, x.target)
	if err := ctx.Err(); err != nil {
		return integrations.ApplyResult{}, fmt.Errorf("%s: %w", what, err)
	}
	if req.Key.IsZero() {
		return integrations.ApplyResult{}, fmt.Errorf("%s: empty key: %w", what, failure.ErrInvalid)
	}
	return rest.RetryConflicts(ctx, func() (integrations.ApplyResult, error) {
		held, err := x.Read(ctx)
		switch {
		case err == nil && held.Equal(req.Key):
			if !x.deploy || req.Last.Fingerprint == req.Key.Fingerprint() {
				return integrations.ApplyResult{Changed: false, At: time.Now()}, nil
			}
			// Written by an earlier attempt that did not get to deploy.
			if err := x.startDeploy(ctx); err != nil {
				return integrations.ApplyResult{}, err
			}
			return integrations.ApplyResult{Changed: true, At: time.Now()}, nil
		case err != nil && !errors.Is(err, failure.ErrNotFound):
			return integrations.ApplyResult{}, err
		}
		resp, err := x.api.Do(ctx, rest.Request{
			Method: http.MethodPut, Path: x.varPath(), What: what, Target: x.target,
			Body: map[string]string{"value": req.Key.Reveal()},
		})
		if err != nil {
			return integrations.ApplyResult{}, err
		}
		rest.Drain(resp) // it echoes the value
		x.log.InfoContext(ctx, "render: env var set", "integration", x.id, "target", x.target, "variable", x.variable, "fingerprint", req.Key.Fingerprint())
		if x.deploy {
			if err := x.startDeploy(ctx); err != nil {
				return integrations.ApplyResult{}, err
			}
		}
		return integrations.ApplyResult{Changed: true, At: time.Now()}, nil
	})
}

func (x *Render) startDeploy(ctx context.Context) error {
	what := fmt.Sprintf("render: env var %s written; start a deploy of %s", x.variable, x.target)
	resp, err := x.api.Do(ctx, rest.Request{
		Method: http.MethodPost, Path: "services/" + url.PathEscape(x.service) + "/deploys", What: what, Target: x.target,
		Body: map[string]string{"clearCache": "do_not_clear"},
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
	x.log.InfoContext(ctx, "render: deploy started", "integration", x.id, "target", x.target, "deploy", d.ID)
	return nil
}

// Read implements integrations.Reader.
func (x *Render) Read(ctx context.Context) (secret.Key, error) {
	what := fmt.Sprintf("render: read env var %s of %s", x.variable, x.target)
	resp, err := x.api.Do(ctx, rest.Request{Method: http.MethodGet, Path: x.varPath(), What: what, Target: "env var " + x.variable + " of " + x.target})
	if err != nil {
		return secret.Key{}, err
	}
	var v struct {
		Key   string  `json:"key"`
		Value *string `json:"value"`
	}
	if err := rest.Decode(resp, &v, what); err != nil {
		return secret.Key{}, err
	}
	if v.Value == nil || *v.Value == "" {
		return secret.Key{}, fmt.Errorf("%s: it is empty: %w", what, failure.ErrNotFound)
	}
	return secret.New(*v.Value), nil
}

// Preflight implements integrations.Preflighter: the token is valid and the
// service exists and is not suspended.
func (x *Render) Preflight(ctx context.Context) error {
	what := fmt.Sprintf("render: read %s", x.target)
	resp, err := x.api.Do(ctx, rest.Request{Method: http.MethodGet, Path: "services/" + url.PathEscape(x.service), What: what, Target: x.target})
	if err != nil {
		return err
	}
	var s struct {
		ID        string `json:"id"`
		Suspended string `json:"suspended"`
	}
	if err := rest.Decode(resp, &s, what); err != nil {
		return err
	}
	if x.deploy && s.Suspended == "suspended" {
		return fmt.Errorf("%s: the service is suspended, so it cannot be deployed: %w", what, failure.ErrInvalid)
	}
	if _, err := x.Read(ctx); err != nil && !errors.Is(err, failure.ErrNotFound) {
		return err
	}
	return nil
}
