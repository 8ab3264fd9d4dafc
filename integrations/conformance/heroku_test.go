package conformance_test

import (
	"testing"

	"github.com/rekey-dev/rekey/config"
	"github.com/rekey-dev/rekey/integrations"
	"github.com/rekey-dev/rekey/integrations/conformance"
	"github.com/rekey-dev/rekey/integrations/heroku"
	"github.com/rekey-dev/rekey/internal/herokutest"
	"github.com/rekey-dev/rekey/secret"
)

func TestHeroku(t *testing.T) {
	conformance.Run(t, conformance.TargetFunc(func(ct conformance.T, initial secret.Key) (integrations.Integration, conformance.Probe) {
		srv := herokutest.New(t)
		srv.AddApp("greens-spoke", map[string]string{"NODE_ENV": "production"})
		if !initial.IsZero() {
			srv.SetVar("greens-spoke", "ACTION_NETWORK_API_KEY", initial.Reveal())
		}
		item := config.Integration{ID: "spoke", Key: "actionnetwork-main", Type: heroku.Type, Settings: map[string]any{
			"app": "greens-spoke", "variable": "ACTION_NETWORK_API_KEY", "token_env": "HEROKU_API_KEY", "api_url": srv.URL,
		}}
		h, logs := host(item, envOf(map[string]string{"HEROKU_API_KEY": srv.Token}))
		in, err := heroku.New(h, item)
		if err != nil {
			ct.Fatalf("heroku.New: %v", err)
		}
		return in, &platformProbe{
			base:   srv.Base,
			holds:  func() secret.Key { k, _ := srv.Var("greens-spoke", "ACTION_NETWORK_API_KEY"); return k },
			set:    func(k secret.Key) { srv.SetVar("greens-spoke", "ACTION_NETWORK_API_KEY", k.Reveal()) },
			writes: srv.Patches,
			logs:   logs,
		}
	}))
}
