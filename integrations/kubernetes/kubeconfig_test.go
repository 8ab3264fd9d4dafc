package kubernetes

import (
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/rekey-dev/rekey/internal/k8stest"
	"github.com/rekey-dev/rekey/internal/leakcheck"
)

// can reports whether the credentials reach the server and are accepted.
func can(t *testing.T, cred *credentials) error {
	t.Helper()
	api, err := clientFor(cred, "", 0)
	if err != nil {
		return err
	}
	x := &Kubernetes{namespace: "campaign", secretName: "web-env", field: "KEY", target: "Secret campaign/web-env", api: api}
	_, err = x.get(context.Background())
	return err
}

func write(t *testing.T, dir, name, text string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestKubeconfigListMergesFirstWins(t *testing.T) {
	srv := k8stest.New(t)
	srv.AddSecret("campaign", "web-env", map[string]string{"KEY": "v"})
	dir := t.TempDir()
	ca := base64.StdEncoding.EncodeToString(srv.CA)
	// The first file sets current-context and the user; the second defines
	// the cluster and the context, and another user of the same name with
	// a wrong token, and another current-context: the first file wins both.
	first := write(t, dir, "a", fmt.Sprintf("current-context: prod\nusers:\n- name: rekey\n  user: {token: %s}\n", srv.Token))
	second := write(t, dir, "b", fmt.Sprintf(`current-context: dev
clusters:
- {name: prod, cluster: {server: %q, certificate-authority-data: %s}}
- {name: dev, cluster: {server: "https://dev.invalid"}}
contexts:
- {name: prod, context: {cluster: prod, user: rekey}}
- {name: dev, context: {cluster: dev, user: rekey}}
users:
- name: rekey
  user: {token: wrong-token}
`, srv.URL, ca))
	list := strings.Join([]string{filepath.Join(dir, "missing"), "", first, second}, string(filepath.ListSeparator))
	cred, err := loadCredentials("", "", env(map[string]string{"KUBECONFIG": list, "HOME": dir}))
	if err != nil {
		t.Fatal(err)
	}
	if cred.server.String() != srv.URL || cred.token != srv.Token {
		t.Errorf("merged: server %s, the first file's token: %v", cred.server, cred.token == srv.Token)
	}
	if err := can(t, cred); err != nil {
		t.Errorf("the merged credentials: %v", err)
	}
	// context picks another one.
	cred, err = loadCredentials("", "dev", env(map[string]string{"KUBECONFIG": list}))
	if err != nil || cred.server.Host != "dev.invalid" {
		t.Errorf("context dev: %v, %v", cred, err)
	}
	if _, err := loadCredentials("", "staging", env(map[string]string{"KUBECONFIG": list})); err == nil || !strings.Contains(err.Error(), `no context "staging"`) {
		t.Errorf("an unknown context: %v", err)
	}
}

func TestDefaultKubeconfigAndTokenFile(t *testing.T) {
	srv := k8stest.New(t)
	srv.AddSecret("campaign", "web-env", map[string]string{"KEY": "v"})
	home := t.TempDir()
	if err := os.MkdirAll(filepath.Join(home, ".kube"), 0o700); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(home, ".kube"), "ca.pem", string(srv.CA))
	write(t, filepath.Join(home, ".kube"), "token", "stale-token\n")
	write(t, filepath.Join(home, ".kube"), "config", fmt.Sprintf(`current-context: c
clusters: [{name: c, cluster: {server: %q, certificate-authority: ca.pem}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
users: [{name: u, user: {tokenFile: token}}]
`, srv.URL))
	cred, err := loadCredentials("", "", env(map[string]string{"HOME": home}))
	if err != nil {
		t.Fatal(err)
	}
	if err := can(t, cred); err == nil {
		t.Errorf("a stale token was accepted")
	}
	// The token file is read again at every request (projected tokens rotate).
	write(t, filepath.Join(home, ".kube"), "token", srv.Token+"\n")
	if err := can(t, cred); err != nil {
		t.Errorf("after the token file rotated: %v", err)
	}
}

func TestInCluster(t *testing.T) {
	srv := k8stest.New(t)
	srv.AddSecret("campaign", "web-env", map[string]string{"KEY": "v"})
	dir := t.TempDir()
	write(t, dir, "ca.crt", string(srv.CA))
	write(t, dir, "token", srv.Token)
	defer func(d string) { serviceAccountDir = d }(serviceAccountDir)
	serviceAccountDir = dir
	u, _ := url.Parse(srv.URL)
	host, port, _ := net.SplitHostPort(u.Host)
	cred, err := loadCredentials("", "", env(map[string]string{"HOME": t.TempDir(), "KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": port}))
	if err != nil {
		t.Fatal(err)
	}
	if cred.source != "the pod's service account" {
		t.Errorf("source %q", cred.source)
	}
	if err := can(t, cred); err != nil {
		t.Errorf("in-cluster: %v", err)
	}
	if _, err := loadCredentials("", "", env(map[string]string{"HOME": t.TempDir()})); err == nil || !strings.Contains(err.Error(), "no kubeconfig") {
		t.Errorf("no kubeconfig and not in a pod: %v", err)
	}
}

