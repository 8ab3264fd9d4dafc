// Package manual is the manual integration type: a place only a person
// can update (CallHub's settings page, a partner's dashboard).
//
//	integrations:
//	  - {id: callhub, key: actionnetwork-main, type: manual, owner: "<@U0CALL>",
//	    instructions: "CallHub → Settings → Integrations → Action Network → paste the key",
//	    verify: {http: {url: "https://api.callhub.io/v1/health", headers: {Authorization: "Token ${CALLHUB_TOKEN}"}}}}
//
// Fields: owner (required) and instructions are the item's own; handoff
// (below) and verify are optional; verify is one of
//
//   - {http: {method, url, headers, expect_status}}: one request, exactly
//     as an http integration's verify (package integrations/http): method
//     defaults to GET; the probe passes when the status is expect_status,
//     or any 2xx when it is not given; ${VAR} in url and headers is taken
//     from rekey's environment when the probe runs. Redirects to another
//     host are refused. The response body is never read into an error.
//   - {exec: [argv]}: a command; exit 0 passes. It runs as the exec type's
//     commands do (package command): no key, a minimal environment, its
//     output never read; exit 75 is transient.
//
// handoff is optional: {ttl: 24h} makes the engine give the owner alone a
// single-use hand-off code (a Vault response-wrapping token) for the new
// key once it is stored; ttl is how long the code works, from one second
// to MaxHandoffTTL. HandoffTTL says it.
//
// Apply writes nothing and returns Changed false: the engine asks the
// owner. Until `rekey confirm`, integrations.Observe reports the
// integration pending; after, the probe, when there is one, decides. The
// value New returns is a Verifier only when verify is set.
package manual

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/rekey-dev/rekey/config"
	"github.com/rekey-dev/rekey/integrations"
	httpint "github.com/rekey-dev/rekey/integrations/http"
	"github.com/rekey-dev/rekey/integrations/internal/command"
)

// Type is the integration type's name in the configuration.
const Type = "manual"

type settings struct {
	Verify  *verifySettings  `mapstructure:"verify"`
	Handoff *handoffSettings `mapstructure:"handoff"`
}

type handoffSettings struct {
	TTL config.Duration `mapstructure:"ttl"`
}

// MaxHandoffTTL is the longest a hand-off code may work: Vault's default
// max_lease_ttl (32 days) bounds a response-wrapping token's TTL.
const MaxHandoffTTL = 32 * 24 * time.Hour

type verifySettings struct {
	HTTP map[string]any `mapstructure:"http"` // decoded by integrations/http
	Exec []string       `mapstructure:"exec"`
}

// Manual is an integration a person updates.
type Manual struct {
	id           string
	owner        string
	instructions string
	handoff      time.Duration // 0: no hand-off
}

// verifier is a Manual with a probe.
type verifier struct {
	*Manual
	http   integrations.Verifier
	exec   []string
	getenv func(string) string
}

var (
	_ integrations.Integration = (*Manual)(nil)
	_ integrations.Manual      = (*Manual)(nil)
	_ integrations.Verifier    = (*verifier)(nil)
	_ integrations.Factory     = New
)

// New builds a manual integration from its configuration item.
func New(h integrations.Host, in config.Integration) (integrations.Integration, error) {
	cfg := h.Config
	var s settings
	if err := cfg.DecodeSettings(in, &s); err != nil {
		return nil, err
	}
	if strings.TrimSpace(in.Owner) == "" {
		return nil, cfg.Required(in, "owner", "for type manual (who updates it, e.g. \"<@U0CALL>\")")
	}
	m := &Manual{id: in.ID, owner: in.Owner, instructions: in.Instructions}
	if h := s.Handoff; h != nil {
		switch ttl := h.TTL.D(); {
		case ttl == 0:
			return nil, cfg.Required(in, "handoff.ttl", "with handoff (how long the code works, e.g. 24h)")
		case ttl < time.Second || ttl > MaxHandoffTTL:
			return nil, cfg.Invalid(in, "handoff.ttl", "%s: give between 1s and 32d", h.TTL)
		default:
			m.handoff = ttl
		}
	}
	if s.Verify == nil {
		return m, nil
	}
	v := &verifier{Manual: m, getenv: h.Getenv}
	if v.getenv == nil {
		v.getenv = os.Getenv
	}
	switch p := s.Verify; {
	case p.HTTP != nil && p.Exec != nil:
		return nil, cfg.Invalid(in, "verify", "give http or exec, not both")
	case p.HTTP != nil:
		probe, err := httpint.NewProbe(h, in, "verify.http", p.HTTP)
		if err != nil {
			return nil, err
		}
		v.http = probe
	case len(p.Exec) > 0 && p.Exec[0] != "":
		v.exec = p.Exec
	case p.Exec != nil:
		return nil, cfg.Invalid(in, "verify.exec", "give a command as a list, like [/usr/local/bin/probe, callhub]")
	default:
		return nil, cfg.Invalid(in, "verify", "give http {url: ...} or exec [argv]")
	}
	return v, nil
}

// ID is the integration's id.
func (m *Manual) ID() string { return m.id }

// Person says who updates the integration and how.
func (m *Manual) Person() (owner, instructions string) { return m.owner, m.instructions }

// HandoffTTL is how long the owner's hand-off code works; 0 when the
// integration has no hand-off.
func (m *Manual) HandoffTTL() time.Duration { return m.handoff }

// Apply writes nothing: a person does. It returns Changed false.
func (m *Manual) Apply(ctx context.Context, _ integrations.ApplyRequest) (integrations.ApplyResult, error) {
	if err := ctx.Err(); err != nil {
		return integrations.ApplyResult{}, fmt.Errorf("manual: %s: %w", m.id, err)
	}
	return integrations.ApplyResult{Changed: false}, nil
}

// Verify runs the probe.
func (v *verifier) Verify(ctx context.Context) error {
	if v.exec != nil {
		env, err := command.Env(v.getenv, nil)
		if err != nil {
			return fmt.Errorf("manual: %s: verify: %w", v.id, err)
		}
		_, err = command.Run(ctx, command.Spec{What: "manual: " + v.id + ": verify", Argv: v.exec, Env: env})
		return err
	}
	if err := v.http.Verify(ctx); err != nil {
		return fmt.Errorf("manual: %s: %w", v.id, err)
	}
	return nil
}
