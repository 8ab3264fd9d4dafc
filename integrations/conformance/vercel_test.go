package conformance_test

import (
	"slices"
	"testing"
	"time"

	"github.com/rekey-dev/rekey/config"
	"github.com/rekey-dev/rekey/integrations"
	"github.com/rekey-dev/rekey/integrations/conformance"
	"github.com/rekey-dev/rekey/integrations/vercel"
	"github.com/rekey-dev/rekey/internal/verceltest"
	"github.com/rekey-dev/rekey/secret"
)

// TestVercel runs the suite on an encrypted project variable (proven
// exactly), and on one of a team that enforces sensitive variables (never
// readable: proven by its updatedAt).
func TestVercel(t *testing.T) {
	for _, sensitive := range []bool{false, true} {
		name := "encrypted"
		if sensitive {
			name = "sensitive"
		}
		t.Run(name, func(t *testing.T) {
			conformance.Run(t, conformance.TargetFunc(func(ct conformance.T, initial secret.Key) (integrations.Integration, conformance.Probe) {
				srv := verceltest.New(t)
				srv.AddProject("campaign-site", true)
				if sensitive {
					srv.EnforceSensitive()
				}
				srv.SetEnv("campaign-site", verceltest.Env{Key: "NEXT_PUBLIC_SITE", Value: "https://greens.example", Type: "plain", Target: []string{"production", "preview"}})
				typ := "encrypted"
				if sensitive {
					typ = "sensitive"
				}
				set := func(k secret.Key, at time.Time) {
					e := verceltest.Env{Key: "ACTION_NETWORK_API_KEY", Value: k.Reveal(), Type: typ, Target: []string{"production"}, UpdatedAt: at}
					for _, old := range srv.Envs("campaign-site") {
						if old.Key == e.Key && slices.Contains(old.Target, "production") {
							e.ID = old.ID
						}
					}
					srv.SetEnv("campaign-site", e)
				}
				if !initial.IsZero() {
					set(initial, time.Now().Add(-time.Hour))
				}
				item := config.Integration{ID: "campaign-vercel", Key: "actionnetwork-main", Type: vercel.Type, Settings: map[string]any{
					"project": "campaign-site", "team": srv.TeamSlug, "variable": "ACTION_NETWORK_API_KEY", "token_env": "VERCEL_TOKEN", "api_url": srv.URL,
				}}
				h, logs := host(item, envOf(map[string]string{"VERCEL_TOKEN": srv.Token}))
				in, err := vercel.New(h, item)
				if err != nil {
					ct.Fatalf("vercel.New: %v", err)
				}
				if sensitive {
					in = writeOnly{Integration: in, Timestamper: in.(integrations.Timestamper)}
				}
				return in, &platformProbe{
					base:   srv.Base,
					holds:  func() secret.Key { return srv.Holds("campaign-site", "ACTION_NETWORK_API_KEY", "production") },
					set:    func(k secret.Key) { set(k, time.Time{}) },
					writes: srv.Writes,
					logs:   logs,
				}
			}))
		})
	}
}
