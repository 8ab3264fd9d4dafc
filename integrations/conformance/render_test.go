package conformance_test

import (
	"testing"

	"github.com/rekey-dev/rekey/config"
	"github.com/rekey-dev/rekey/integrations"
	"github.com/rekey-dev/rekey/integrations/conformance"
	"github.com/rekey-dev/rekey/integrations/render"
	"github.com/rekey-dev/rekey/internal/rendertest"
	"github.com/rekey-dev/rekey/secret"
)

func TestRender(t *testing.T) {
	const svc = "srv-cq1example0000000000"
	conformance.Run(t, conformance.TargetFunc(func(ct conformance.T, initial secret.Key) (integrations.Integration, conformance.Probe) {
		srv := rendertest.New(t)
		srv.AddService(svc, "spoke", "NODE_ENV", "production")
		if !initial.IsZero() {
			srv.SetVar(svc, "ACTION_NETWORK_API_KEY", initial.Reveal())
		}
		item := config.Integration{ID: "spoke-render", Key: "actionnetwork-main", Type: render.Type, Settings: map[string]any{
			"service": svc, "variable": "ACTION_NETWORK_API_KEY", "token_env": "RENDER_API_KEY", "api_url": srv.URL,
		}}
		h, logs := host(item, envOf(map[string]string{"RENDER_API_KEY": srv.Token}))
		in, err := render.New(h, item)
		if err != nil {
			ct.Fatalf("render.New: %v", err)
		}
		return in, &platformProbe{
			base:   srv.Base,
			holds:  func() secret.Key { k, _ := srv.Var(svc, "ACTION_NETWORK_API_KEY"); return k },
			set:    func(k secret.Key) { srv.SetVar(svc, "ACTION_NETWORK_API_KEY", k.Reveal()) },
			writes: srv.Writes,
			logs:   logs,
		}
	}))
}
