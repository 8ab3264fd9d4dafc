package manual

import (
	"context"
	"strings"
	"testing"

	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/integrations"
	"github.com/rekey-dev/rekey/internal/hostile"
	"github.com/rekey-dev/rekey/internal/leakcheck"
)

// A manual integration's verify.http probe against a server that quotes
// the request back: the ${VAR} credential it sends stays out of the error.
func TestHostileProbeQuotesNothingBack(t *testing.T) {
	words := map[hostile.Mode]string{
		hostile.BadStatus:        "malformed response",
		hostile.BadHeader:        "malformed response",
		hostile.BadLocation:      "malformed redirect",
		hostile.RedirectToSecret: "status 307", // a probe follows no redirect
	}
	for _, mode := range hostile.Transport {
		t.Run(string(mode), func(t *testing.T) {
			srv := hostile.New(t, mode, hostile.Options{})
			in := mustBuild(t, map[string]any{"verify": map[string]any{"http": map[string]any{
				"url":     srv.URL + "/v1/health",
				"headers": map[string]any{"Authorization": "Token ${CALLHUB_TOKEN}"},
			}}})
			err := in.(integrations.Verifier).Verify(context.Background())
			if err == nil || !strings.Contains(err.Error(), words[mode]) {
				t.Errorf("verify: %v, want an error saying %q", err, words[mode])
			}
			if failure.Class(err) == "unclassified" {
				t.Errorf("verify: %v is not classified", err)
			}
			if err != nil {
				leakcheck.Assert(t, "verify error", []byte(err.Error()), callhubToken, hostile.Canary)
			}
		})
	}
}
