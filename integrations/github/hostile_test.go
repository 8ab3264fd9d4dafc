package github_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/rekey-dev/rekey/config"
	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/integrations"
	"github.com/rekey-dev/rekey/integrations/github"
	"github.com/rekey-dev/rekey/internal/hostile"
	"github.com/rekey-dev/rekey/internal/leakcheck"
	"github.com/rekey-dev/rekey/secret"
)

// An API (or a proxy in front of it) that answers with bytes quoting the
// request gets the token into no error and no log line.
func TestHostileAPIQuotesNothingBack(t *testing.T) {
	const token = "ghp_hostileTestToken0123456789abcdefABCD"
	words := map[hostile.Mode]string{
		hostile.BadStatus:        "malformed response",
		hostile.BadHeader:        "malformed response",
		hostile.BadLocation:      "malformed redirect",
		hostile.RedirectToSecret: "redirect refused",
	}
	for _, mode := range hostile.Transport {
		t.Run(string(mode), func(t *testing.T) {
			srv := hostile.New(t, mode, hostile.Options{})
			var logs bytes.Buffer
			item := config.Integration{ID: "ci", Key: "actionnetwork-main", Type: github.Type, Settings: map[string]any{
				"repo": "greens/site", "secret": "ACTION_NETWORK_API_KEY", "token_env": "GITHUB_TOKEN", "api_url": srv.URL + "/",
			}}
			in, err := github.New(integrations.Host{
				Config: &config.Config{File: "rekey.yaml", Integrations: []config.Integration{item}},
				Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
				Getenv: func(k string) string { return map[string]string{"GITHUB_TOKEN": token}[k] },
			}, item)
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			_, applyErr := in.Apply(ctx, integrations.ApplyRequest{Key: secret.New(key1), RotationID: "r1"})
			_, tsErr := in.(integrations.Timestamper).UpdatedAt(ctx)
			pfErr := in.(integrations.Preflighter).Preflight(ctx)
			for name, err := range map[string]error{"apply": applyErr, "updated_at": tsErr, "preflight": pfErr} {
				if err == nil || !strings.Contains(err.Error(), words[mode]) {
					t.Errorf("%s: %v, want an error saying %q", name, err, words[mode])
				}
				if failure.Class(err) == "unclassified" {
					t.Errorf("%s: %v is not classified", name, err)
				}
				if err != nil {
					leakcheck.Assert(t, name+" error", []byte(err.Error()), key1, token, hostile.Canary)
				}
			}
			leakcheck.Assert(t, "log", logs.Bytes(), key1, token, hostile.Canary)
		})
	}
}
