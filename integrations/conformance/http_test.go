package conformance_test

import (
	"testing"

	"github.com/rekey-dev/rekey/config"
	"github.com/rekey-dev/rekey/integrations"
	"github.com/rekey-dev/rekey/integrations/conformance"
	rhttp "github.com/rekey-dev/rekey/integrations/http"
	"github.com/rekey-dev/rekey/internal/webtest"
	"github.com/rekey-dev/rekey/secret"
)

// TestHTTP runs the suite against the sign-up widget configured with read
// (for idempotence and state) and verify. Without read, an http
// integration sends its request on every Apply and relies on the target
// treating a repeated PUT as the same write.
func TestHTTP(t *testing.T) {
	conformance.Run(t, conformance.TargetFunc(func(ct conformance.T, initial secret.Key) (integrations.Integration, conformance.Probe) {
		web := webtest.New(t)
		web.SetHolds(initial)
		settings := map[string]any{
			"apply": map[string]any{
				"method":  "PUT",
				"url":     "${WP_URL}" + webtest.SettingsPath,
				"headers": map[string]string{"Authorization": "Bearer ${WP_TOKEN}"},
				"body":    `{"` + webtest.Field + `": "{{key}}", "list_id": "greens-signups"}`,
			},
			"read": map[string]any{
				"url":          "${WP_URL}" + webtest.SettingsPath,
				"headers":      map[string]string{"Authorization": "Bearer ${WP_TOKEN}"},
				"json_pointer": webtest.Pointer,
			},
			"verify": map[string]any{"url": "${WP_URL}" + webtest.StatusPath, "expect_status": 200},
		}
		item := config.Integration{ID: "signup-widget", Key: "actionnetwork-main", Type: rhttp.Type, Settings: settings}
		h, logs := host(item, envOf(map[string]string{"WP_URL": web.URL, "WP_TOKEN": web.Token}))
		in, err := rhttp.New(h, item)
		if err != nil {
			ct.Fatalf("http.New: %v", err)
		}
		return in, &webProbe{web: web, logs: logs, permanent: 400}
	}))
}

// webProbe is the widget's side. It is shared with the manual harness,
// where the widget is what a person updates and the probe checks.
type webProbe struct {
	web       *webtest.Server
	logs      *syncBuffer
	permanent int  // status of a permanent failure
	manual    bool // failures hit the verify probe, not a write
}

func (p *webProbe) Writes() int                                 { return p.web.Writes() }
func (p *webProbe) Holds(conformance.T) secret.Key              { return p.web.Holds() }
func (p *webProbe) SetHolds(_ conformance.T, k secret.Key) bool { p.web.SetHolds(k); return true }
func (p *webProbe) HangNext() bool                              { p.web.HangNext(); return true }
func (p *webProbe) Logs() []byte                                { return append(p.web.Log(), p.logs.Bytes()...) }

func (p *webProbe) FailNext(f conformance.Failure) bool {
	status := p.permanent
	if f == conformance.Transient {
		status = 503
	}
	if p.manual {
		p.web.FailNext(status)
	} else {
		p.web.FailNextWrite(status)
	}
	return true
}
