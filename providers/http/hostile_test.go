package http_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/rekey-dev/rekey/internal/hostile"
	"github.com/rekey-dev/rekey/internal/leakcheck"
	"github.com/rekey-dev/rekey/providers"
	httpprovider "github.com/rekey-dev/rekey/providers/http"
	"github.com/rekey-dev/rekey/secret"
)

// A verify URL that answers with bytes quoting the request (the key in
// its header) says unknown, in rekey's words, and the key stays out of
// the reason and the log.
func TestHostileVerifyURLQuotesNothingBack(t *testing.T) {
	const key = "hk-3c9f1a7e5b2d4c6e8f0a1b2c3d4e5f60"
	words := map[hostile.Mode]string{
		hostile.BadStatus:        "malformed response",
		hostile.BadHeader:        "malformed response",
		hostile.BadLocation:      "malformed redirect",
		hostile.RedirectToSecret: "307", // no redirect is followed: the answer is the 307
	}
	for _, mode := range hostile.Transport {
		t.Run(string(mode), func(t *testing.T) {
			srv := hostile.New(t, mode, hostile.Options{})
			var logs bytes.Buffer
			c, err := httpprovider.New(httpprovider.Options{
				URL: srv.URL + "/verify", Header: header,
				Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
			})
			if err != nil {
				t.Fatal(err)
			}
			res := c.Check(context.Background(), secret.New(key))
			if res.Validity != providers.Unknown || !strings.Contains(res.Reason, words[mode]) {
				t.Errorf("check = %s (%s), want unknown saying %q", res.Validity, res.Reason, words[mode])
			}
			leakcheck.Assert(t, "reason", []byte(res.Reason), key, hostile.Canary)
			leakcheck.Assert(t, "log", logs.Bytes(), key, hostile.Canary)
		})
	}
}
