package conformance_test

import (
	"testing"

	"github.com/rekey-dev/rekey/config"
	"github.com/rekey-dev/rekey/integrations"
	"github.com/rekey-dev/rekey/integrations/conformance"
	"github.com/rekey-dev/rekey/integrations/manual"
	"github.com/rekey-dev/rekey/internal/webtest"
	"github.com/rekey-dev/rekey/secret"
)

// TestManual runs the suite against a manual integration whose target is
// the sign-up widget, updated by a person (the probe's SetHolds) and
// checked by a verify probe of the widget's status endpoint.
func TestManual(t *testing.T) {
	conformance.Run(t, conformance.TargetFunc(func(ct conformance.T, initial secret.Key) (integrations.Integration, conformance.Probe) {
		web := webtest.New(t)
		web.SetHolds(initial)
		item := config.Integration{
			ID: "widget-by-hand", Key: "actionnetwork-main", Type: manual.Type,
			Owner: "<@U0WEB>", Instructions: "WordPress → Settings → Sign-up widget → paste the key",
			Settings: map[string]any{"verify": map[string]any{"http": map[string]any{"url": web.URL + webtest.StatusPath, "expect_status": 200}}},
		}
		h, logs := host(item, envOf(nil))
		in, err := manual.New(h, item)
		if err != nil {
			ct.Fatalf("manual.New: %v", err)
		}
		return in, &webProbe{web: web, logs: logs, permanent: 424, manual: true}
	}))
}
