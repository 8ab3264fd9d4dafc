package slack

import (
	"bytes"
	"context"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/internal/hostile"
	"github.com/rekey-dev/rekey/internal/leakcheck"
	"github.com/rekey-dev/rekey/notifiers"
)

// hostileAnswers are Slack (or a proxy in its place) answering with bytes
// that quote the request: Go's transport errors, and what slack-go builds
// from a peer's answer (a Retry-After that is no number, an error code).
var hostileAnswers = []struct {
	name   string
	mode   hostile.Mode
	answer func(q string) []byte
	says   string
}{
	{"bad-status", hostile.BadStatus, nil, "malformed response"},
	{"bad-header", hostile.BadHeader, nil, "malformed response"},
	{"bad-location", hostile.BadLocation, nil, "malformed redirect"},
	{"redirect", hostile.RedirectToSecret, nil, "status 307"},
	{"retry-after", hostile.BadStatus, func(q string) []byte {
		return []byte("HTTP/1.1 429 Too Many Requests\r\nRetry-After: " + q + "\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
	}, "Retry-After"},
	{"error-code", hostile.BadStatus, func(q string) []byte {
		body := `{"ok":false,"error":"` + strings.ReplaceAll(q, `"`, `'`) + `"}`
		return []byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\nConnection: close\r\n\r\n" + body)
	}, "error code"},
}

// No error or log line of the bot or the webhook holds a byte the peer
// chose, nor the token or the webhook URL it quoted.
func TestHostileSlackQuotesNothingBack(t *testing.T) {
	for _, mode := range []string{"bot", "webhook"} {
		for _, h := range hostileAnswers {
			if mode == "webhook" && h.name == "error-code" {
				continue // a webhook answers 200 "ok" or a status: no error codes
			}
			t.Run(mode+"/"+h.name, func(t *testing.T) {
				srv := hostile.New(t, h.mode, hostile.Options{Answer: h.answer})
				var logs bytes.Buffer
				opts := Options{
					Channel: testChannel, Retries: 1, Backoff: time.Millisecond,
					Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
				}
				if mode == "bot" {
					opts.Token, opts.APIURL = testToken, srv.URL+"/api/"
				} else {
					opts.WebhookURL = srv.URL + webhookPath
				}
				n, err := New(opts)
				if err != nil {
					t.Fatal(err)
				}
				n.sleep = func(context.Context, time.Duration) error { return nil }
				errs := []error{n.Notify(context.Background(), started("r1")), n.Notify(context.Background(), notifiers.Event{Kind: notifiers.LeakAlert, KeyID: "k", Title: "leak", Urgent: true})}
				if mode == "bot" {
					errs = append(errs, n.Ping(context.Background()))
				}
				for _, err := range errs {
					if err == nil || !strings.Contains(err.Error(), h.says) {
						t.Errorf("%v, want an error saying %q", err, h.says)
					}
					if failure.Class(err) == "unclassified" {
						t.Errorf("%v is not classified", err)
					}
					if err != nil {
						leakcheck.Assert(t, "error", []byte(err.Error()), testToken, webhookPath, "WeBhOoKsEcReTpAtHpArT", hostile.Canary)
					}
				}
				leakcheck.Assert(t, "log", logs.Bytes(), testToken, webhookPath, "WeBhOoKsEcReTpAtHpArT", hostile.Canary)
			})
		}
	}
}
