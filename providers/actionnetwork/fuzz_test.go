package actionnetwork_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rekey-dev/rekey/internal/leakcheck"
	"github.com/rekey-dev/rekey/providers"
	"github.com/rekey-dev/rekey/providers/actionnetwork"
	"github.com/rekey-dev/rekey/secret"
)

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// FuzzCheckResponse feeds a check arbitrary answers from Action Network:
// any status, any Retry-After, any body (where the body says KEY, the key
// that was sent is put, as Action Network's error bodies echo it). Every
// answer is parsed without panic into a result that keeps the
// three-state rule (valid only on 200 with an OSDI collection, invalid
// only on 401 or 403, unknown for everything else), and the reason never
// holds the key, in any encoding, nor the body. The seed corpus is in
// testdata/fuzz/FuzzCheckResponse.
func FuzzCheckResponse(f *testing.F) {
	f.Add(200, "", []byte(`{"total_records":3,"_embedded":{"osdi:tags":[{"name":"volunteers"}]}}`))
	f.Add(401, "", []byte(`{"error":"API Key KEY invalid"}`))
	f.Add(429, "1", []byte(`{"error":"Rate limit exceeded for KEY"}`))
	const key = "0123456789abcdef0123456789abcdef"
	f.Fuzz(func(t *testing.T, status int, retryAfter string, body []byte) {
		if status < 100 || status > 999 {
			status = 100 + (status%900+900)%900
		}
		answer := bytes.ReplaceAll(body, []byte("KEY"), []byte(key))
		requests := 0
		client := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
			requests++
			if r.Header.Get(actionnetwork.Header) != key || r.URL.Path != "/api/v2/tags" || r.URL.RawQuery != "per_page=1" {
				t.Errorf("unexpected request %s %s", r.Method, r.URL)
			}
			h := http.Header{"Content-Type": {"application/json"}}
			if retryAfter != "" {
				h.Set("Retry-After", retryAfter)
			}
			return &http.Response{StatusCode: status, Header: h, Body: io.NopCloser(bytes.NewReader(answer)), Request: r}, nil
		})}
		var logs bytes.Buffer
		c := actionnetwork.New(actionnetwork.Options{
			BaseURL:    "https://actionnetwork.example/api/v2/",
			HTTPClient: client,
			Logger:     slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
			Limiter:    actionnetwork.NewLimiter(1e9, 1e6), // fresh: no pacing, no Retry-After carried over
			MaxRetries: -1,                                 // a 429 is not retried
		})
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		r := c.Check(ctx, secret.New(key))

		switch {
		case status == http.StatusUnauthorized || status == http.StatusForbidden:
			if r.Validity != providers.Invalid {
				t.Fatalf("status %d: %s %q, want invalid", status, r.Validity, r.Reason)
			}
		case r.Validity == providers.Invalid:
			t.Fatalf("status %d taken as invalid: %q; only a refusal proves a key dead", status, r.Reason)
		case r.Validity == providers.Valid:
			// (encoding/json matches field names in any case.)
			lower := bytes.ToLower(answer)
			if status != http.StatusOK || !(bytes.Contains(lower, []byte(`"total_records"`)) || bytes.Contains(lower, []byte(`"_embedded"`))) {
				t.Fatalf("status %d with a body that is no OSDI collection taken as valid", status)
			}
		case r.Validity != providers.Unknown:
			t.Fatalf("validity %q", r.Validity)
		}
		if requests != 1 {
			t.Fatalf("%d requests, want 1", requests)
		}
		if r.Reason == "" || len(r.Reason) > 300 {
			t.Fatalf("reason %q: want a short sentence", r.Reason)
		}
		if len(answer) >= 8 && strings.Contains(r.Reason, string(answer)) {
			t.Fatalf("the body reached the reason: %q", r.Reason)
		}
		leakcheck.Assert(t, "reason", []byte(r.Reason), key)
		leakcheck.Assert(t, "log", logs.Bytes(), key)
	})
}

// FuzzIdentityResponse does the same for Identity: any status and body
// (KEY is replaced by the key sent) give one of the four states under the
// rules (known only on 200 with tags carrying Action Network identifiers,
// each of which is in the body; invalid only on 401 or 403), and neither
// the reason nor the log holds the key or the body.
func FuzzIdentityResponse(f *testing.F) {
	f.Add(200, []byte(`{"total_records":2,"_embedded":{"osdi:tags":[{"identifiers":["action_network:a1","x:2"]},{"identifiers":["action_network:b2"]}]}}`))
	f.Add(200, []byte(`{"total_records":0,"_embedded":{"osdi:tags":[]}}`))
	f.Add(403, []byte(`{"error":"API Key KEY invalid"}`))
	f.Add(200, []byte(`{"_embedded":{"osdi:tags":[{"identifiers":["action_network:KEY"]}]}}`))
	const key = "0123456789abcdef0123456789abcdef"
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		if status < 100 || status > 999 {
			status = 100 + (status%900+900)%900
		}
		answer := bytes.ReplaceAll(body, []byte("KEY"), []byte(key))
		client := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
			if r.Header.Get(actionnetwork.Header) != key || r.URL.Path != "/api/v2/tags" || r.URL.RawQuery != "" {
				t.Errorf("unexpected request %s %s", r.Method, r.URL)
			}
			return &http.Response{StatusCode: status, Header: http.Header{"Content-Type": {"application/json"}},
				Body: io.NopCloser(bytes.NewReader(answer)), Request: r}, nil
		})}
		var logs bytes.Buffer
		c := actionnetwork.New(actionnetwork.Options{
			BaseURL:    "https://actionnetwork.example/api/v2/",
			HTTPClient: client,
			Logger:     slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
			Limiter:    actionnetwork.NewLimiter(1e9, 1e6),
			MaxRetries: -1,
		})
		id := c.Identity(t.Context(), secret.New(key))

		switch id.State {
		case actionnetwork.IdentityInvalid:
			if status != http.StatusUnauthorized && status != http.StatusForbidden {
				t.Fatalf("status %d taken as invalid", status)
			}
		case actionnetwork.IdentityKnown, actionnetwork.IdentityEmpty:
			if status != http.StatusOK {
				t.Fatalf("status %d gave %s", status, id.State)
			}
		case actionnetwork.IdentityUnknown:
		default:
			t.Fatalf("state %q", id.State)
		}
		if (id.State == actionnetwork.IdentityKnown) != (len(id.Tags) > 0) {
			t.Fatalf("state %s with %d tags", id.State, len(id.Tags))
		}
		for i, tag := range id.Tags {
			if !strings.HasPrefix(tag, actionnetwork.TagPrefix) || len(tag) == len(actionnetwork.TagPrefix) || (i > 0 && tag <= id.Tags[i-1]) {
				t.Fatalf("tags %q: want sorted, unique action_network identifiers", id.Tags)
			}
		}
		if id.Reason == "" || len(id.Reason) > 300 || (len(answer) >= 8 && strings.Contains(id.Reason, string(answer))) {
			t.Fatalf("reason %q", id.Reason)
		}
		leakcheck.Assert(t, "reason", []byte(id.Reason), key)
		leakcheck.Assert(t, "log", logs.Bytes(), key)
	})
}
