package cli

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rekey-dev/rekey/internal/hostile"
	"github.com/rekey-dev/rekey/internal/k8stest"
	"github.com/rekey-dev/rekey/internal/leakcheck"
	"github.com/rekey-dev/rekey/internal/vaulttest"
	"github.com/rekey-dev/rekey/secret"
)

// kubeWorld writes a configuration with one kubernetes integration whose
// kubeconfig holds token, the API server at apiURL, and returns its path.
func kubeWorld(t *testing.T, vaultAddr, mount, apiURL, token string, ca []byte) string {
	t.Helper()
	dir := t.TempDir()
	kc := filepath.Join(dir, "kubeconfig")
	cluster := fmt.Sprintf("{server: %q}", apiURL)
	if ca != nil {
		cluster = fmt.Sprintf("{server: %q, certificate-authority-data: %s}", apiURL, base64.StdEncoding.EncodeToString(ca))
	}
	os.WriteFile(kc, []byte(fmt.Sprintf(`current-context: prod
clusters:
- {name: prod, cluster: %s}
contexts:
- {name: prod, context: {cluster: prod, user: rekey}}
users:
- {name: rekey, user: {token: %s}}
`, cluster, token)), 0o600)
	cfg := filepath.Join(dir, "rekey.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`vault: {address: %q, mount: %s, state_path: rekey}
rotation: {timeout: 5s, retries: 0}
keys:
  - {id: an, provider: none, vault_path: an/main}
integrations:
  - {id: k8s-web, key: an, type: kubernetes, namespace: campaign, secret: web-env, field: KEY, kubeconfig: %q}
`, vaultAddr, mount, kc)), 0o600)
	return cfg
}

// The run's redactor learns a kubeconfig's token when the configuration
// is loaded, before anything is sent anywhere: it is no *_env value, so
// only the integration can tell it (integrations.SecretHolder).
func TestLoadLearnsKubeconfigSecrets(t *testing.T) {
	const token = "kube-token-5d1c0e9f8a7b6c5d4e3f"
	cfg := kubeWorld(t, "http://127.0.0.1:8200", "secret", "https://k8s.invalid:6443", token, nil)
	red := secret.NewRedactor()
	g := &GlobalOptions{ConfigPath: cfg, Output: "text", redact: red}
	if _, err := load(g, Streams{Out: &bytes.Buffer{}, Err: &bytes.Buffer{}}); err != nil {
		t.Fatal(err)
	}
	if got := red.Redact("Authorization: Bearer " + token); strings.Contains(got, token) {
		t.Fatalf("the kubeconfig's token is not redacted: %s", got)
	}
}

// A Kubernetes API server (or a proxy in its place) that answers with
// bytes quoting the request, Authorization header and all, gets the
// kubeconfig's token into no output of check or audit, text or JSON.
func TestHostileKubernetesAPIGetsNoTokenOut(t *testing.T) {
	v := vaulttest.New(t)
	t.Setenv("VAULT_TOKEN", v.Token)
	const token = "kube-token-0a1b2c3d4e5f60718293"
	for _, mode := range hostile.All {
		t.Run(string(mode), func(t *testing.T) {
			srv := hostile.New(t, mode, hostile.Options{})
			cfg := kubeWorld(t, v.Addr, v.Mount, srv.URL, token, nil)
			for _, args := range [][]string{
				{"check", "an", "--config", cfg},
				{"check", "an", "--config", cfg, "--output", "json", "-v"},
				{"audit", "an", "--config", cfg, "-v"},
			} {
				var out, errs bytes.Buffer
				code := Main(args, Streams{Out: &out, Err: &errs})
				if code == ExitOK {
					t.Errorf("%v: exit 0 against a hostile API server", args)
				}
				if !strings.Contains(out.String()+errs.String(), "k8s-web") {
					t.Errorf("%v: the integration is not reported:\n%s\n%s", args, out.String(), errs.String())
				}
				leakcheck.Assert(t, fmt.Sprint(args)+" output", append(out.Bytes(), errs.Bytes()...), token)
			}
			if srv.Hostile() == 0 {
				t.Fatal("the hostile server was never asked")
			}
		})
	}
	// The same against the real shape of the API: the token is sent, and
	// still printed nowhere.
	k := k8stest.New(t)
	k.AddSecret("campaign", "web-env", map[string]string{"KEY": "old-0123456789"})
	cfg := kubeWorld(t, v.Addr, v.Mount, k.URL, k.Token, k.CA)
	var out, errs bytes.Buffer
	Main([]string{"check", "an", "--config", cfg, "-v"}, Streams{Out: &out, Err: &errs})
	if !strings.Contains(out.String(), "k8s-web") {
		t.Fatalf("check did not report the integration:\n%s\n%s", out.String(), errs.String())
	}
	leakcheck.Assert(t, "check output", append(out.Bytes(), errs.Bytes()...), k.Token)
}