func TestKubeconfigRefusals(t *testing.T) {
	dir := t.TempDir()
	secretToken := "sekrit-token-0123456789abcdef"
	cases := []struct{ text, want string }{
		{"current-context: c\nclusters: [{name: c, cluster: {server: https://k}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\nusers: [{name: u, user: {exec: {command: aws, args: [eks, get-token]}}}]\n", "exec credential plugin"},
		{"current-context: c\nclusters: [{name: c, cluster: {server: https://k}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\nusers: [{name: u, user: {username: admin, password: " + secretToken + "}}]\n", "username and password"},
		{"current-context: c\nclusters: [{name: c, cluster: {server: https://k}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\nusers: [{name: u, user: {client-certificate-data: bm90IGEgY2VydA==}}]\n", "give client-certificate and client-key together"},
		{"current-context: c\nclusters: [{name: c, cluster: {server: https://k}}]\ncontexts: [{name: c, context: {cluster: x, user: u}}]\nusers: [{name: u, user: {token: t}}]\n", `names cluster "x"`},
		{"current-context: c\nclusters: [{name: c, cluster: {server: https://k, certificate-authority-data: '!!'}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\nusers: [{name: u, user: {token: t}}]\n", "certificate-authority-data is not base64"},
		{"users:\n- name: u\n  user: " + secretToken + "\n", "is not a valid kubeconfig"},
	}
	for i, c := range cases {
		p := write(t, dir, fmt.Sprint(i), c.text)
		_, err := loadCredentials(p, "", env(nil))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("case %d: %v, want %q", i, err, c.want)
			continue
		}
		leakcheck.Assert(t, "kubeconfig error", []byte(err.Error()), secretToken)
	}
	if _, err := loadCredentials(filepath.Join(dir, "nope"), "", env(nil)); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("a missing kubeconfig: %v", err)
	}
}

// Secrets gives the run's redactor every credential the kubeconfig holds
// for this integration: a static token, the token file's content, the
// client key (PEM and each line of it). A kubeconfig that cannot be read
// gives none.
func TestSecretsHoldsTheCredentials(t *testing.T) {
	srv := k8stest.New(t)
	dir := t.TempDir()
	certPEM, keyPEM := srv.ClientCert("rekey")
	write(t, dir, "token", "  file-token-0123456789abcdef\n")
	kc := write(t, dir, "config", fmt.Sprintf(`current-context: prod
clusters:
- {name: prod, cluster: {server: %q, certificate-authority-data: %s}}
contexts:
- {name: prod, context: {cluster: prod, user: rekey}}
- {name: files, context: {cluster: prod, user: files}}
- {name: certs, context: {cluster: prod, user: certs}}
users:
- {name: rekey, user: {token: static-token-0123456789abcdef}}
- {name: files, user: {tokenFile: token}}
- {name: certs, user: {client-certificate-data: %s, client-key-data: %s}}
`, srv.URL, base64.StdEncoding.EncodeToString(srv.CA), base64.StdEncoding.EncodeToString(certPEM), base64.StdEncoding.EncodeToString(keyPEM)))
	for _, c := range []struct {
		context string
		want    []string
	}{
		{"prod", []string{"static-token-0123456789abcdef"}},
		{"files", []string{"file-token-0123456789abcdef"}},
		{"certs", append([]string{string(keyPEM)}, pemLines(keyPEM)...)},
	} {
		x := &Kubernetes{kubeconfig: kc, context: c.context, getenv: env(nil), target: "Secret campaign/web-env"}
		var sh any = x
		holder, ok := sh.(interface{ Secrets() []string })
		if !ok {
			t.Fatalf("%T is not an integrations.SecretHolder", x)
		}
		got := holder.Secrets()
		for _, w := range c.want {
			if !slices.Contains(got, w) {
				t.Errorf("context %s: Secrets() lacks one of %d credentials", c.context, len(c.want))
			}
		}
		if slices.Contains(got, "") {
			t.Errorf("context %s: Secrets() holds an empty string", c.context)
		}
	}
	x := &Kubernetes{kubeconfig: filepath.Join(dir, "missing"), getenv: env(nil)}
	if got := x.Secrets(); len(got) != 0 {
		t.Errorf("a missing kubeconfig gave %d secrets", len(got))
	}
}

// pemLines are the base64 lines of a PEM block's body.
func pemLines(p []byte) []string {
	var out []string
	for _, l := range strings.Split(string(p), "\n") {
		if l != "" && !strings.HasPrefix(l, "-----") {
			out = append(out, l)
		}
	}
	return out
}
