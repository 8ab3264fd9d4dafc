package cli

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rekey-dev/rekey/config"
	"github.com/rekey-dev/rekey/internal/hostile"
	"github.com/rekey-dev/rekey/internal/leakcheck"
	"github.com/rekey-dev/rekey/secret"
)

// syncBuffer is a bytes.Buffer safe for the transport's goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// A server that answers and then sends more bytes quoting the request:
// net/http's transport logs them through the standard log package, which
// the CLI sends to its redacting stderr with that line replaced.
func TestStdlibLogDoesNotQuoteUnsolicitedBytes(t *testing.T) {
	const key = "an-0123456789abcdef0123456789abcdef"
	var stderr syncBuffer
	defer redactStdlibLog(secret.NewRedactor().Writer(&stderr))()
	srv := hostile.New(t, hostile.Unsolicited, hostile.Options{})
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/api/v2/tags", nil)
	req.Header.Set("OSDI-API-Token", key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(stderr.String(), "bytes nobody asked for") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(stderr.String(), "bytes nobody asked for") {
		t.Fatalf("the transport logged nothing: %q", stderr.String())
	}
	leakcheck.Assert(t, "stderr", []byte(stderr.String()), key, hostile.Canary)
}

func TestLearnSecrets(t *testing.T) {
	env := map[string]string{
		"VAULT_TOKEN": "hvs.root-token-for-tests", "ROLE": "role-id-0123456789", "SECRET_ID": "secret-id-0123456789",
		"SLACK_WEBHOOK": "https://hooks.slack.example/services/T0/B0/webhook-secret-part",
		"GH":            "ghp_token0123456789", "WP_TOKEN": "wp-token-0123456789", "PROBE": "probe-token-0123456789",
		"NOT_USED": "not-used-0123456789",
	}
	cfg := &config.Config{
		Vault:  config.Vault{Auth: &config.VaultAuth{RoleIDEnv: "ROLE", SecretIDEnv: "SECRET_ID"}},
		Notify: config.Notify{Slack: &config.Slack{WebhookURLEnv: "SLACK_WEBHOOK"}},
		Integrations: []config.Integration{
			{ID: "ci", Type: "github", Settings: map[string]any{"token_env": "GH"}},
			{ID: "w", Type: "http", Settings: map[string]any{"apply": map[string]any{
				"headers": map[string]any{"Authorization": "Bearer ${WP_TOKEN}"}}}},
			{ID: "m", Type: "manual", Settings: map[string]any{"verify": map[string]any{"http": map[string]any{
				"url": "https://probe.example/?t=${PROBE}"}}}},
		},
	}
	r := secret.NewRedactor()
	learnSecrets(cfg, func(k string) string { return env[k] }, r)
	for name, v := range env {
		got := r.Redact("x " + v + " y")
		if name == "NOT_USED" {
			if got != "x "+v+" y" {
				t.Errorf("%s redacted though nothing uses it", name)
			}
			continue
		}
		if strings.Contains(got, v) {
			t.Errorf("$%s not learnt: %s", name, got)
		}
	}
	if got := r.Redact("POST /services/T0/B0/webhook-secret-part HTTP/1.1"); strings.Contains(got, "webhook-secret-part") {
		t.Errorf("the webhook's path is not redacted on its own: %s", got)
	}
}
