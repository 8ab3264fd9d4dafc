package conformance_test

import (
	"testing"
	"time"

	"github.com/rekey-dev/rekey/config"
	"github.com/rekey-dev/rekey/integrations"
	"github.com/rekey-dev/rekey/integrations/conformance"
	"github.com/rekey-dev/rekey/integrations/netlify"
	"github.com/rekey-dev/rekey/internal/netlifytest"
	"github.com/rekey-dev/rekey/secret"
)

// TestNetlify runs the suite on a site variable whose value Netlify shows
// (proven exactly), and on a secret one (proven by its updated_at).
func TestNetlify(t *testing.T) {
	const site = "5d1b3c9e-0000-4000-8000-000000000001"
	for _, secretVar := range []bool{false, true} {
		name := "readable"
		if secretVar {
			name = "secret"
		}
		t.Run(name, func(t *testing.T) {
			conformance.Run(t, conformance.TargetFunc(func(ct conformance.T, initial secret.Key) (integrations.Integration, conformance.Probe) {
				srv := netlifytest.New(t)
				srv.AddSite(site)
				srv.SetVar(site, netlifytest.Var{Key: "SITE_TITLE", Values: []netlifytest.Value{{Context: "all", Value: "Greens"}}})
				set := func(k secret.Key, at time.Time) {
					v := netlifytest.Var{Key: "ACTION_NETWORK_API_KEY", IsSecret: secretVar, UpdatedAt: at}
					if !k.IsZero() {
						v.Values = []netlifytest.Value{{Context: "production", Value: k.Reveal()}}
					}
					srv.SetVar(site, v)
				}
				if !initial.IsZero() || secretVar {
					set(initial, time.Now().Add(-time.Hour))
				}
				item := config.Integration{ID: "campaign-site", Key: "actionnetwork-main", Type: netlify.Type, Settings: map[string]any{
					"account": srv.AccountSlug, "site": site, "variable": "ACTION_NETWORK_API_KEY", "token_env": "NETLIFY_AUTH_TOKEN", "api_url": srv.URL,
				}}
				h, logs := host(item, envOf(map[string]string{"NETLIFY_AUTH_TOKEN": srv.Token}))
				in, err := netlify.New(h, item)
				if err != nil {
					ct.Fatalf("netlify.New: %v", err)
				}
				if secretVar {
					in = writeOnly{Integration: in, Timestamper: in.(integrations.Timestamper)}
				}
				return in, &platformProbe{
					base:   srv.Base,
					holds:  func() secret.Key { return srv.Holds(site, "ACTION_NETWORK_API_KEY", "production") },
					set:    func(k secret.Key) { set(k, time.Time{}) },
					writes: srv.Writes,
					logs:   logs,
				}
			}))
		})
	}
}
