package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rekey-dev/rekey/integrations"
	"github.com/rekey-dev/rekey/secret"
)

// The integrations serve uses log as serve does, JSON on stderr: they are
// built once, when the configuration is loaded, and keep the logger (and
// the SSH pool) they were built with.
func TestServeIntegrationsLogJSON(t *testing.T) {
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer target.Close()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "rekey.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`vault: {address: "http://127.0.0.1:8200", mount: secret}
keys:
  - {id: an, provider: none, vault_path: an/main}
integrations:
  - {id: widget, key: an, type: http, apply: {method: POST, url: %q, body: "{{key}}"}}
`, target.URL+"/settings")), 0o600)

	var errs bytes.Buffer
	a, err := serveApp(&GlobalOptions{ConfigPath: cfg, Output: "text", redact: secret.NewRedactor()}, Streams{Out: &bytes.Buffer{}, Err: &errs})
	if err != nil {
		t.Fatal(err)
	}
	targets, err := a.targets("an")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := targets[0].Integration.Apply(context.Background(), integrations.ApplyRequest{Key: secret.New("serve-log-key-0123456789abcdef")}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(errs.String(), "http: key applied") {
		t.Fatalf("the integration logged nothing at Info, serve's level; stderr:\n%s", errs.String())
	}
	for _, line := range strings.Split(strings.TrimSpace(errs.String()), "\n") {
		if !json.Valid([]byte(line)) {
			t.Errorf("serve's stderr has a line that is not JSON: %s", line)
		}
	}
}
