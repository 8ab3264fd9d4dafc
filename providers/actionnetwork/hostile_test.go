package actionnetwork_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/rekey-dev/rekey/internal/hostile"
	"github.com/rekey-dev/rekey/internal/leakcheck"
	"github.com/rekey-dev/rekey/providers"
	"github.com/rekey-dev/rekey/providers/actionnetwork"
	"github.com/rekey-dev/rekey/secret"
)

// Action Network, or a proxy in front of it, answering with bytes that
// quote the request (the key in OSDI-API-Token): the check says unknown
// in rekey's words, and the key is in no reason and no log line.
func TestHostileProviderQuotesNothingBack(t *testing.T) {
	const key = "0123456789abcdef0123456789abcdef"
	words := map[hostile.Mode]string{
		hostile.BadStatus:        "malformed response",
		hostile.BadHeader:        "malformed response",
		hostile.BadLocation:      "malformed redirect",
		hostile.RedirectToSecret: "307",
	}
	for _, mode := range hostile.Transport {
		t.Run(string(mode), func(t *testing.T) {
			srv := hostile.New(t, mode, hostile.Options{})
			var logs bytes.Buffer
			c := actionnetwork.New(actionnetwork.Options{
				BaseURL: srv.URL + "/api/v2/",
				Logger:  slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
				Limiter: actionnetwork.NewLimiter(actionnetwork.DefaultRate, 1),
			})
			res := c.Check(context.Background(), secret.New(key))
			if res.Validity != providers.Unknown || !strings.Contains(res.Reason, words[mode]) {
				t.Errorf("check = %s (%s), want unknown saying %q", res.Validity, res.Reason, words[mode])
			}
			leakcheck.Assert(t, "reason", []byte(res.Reason), key, hostile.Canary)
			leakcheck.Assert(t, "log", logs.Bytes(), key, hostile.Canary)
		})
	}
}
