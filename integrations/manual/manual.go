// Package manual is the manual integration type: a place only a person
// can update (CallHub's settings page, a partner's dashboard).
//
//	integrations:
//	  - {id: callhub, key: actionnetwork-main, type: manual, owner: "<@U0CALL>",
//	    instructions: "CallHub → Settings → Integrations → Action Network → paste the key",
//	    verify: {http: {url: "https://api.callhub.io/v1/health", headers: {Authorization: "Token ${CALLHUB_TOKEN}"}}}}
//
// Fields: owner (required) and instructions are the item's own; verify is
// optional, one of
//
//   - {http: {method, url, headers, expect_status}}: one request; method
//     defaults to GET; the probe passes when the status is expect_status,
//     or any 2xx when it is not given; ${VAR} in url and headers is taken
//     from rekey's environment when the probe runs. Redirects are not
//     followed. The response body is never read.
//   - {exec: [argv]}: a command; exit 0 passes. It runs as the exec type's
//     commands do (package command): no key, a minimal environment, its
//     output never read; exit 75 is transient.
//
// Apply writes nothing and returns Changed false: the engine asks the
// owner. Until `rekey confirm`, integrations.Observe reports the
// integration pending; after, the probe, when there is one, decides. The
// value New returns is a Verifier only when verify is set.
package manual

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"

	"github.com/rekey-dev/rekey/config"
	"github.com/rekey-dev/rekey/integrations"
	"github.com/rekey-dev/rekey/integrations/internal/command"
)

// Type is the integration type's name in the configuration.
const Type = "manual"

type settings struct {
	Verify *verifySettings `mapstructure:"verify"`
}

type verifySettings struct {
	HTTP *httpProbe `mapstructure:"http"`
	Exec []string   `mapstructure:"exec"`
}

type httpProbe struct {
	Method       string            `mapstructure:"method"`
	URL          string            `mapstructure:"url"`
	Headers      map[string]string `mapstructure:"headers"`
	ExpectStatus int               `mapstructure:"expect_status"`
}

// Manual is an integration a person updates.
type Manual struct {
	id           string
	owner        string
	instructions string
}

// verifier is a Manual with a probe.
type verifier struct {
	*Manual
	http   *httpProbe
	exec   []string
	getenv func(string) string
	client *http.Client
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
	if cfg == nil {
		cfg = &config.Config{}
	}
	var s settings
	if err := cfg.DecodeSettings(in, &s); err != nil {
		return nil, err
	}
	if strings.TrimSpace(in.Owner) == "" {
		return nil, cfg.Required(in, "owner", "for type manual (who updates it, e.g. \"<@U0CALL>\")")
	}
	m := &Manual{id: in.ID, owner: in.Owner, instructions: in.Instructions}
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
		if err := checkHTTP(cfg, in, p.HTTP); err != nil {
			return nil, err
		}
		v.http = p.HTTP
		base := h.HTTPClient
		if base == nil {
			base = http.DefaultClient
		}
		c := *base
		c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		v.client = &c
	case len(p.Exec) > 0 && p.Exec[0] != "":
		v.exec = p.Exec
	case p.Exec != nil:
		return nil, cfg.Invalid(in, "verify.exec", "give a command as a list, like [/usr/local/bin/probe, callhub]")
	default:
		return nil, cfg.Invalid(in, "verify", "give http {url: ...} or exec [argv]")
	}
	return v, nil
}

var (
	varRefRE  = regexp.MustCompile(`\$\{([^}]*)\}`)
	varNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	methodRE  = regexp.MustCompile(`^[A-Z]+$`)
)

func checkHTTP(cfg *config.Config, in config.Integration, p *httpProbe) error {
	if p.URL == "" {
		return cfg.Required(in, "verify.http.url", "")
	}
	if p.Method == "" {
		p.Method = http.MethodGet
	}
	p.Method = strings.ToUpper(p.Method)
	if !methodRE.MatchString(p.Method) {
		return cfg.Invalid(in, "verify.http.method", "%q is not an HTTP method", p.Method)
	}
	if p.ExpectStatus != 0 && (p.ExpectStatus < 100 || p.ExpectStatus > 599) {
		return cfg.Invalid(in, "verify.http.expect_status", "%d is not an HTTP status", p.ExpectStatus)
	}
	check := func(field, s string) error {
		for _, m := range varRefRE.FindAllStringSubmatch(s, -1) {
			if !varNameRE.MatchString(m[1]) {
				return cfg.Invalid(in, field, "${%s} is not a variable name", m[1])
			}
		}
		return nil
	}
	if err := check("verify.http.url", p.URL); err != nil {
		return err
	}
	// The URL's shape is checked with variables left empty: a variable
	// may hold the host, but not the scheme.
	u, err := url.Parse(varRefRE.ReplaceAllString(p.URL, "x"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return cfg.Invalid(in, "verify.http.url", "want an http or https URL")
	}
	for name, val := range p.Headers {
		if err := check("verify.http.headers."+name, val); err != nil {
			return err
		}
	}
	return nil
}

// ID is the integration's id.
func (m *Manual) ID() string { return m.id }

// Person says who updates the integration and how.
func (m *Manual) Person() (owner, instructions string) { return m.owner, m.instructions }

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
	return v.probeHTTP(ctx)
}

// probeHTTP sends the request. Errors name the configured URL (before
// ${VAR} is replaced: a variable may hold a token), never the response.
func (v *verifier) probeHTTP(ctx context.Context) error {
	p := v.http
	what := fmt.Sprintf("manual: %s: verify %s %s", v.id, p.Method, p.URL)
	target, err := v.expand(p.URL)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	req, err := http.NewRequestWithContext(ctx, p.Method, target, nil)
	if err != nil {
		return fmt.Errorf("%s: not a valid request: %w", what, integrations.ErrInvalid)
	}
	for name, tmpl := range p.Headers {
		val, err := v.expand(tmpl)
		if err != nil {
			return fmt.Errorf("%s: header %s: %w", what, name, err)
		}
		req.Header.Set(name, val)
	}
	resp, err := v.client.Do(req)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			if errors.Is(ctxErr, context.DeadlineExceeded) {
				return fmt.Errorf("%s: %w: %w", what, ctxErr, integrations.ErrTransient)
			}
			return fmt.Errorf("%s: %w", what, ctxErr)
		}
		// url.Error would print the URL with its variables filled in.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("%s: %w: %w", what, err, integrations.ErrTransient)
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()

	if p.ExpectStatus != 0 {
		if resp.StatusCode == p.ExpectStatus {
			return nil
		}
	} else if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	if err := integrations.StatusError(what, resp); err != nil {
		return err
	}
	want := "a 2xx status"
	if p.ExpectStatus != 0 {
		want = fmt.Sprintf("status %d", p.ExpectStatus)
	}
	return fmt.Errorf("%s: status %d, want %s: %w", what, resp.StatusCode, want, integrations.ErrInvalid)
}

// expand replaces ${VAR} from rekey's environment; an empty or unset
// variable is an error naming it.
func (v *verifier) expand(s string) (string, error) {
	var missing string
	out := varRefRE.ReplaceAllStringFunc(s, func(ref string) string {
		name := ref[2 : len(ref)-1]
		val := v.getenv(name)
		if val == "" && missing == "" {
			missing = name
		}
		return val
	})
	if missing != "" {
		return "", fmt.Errorf("environment variable %s is not set: %w", missing, integrations.ErrInvalid)
	}
	return out, nil
}
