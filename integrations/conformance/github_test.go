package conformance_test

import (
	"testing"
	"time"

	"github.com/rekey-dev/rekey/config"
	"github.com/rekey-dev/rekey/integrations"
	"github.com/rekey-dev/rekey/integrations/conformance"
	"github.com/rekey-dev/rekey/integrations/github"
	"github.com/rekey-dev/rekey/internal/ghtest"
	"github.com/rekey-dev/rekey/secret"
)

func TestGitHub(t *testing.T) {
	scopes := []struct {
		name     string
		settings map[string]any
		scope    ghtest.Scope
	}{
		{"repository", map[string]any{"repo": "greens/site"}, ghtest.Repo("greens/site")},
		{"environment", map[string]any{"repo": "greens/site", "environment": "production"}, ghtest.Env("greens/site", "production")},
		{"organisation", map[string]any{"org": "greens"}, ghtest.Org("greens")},
	}
	for _, sc := range scopes {
		t.Run(sc.name, func(t *testing.T) {
			conformance.Run(t, conformance.TargetFunc(func(ct conformance.T, initial secret.Key) (integrations.Integration, conformance.Probe) {
				srv := ghtest.New(t, ghtest.Options{})
				srv.AddEnvironment("greens/site", "production")
				srv.AddOrg("greens")
				p := &githubProbe{srv: srv, scope: sc.scope}
				if !initial.IsZero() {
					srv.SetSecret(sc.scope, "ACTION_NETWORK_API_KEY", ghtest.Secret{Value: initial, UpdatedAt: time.Now().Add(-time.Hour)})
				}
				s := map[string]any{"secret": "ACTION_NETWORK_API_KEY", "token_env": "GITHUB_TOKEN", "api_url": srv.URL}
				for k, v := range sc.settings {
					s[k] = v
				}
				item := config.Integration{ID: "ci", Key: "actionnetwork-main", Type: github.Type, Settings: s}
				h, logs := host(item, envOf(map[string]string{"GITHUB_TOKEN": srv.Token}))
				p.logs = logs
				in, err := github.New(h, item)
				if err != nil {
					ct.Fatalf("github.New: %v", err)
				}
				return in, p
			}))
		})
	}
}

type githubProbe struct {
	srv   *ghtest.Server
	scope ghtest.Scope
	logs  *syncBuffer
}

func (p *githubProbe) Writes() int { return p.srv.Puts() }

func (p *githubProbe) Holds(conformance.T) secret.Key {
	s, _ := p.srv.Secret(p.scope, "ACTION_NETWORK_API_KEY")
	return s.Value
}

func (p *githubProbe) SetHolds(_ conformance.T, k secret.Key) bool {
	p.srv.SetSecret(p.scope, "ACTION_NETWORK_API_KEY", ghtest.Secret{Value: k})
	return true
}

func (p *githubProbe) FailNext(f conformance.Failure) bool {
	if f == conformance.Transient {
		p.srv.FailNext(502)
	} else {
		p.srv.FailNext(403)
	}
	return true
}

func (p *githubProbe) HangNext() bool { p.srv.HangNext(); return true }

func (p *githubProbe) Logs() []byte { return append(p.srv.Log(), p.logs.Bytes()...) }
