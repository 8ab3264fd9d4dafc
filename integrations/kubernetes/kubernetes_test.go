package kubernetes_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rekey-dev/rekey/config"
	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/integrations"
	"github.com/rekey-dev/rekey/integrations/internal/platformtest"
	"github.com/rekey-dev/rekey/integrations/kubernetes"
	"github.com/rekey-dev/rekey/internal/k8stest"
	"github.com/rekey-dev/rekey/internal/leakcheck"
	"github.com/rekey-dev/rekey/secret"
	"github.com/rekey-dev/rekey/state"
)

type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) { l.mu.Lock(); defer l.mu.Unlock(); return l.b.Write(p) }
func (l *logBuf) Bytes() []byte               { l.mu.Lock(); defer l.mu.Unlock(); return bytes.Clone(l.b.Bytes()) }

// writeKubeconfig writes a kubeconfig for the server with a bearer token
// and returns its path.
func writeKubeconfig(t *testing.T, srv *k8stest.Server, token string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config")
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
current-context: prod
clusters:
- name: prod
  cluster:
    server: %s
    certificate-authority-data: %s
contexts:
- name: prod
  context: {cluster: prod, user: rekey, namespace: campaign}
users:
- name: rekey
  user:
    token: %s
`, srv.URL, b64(srv.CA), token)
	if err := os.WriteFile(path, []byte(kc), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func build(t *testing.T, kubeconfig string, settings map[string]any) (integrations.Integration, *logBuf, error) {
	t.Helper()
	s := map[string]any{"namespace": "campaign", "secret": "web-env", "field": "ACTION_NETWORK_API_KEY", "kubeconfig": kubeconfig}
	maps.Copy(s, settings)
	for k, v := range s {
		if v == nil {
			delete(s, k)
		}
	}
	item := config.Integration{ID: "k8s-web", Key: "actionnetwork-main", Type: kubernetes.Type, Settings: s}
	logs := &logBuf{}
	h := integrations.Host{
		Config: &config.Config{File: "rekey.yaml", Integrations: []config.Integration{item}},
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Getenv: func(string) string { return "" },
	}
	in, err := kubernetes.New(h, item)
	return in, logs, err
}

const old = "an-old-key-0123456789"

func newServer(t *testing.T) *k8stest.Server {
	srv := k8stest.New(t)
	srv.AddSecret("campaign", "web-env", map[string]string{"ACTION_NETWORK_API_KEY": old, "DATABASE_URL": "postgres://web@db/web"})
	srv.AddWorkload("deployments", "campaign", "web")
	srv.AddWorkload("statefulsets", "campaign", "worker")
	return srv
}

func current(k secret.Key) integrations.Expect {
	return integrations.Expect{Versions: map[string]integrations.VersionState{k.Fingerprint(): integrations.VersionCurrent}, Current: k.Fingerprint()}
}

func TestApplyPatchesOneKeyAndRestartsOnce(t *testing.T) {
	ctx := context.Background()
	srv := newServer(t)
	in, logs, err := build(t, writeKubeconfig(t, srv, srv.Token), map[string]any{"restart": []any{"deployment/web", "statefulset/worker"}})
	if err != nil {
		t.Fatal(err)
	}
	key := secret.New("an-new-key-fedcba9876543210")
	res, err := in.Apply(ctx, integrations.ApplyRequest{Key: key, RotationID: "r1"})
	if err != nil || !res.Changed {
		t.Fatalf("Apply = %+v, %v", res, err)
	}
	want := map[string]string{"ACTION_NETWORK_API_KEY": key.Reveal(), "DATABASE_URL": "postgres://web@db/web"}
	if got := srv.Data("campaign", "web-env"); !maps.Equal(got, want) {
		t.Errorf("Secret data after Apply is not the old data with only the key changed")
	}
	if d, s := srv.Restarts("deployments", "campaign", "web"), srv.Restarts("statefulsets", "campaign", "worker"); d != 1 || s != 1 {
		t.Errorf("restarts: deployment %d, statefulset %d; want 1 each", d, s)
	}
	log := string(srv.Log())
	if !strings.Contains(log, "PATCH /api/v1/namespaces/campaign/secrets/web-env?fieldManager=rekey -> 200\n") ||
		!strings.Contains(log, "Content-Type: application/merge-patch+json") ||
		!strings.Contains(log, `body: {"data":"<redacted>","metadata":{"resourceVersion":"`) {
		t.Errorf("the Secret was not patched with a merge patch carrying its resourceVersion:\n%s", log)
	}
	if !strings.Contains(log, "Content-Type: application/strategic-merge-patch+json") || !strings.Contains(log, `"kubectl.kubernetes.io/restartedAt":"`) {
		t.Errorf("the restart is not kubectl's:\n%s", log)
	}
	res, err = in.Apply(ctx, integrations.ApplyRequest{Key: key, RotationID: "r1", Last: state.Written{Fingerprint: key.Fingerprint(), At: time.Now()}})
	if err != nil || res.Changed || srv.Patches() != 1 || srv.Restarts("deployments", "campaign", "web") != 1 {
		t.Errorf("Apply of the key it holds: %+v, %v; %d patches, %d restarts", res, err, srv.Patches(), srv.Restarts("deployments", "campaign", "web"))
	}
	if st := integrations.Observe(ctx, in, current(key)); st.State != state.Current || st.Proof != state.Exact {
		t.Errorf("Observe = %+v", st)
	}
	if err := in.(integrations.Preflighter).Preflight(ctx); err != nil {
		t.Errorf("Preflight: %v", err)
	}
	leakcheck.Assert(t, "logs", append(srv.Log(), logs.Bytes()...), key.Reveal(), old, srv.Token)
}

func TestConflictIsRetriedOnAFreshReadWithoutClobbering(t *testing.T) {
	ctx := context.Background()
	srv := newServer(t)
	srv.ConcurrentWrite("campaign", "web-env", "DATABASE_URL", "postgres://web@db2/web")
	in, _, err := build(t, writeKubeconfig(t, srv, srv.Token), nil)
	if err != nil {
		t.Fatal(err)
	}
	key := secret.New("an-new-key-fedcba9876543210")
	if _, err := in.Apply(ctx, integrations.ApplyRequest{Key: key}); err != nil {
		t.Fatalf("Apply that raced another writer: %v", err)
	}
	want := map[string]string{"ACTION_NETWORK_API_KEY": key.Reveal(), "DATABASE_URL": "postgres://web@db2/web"}
	if got := srv.Data("campaign", "web-env"); !maps.Equal(got, want) {
		t.Errorf("after the race the other writer's change or the key is lost")
	}
	if n := strings.Count(string(srv.Log()), "-> 409\n"); n != 1 {
		t.Errorf("%d conflicts, want 1", n)
	}
}

func TestMissingFieldIsAddedAndMissingSecretIsNotFound(t *testing.T) {
	ctx := context.Background()
	srv := newServer(t)
	srv.DeleteData("campaign", "web-env", "ACTION_NETWORK_API_KEY")
	in, _, err := build(t, writeKubeconfig(t, srv, srv.Token), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := in.(integrations.Reader).Read(ctx); !errors.Is(err, failure.ErrNotFound) || !strings.Contains(err.Error(), "Secret campaign/web-env has no key ACTION_NETWORK_API_KEY") {
		t.Errorf("Read of a missing key: %v", err)
	}
	key := secret.New("an-new-key-fedcba9876543210")
	if _, err := in.Apply(ctx, integrations.ApplyRequest{Key: key}); err != nil {
		t.Fatal(err)
	}
	if got := srv.Holds("campaign", "web-env", "ACTION_NETWORK_API_KEY"); !got.Equal(key) {
		t.Errorf("holds %v", got)
	}
}

func TestImmutableSecret(t *testing.T) {
	ctx := context.Background()
	srv := newServer(t)
	srv.MakeImmutable("campaign", "web-env")
	in, _, err := build(t, writeKubeconfig(t, srv, srv.Token), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := in.(integrations.Preflighter).Preflight(ctx); !errors.Is(err, failure.ErrInvalid) || !strings.Contains(err.Error(), "immutable") {
		t.Errorf("Preflight of an immutable Secret: %v", err)
	}
	_, err = in.Apply(ctx, integrations.ApplyRequest{Key: secret.New("an-new-key-fedcba9876543210")})
	if !errors.Is(err, failure.ErrInvalid) || failure.IsTransient(err) || srv.Patches() != 0 {
		t.Errorf("Apply to an immutable Secret: %v, %d patches", err, srv.Patches())
	}
}

func TestPreflightAsksRBAC(t *testing.T) {
	ctx := context.Background()
	srv := newServer(t)
	in, _, err := build(t, writeKubeconfig(t, srv, srv.Token), map[string]any{"restart": []any{"deploy/web"}})
	if err != nil {
		t.Fatal(err)
	}
	srv.Forbid("patch", "secrets")
	if err := in.(integrations.Preflighter).Preflight(ctx); !errors.Is(err, failure.ErrUnauthorized) || !strings.Contains(err.Error(), "may not patch Secret campaign/web-env (RBAC)") {
		t.Errorf("Preflight without patch on secrets: %v", err)
	}
	srv.Allow("patch", "secrets")
	srv.Forbid("patch", "deployments")
	if err := in.(integrations.Preflighter).Preflight(ctx); !errors.Is(err, failure.ErrUnauthorized) || !strings.Contains(err.Error(), "cannot restart it") {
		t.Errorf("Preflight without patch on deployments: %v", err)
	}
	srv.Allow("patch", "deployments")
	srv.Pause("deployments", "campaign", "web")
	if err := in.(integrations.Preflighter).Preflight(ctx); !errors.Is(err, failure.ErrInvalid) || !strings.Contains(err.Error(), "paused") {
		t.Errorf("Preflight with a paused deployment: %v", err)
	}
	if srv.Patches() != 0 {
		t.Errorf("Preflight wrote")
	}
}

func TestRestartThatFailedIsDoneOnTheRetry(t *testing.T) {
	ctx := context.Background()
	srv := newServer(t)
	in, _, err := build(t, writeKubeconfig(t, srv, srv.Token), map[string]any{"restart": []any{"statefulset/worker", "deployment/web"}})
	if err != nil {
		t.Fatal(err)
	}
	srv.Forbid("patch", "deployments")
	key := secret.New("an-new-key-fedcba9876543210")
	_, err = in.Apply(ctx, integrations.ApplyRequest{Key: key, RotationID: "r1"})
	if !errors.Is(err, failure.ErrUnauthorized) || !strings.Contains(err.Error(), "restart deployment/web") {
		t.Fatalf("Apply whose restart is forbidden: %v", err)
	}
	srv.Allow("patch", "deployments")
	if _, err := in.Apply(ctx, integrations.ApplyRequest{Key: key, RotationID: "r1"}); err != nil {
		t.Fatal(err)
	}
	if p, w, d := srv.Patches(), srv.Restarts("statefulsets", "campaign", "worker"), srv.Restarts("deployments", "campaign", "web"); p != 1 || w != 1 || d != 1 {
		t.Errorf("%d patches, worker restarted %d times, web %d; want 1, 1, 1", p, w, d)
	}
}

func TestClientCertificates(t *testing.T) {
	ctx := context.Background()
	srv := newServer(t)
	dir := t.TempDir()
	cert, key := srv.ClientCert("rekey-operator")
	for name, b := range map[string][]byte{"ca.crt": srv.CA, "client.crt": cert, "client.key": key} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	kc := fmt.Sprintf(`current-context: ops
clusters:
- {name: c, cluster: {server: %s, certificate-authority: ca.crt}}
contexts:
- {name: ops, context: {cluster: c, user: op}}
users:
- {name: op, user: {client-certificate: client.crt, client-key: client.key}}
`, srv.URL)
	path := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(path, []byte(kc), 0o600); err != nil {
		t.Fatal(err)
	}
	in, _, err := build(t, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	k := secret.New("an-new-key-fedcba9876543210")
	if _, err := in.Apply(ctx, integrations.ApplyRequest{Key: k}); err != nil {
		t.Fatalf("Apply with client certificates (paths relative to the kubeconfig): %v", err)
	}
	if strings.Contains(string(srv.Log()), "Authorization") {
		t.Errorf("a token was sent with client certificates")
	}
}

func TestFailures(t *testing.T) {
	platformtest.Run(t, platformtest.Target{
		New: func(t *testing.T, badToken, missing bool) (integrations.Integration, platformtest.Server, platformtest.Probe) {
			srv := newServer(t)
			token := srv.Token
			if badToken {
				token = "not-the-token"
			}
			s := "web-env"
			if missing {
				s = "gone-env"
			}
			in, logs, err := build(t, writeKubeconfig(t, srv, token), map[string]any{"secret": s})
			if err != nil {
				t.Fatal(err)
			}
			return in, srv, probe{srv, logs}
		},
		Hostile: func(t *testing.T, at func(string) string) (integrations.Integration, string, func() []byte) {
			// The API server speaks TLS with its own CA, which the hostile
			// peer cannot forward to: it answers every request itself.
			srv := newServer(t)
			in, logs, err := build(t, writeKubeconfig(t, srv, srv.Token), map[string]any{"api_url": at("")})
			if err != nil {
				t.Fatal(err)
			}
			return in, srv.Token, logs.Bytes
		},
		Names:   []string{"Secret campaign/web-env", `user "rekey" of context "prod"`},
		Missing: []string{"Secret campaign/gone-env"},
		Wait:    2 * time.Second,
	})
}

type probe struct {
	srv  *k8stest.Server
	logs *logBuf
}

func (p probe) Holds() secret.Key {
	return p.srv.Holds("campaign", "web-env", "ACTION_NETWORK_API_KEY")
}
func (p probe) Writes() int  { return p.srv.Patches() }
func (p probe) Logs() []byte { return p.logs.Bytes() }

func TestConfigErrors(t *testing.T) {
	for _, c := range []struct {
		settings map[string]any
		field    string
	}{
		{map[string]any{"namespace": nil}, "namespace"},
		{map[string]any{"namespace": "Campaign"}, "namespace"},
		{map[string]any{"secret": "web_env"}, "secret"},
		{map[string]any{"field": "A KEY"}, "field"},
		{map[string]any{"restart": []any{"pod/web"}}, "restart[0]"},
		{map[string]any{"restart": []any{"deployment"}}, "restart[0]"},
		{map[string]any{"api_url": "nope"}, "api_url"},
	} {
		_, _, err := build(t, "/nonexistent", c.settings)
		var ce *config.Error
		if !errors.As(err, &ce) || ce.Field != c.field {
			t.Errorf("settings %v: %v, want a config error on field %s", c.settings, err, c.field)
		}
	}
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
