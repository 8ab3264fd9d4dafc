package cli

import (
	"strings"
	"testing"

	"github.com/rekey-dev/rekey/config"
)

func TestCleartextURLs(t *testing.T) {
	a := &app{
		cfg: &config.Config{
			Vault:  config.Vault{Address: "http://vault.internal:8200"},
			Notify: config.Notify{Slack: &config.Slack{APIURL: "https://slack.com/api/"}},
			Keys: []config.Key{
				{ID: "an", ProviderURL: "http://actionnetwork.org/api/v2/"},
				{ID: "local", ProviderURL: "http://127.0.0.1:8080/api/v2/"},
				{ID: "dev", ProviderURL: "http://localhost:8080/"},
				{ID: "tls", ProviderURL: "https://actionnetwork.org/api/v2/"},
			},
			Integrations: []config.Integration{
				{ID: "gitlab-ci", Type: "gitlab", Settings: map[string]any{"api_url": "http://gitlab.greens.example/api/v4/"}},
				{ID: "k8s-local", Type: "kubernetes", Settings: map[string]any{"api_url": "http://127.0.0.1:8001/"}},
			},
		},
		getenv: func(string) string { return "" },
	}
	got := strings.Join(a.cleartextURLs(), "\n")
	for _, want := range []string{"vault address http://vault.internal:8200", "keys an provider_url http://actionnetwork.org/api/v2/", "integration gitlab-ci api_url http://gitlab.greens.example/api/v4/"} {
		if !strings.Contains(got, want) {
			t.Errorf("no warning for %s in:\n%s", want, got)
		}
	}
	for _, quiet := range []string{"local", "dev", "tls", "slack", "k8s-local"} {
		if strings.Contains(got, quiet) {
			t.Errorf("warned about %s:\n%s", quiet, got)
		}
	}
}
