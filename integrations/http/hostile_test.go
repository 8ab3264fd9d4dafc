package http_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/rekey-dev/rekey/config"
	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/integrations"
	rhttp "github.com/rekey-dev/rekey/integrations/http"
	"github.com/rekey-dev/rekey/internal/hostile"
	"github.com/rekey-dev/rekey/internal/leakcheck"
)

// fixedWords is what each transport failure is called: rekey's words,
// never the peer's.
var fixedWords = map[hostile.Mode]string{
	hostile.BadStatus:        "malformed response",
	hostile.BadHeader:        "malformed response",
	hostile.BadLocation:      "malformed redirect",
	hostile.RedirectToSecret: "redirect refused",
}

// A target that answers with bytes quoting the request (the key in the
// body, a ${VAR} credential in a header) gets none of them into an
// error or a log line, whether it answers apply, read or verify.
func TestHostileTargetQuotesNothingBack(t *testing.T) {
	const token = "wp-admin-token-5f0c2a9e7d1b"
	for _, mode := range hostile.Transport {
		t.Run(string(mode), func(t *testing.T) {
			srv := hostile.New(t, mode, hostile.Options{})
			env := map[string]string{"TARGET": srv.URL, "WP_TOKEN": token}
			settings := map[string]any{
				"apply": map[string]any{
					"method":  "PUT",
					"url":     "${TARGET}/settings",
					"headers": map[string]string{"Authorization": "Bearer ${WP_TOKEN}", "X-Key": "{{key}}"},
					"body":    `{"api_key": "{{key}}"}`,
				},
				"read": map[string]any{
					"url":          "${TARGET}/settings",
					"headers":      map[string]string{"Authorization": "Bearer ${WP_TOKEN}"},
					"json_pointer": "/api_key",
				},
				"verify": map[string]any{
					"url":     "${TARGET}/status",
					"headers": map[string]string{"Authorization": "Bearer ${WP_TOKEN}"},
				},
			}
			var logs bytes.Buffer
			item := config.Integration{ID: "widget", Key: "actionnetwork-main", Type: rhttp.Type, Settings: settings}
			in, err := rhttp.New(integrations.Host{
				Config: &config.Config{File: "rekey.yaml", Integrations: []config.Integration{item}},
				Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
				Getenv: func(k string) string { return env[k] },
			}, item)
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			_, applyErr := apply(in, key1)
			_, readErr := in.(integrations.Reader).Read(ctx)
			verifyErr := in.(integrations.Verifier).Verify(ctx)
			preflightErr := in.(integrations.Preflighter).Preflight(ctx) // its read meets the hostile answer
			for name, err := range map[string]error{"apply": applyErr, "read": readErr, "verify": verifyErr, "preflight": preflightErr} {
				if mode == hostile.RedirectToSecret && name == "verify" {
					// A probe follows no redirect: the 307 is its answer.
					if err == nil || !strings.Contains(err.Error(), "status 307") {
						t.Errorf("verify: %v, want status 307", err)
					}
				} else if err == nil || !strings.Contains(err.Error(), fixedWords[mode]) {
					t.Errorf("%s: %v, want an error saying %q", name, err, fixedWords[mode])
				}
				if failure.Class(err) == "unclassified" {
					t.Errorf("%s: %v is not classified", name, err)
				}
				if err != nil {
					leakcheck.Assert(t, name+" error", []byte(err.Error()), key1, token, hostile.Canary)
				}
			}
			leakcheck.Assert(t, "log", logs.Bytes(), key1, token, hostile.Canary)
			if srv.Hostile() == 0 {
				t.Fatal("the hostile server was never asked")
			}
		})
	}
}
