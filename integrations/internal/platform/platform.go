// Package platform is what the hosted-platform integration types (heroku,
// render, netlify, vercel, gitlab) configure alike: the variable that
// holds the key and the token's environment variable (checked the same
// way), the API's base URL (api_url, else the platform's), the client
// that talks to it, and the optional verify probe.
package platform

import (
	"context"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"

	"github.com/rekey-dev/rekey/config"
	"github.com/rekey-dev/rekey/integrations"
	httpint "github.com/rekey-dev/rekey/integrations/http"
	"github.com/rekey-dev/rekey/integrations/internal/httpx"
	"github.com/rekey-dev/rekey/integrations/internal/rest"
)

// Settings are the fields every platform type has; a type embeds them
// with `mapstructure:",squash"` beside its own.
type Settings struct {
	Variable string         `mapstructure:"variable"`
	TokenEnv string         `mapstructure:"token_env"`
	APIURL   string         `mapstructure:"api_url"`
	Verify   map[string]any `mapstructure:"verify"`
}

// Spec says how one platform words and checks the common settings.
type Spec struct {
	// Variable is what a variable name must match (nil:
	// rest.EnvVarName); VariableIs says what it is, for the error ("a
	// config var name (letters, digits and '_')"); VariableHint says
	// where to find it, for a missing one.
	Variable     *regexp.Regexp
	VariableIs   string
	VariableHint string
	// TokenHint says what the token is ("a Heroku API token").
	TokenHint string
	// APIURL is the platform's API, used when api_url is not set.
	APIURL string
}

// Check checks the variable and token_env of s as spec says.
func (s Settings) Check(h integrations.Host, in config.Integration, spec Spec) error {
	re, is := spec.Variable, spec.VariableIs
	if re == nil {
		re, is = rest.EnvVarName, "an environment variable name"
	}
	switch {
	case s.Variable == "":
		return h.Config.Required(in, "variable", spec.VariableHint)
	case !re.MatchString(s.Variable):
		return h.Config.Invalid(in, "variable", "%q is not %s", s.Variable, is)
	case s.TokenEnv == "":
		return h.Config.Required(in, "token_env", "(the environment variable holding "+spec.TokenHint+")")
	case !rest.EnvVarName.MatchString(s.TokenEnv):
		return h.Config.Invalid(in, "token_env", "%q is not an environment variable name", s.TokenEnv)
	}
	return nil
}

// Client returns the client for the platform's API at api_url (else
// spec.APIURL), with the token from token_env; the caller sets what is
// particular to its platform (headers, waits, how it explains failures).
func (s Settings) Client(h integrations.Host, in config.Integration, spec Spec) (*rest.Client, error) {
	raw := s.APIURL
	if raw == "" {
		raw = spec.APIURL
	}
	base, err := rest.ParseBase(raw)
	if err != nil {
		return nil, h.Config.Invalid(in, "api_url", "%v", err)
	}
	return &rest.Client{Base: base, HTTP: httpx.Client(h.HTTPClient), TokenEnv: s.TokenEnv, Getenv: h.Getenv}, nil
}

// Probe returns the verify probe, when the integration has one.
func (s Settings) Probe(h integrations.Host, in config.Integration) (Verified, bool, error) {
	return NewVerified(h, in, s.Verify)
}

// Verified is an integration's verify probe (shaped like the http
// type's). A type's wrapper embeds it beside the type to make the
// integration an integrations.Verifier only when it has a probe:
//
//	type withVerify struct {
//		*Heroku
//		platform.Verified
//	}
type Verified struct {
	what  string // "heroku: <id>"
	probe httpint.Probe
}

// NewVerified builds in's verify probe from its verify settings; ok is
// false when it has none.
func NewVerified(h integrations.Host, in config.Integration, verify map[string]any) (v Verified, ok bool, err error) {
	if verify == nil {
		return Verified{}, false, nil
	}
	p, err := httpint.NewProbe(h, in, "verify", verify)
	if err != nil {
		return Verified{}, false, err
	}
	return Verified{what: in.Type + ": " + in.ID, probe: p}, true, nil
}

// Verify implements integrations.Verifier with the configured probe.
func (v Verified) Verify(ctx context.Context) error {
	if err := v.probe.Verify(ctx); err != nil {
		return fmt.Errorf("%s: %w", v.what, err)
	}
	return nil
}

// Choices checks a list setting (field) whose members are each one of
// allowed, at most once: nil takes def; an empty list is refused.
func Choices(h integrations.Host, in config.Integration, field string, got, def, allowed []string) ([]string, error) {
	if got == nil {
		return def, nil
	}
	if len(got) == 0 {
		return nil, h.Config.Invalid(in, field, "empty: name at least one of %s", strings.Join(allowed, ", "))
	}
	for i, c := range got {
		if !slices.Contains(allowed, c) {
			return nil, h.Config.Invalid(in, fmt.Sprintf("%s[%d]", field, i), "%q is not one of %s", c, strings.Join(allowed, ", "))
		}
		if slices.Contains(got[:i], c) {
			return nil, h.Config.Invalid(in, fmt.Sprintf("%s[%d]", field, i), "%q is named twice", c)
		}
	}
	return got, nil
}

// Logger is l, or one that discards.
func Logger(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}
