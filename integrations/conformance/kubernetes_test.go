package conformance_test

import (
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/rekey-dev/rekey/config"
	"github.com/rekey-dev/rekey/integrations"
	"github.com/rekey-dev/rekey/integrations/conformance"
	"github.com/rekey-dev/rekey/integrations/kubernetes"
	"github.com/rekey-dev/rekey/internal/k8stest"
	"github.com/rekey-dev/rekey/secret"
)

func TestKubernetes(t *testing.T) {
	conformance.Run(t, conformance.TargetFunc(func(ct conformance.T, initial secret.Key) (integrations.Integration, conformance.Probe) {
		srv := k8stest.New(t)
		data := map[string]string{"DATABASE_URL": "postgres://web@db/web"}
		if !initial.IsZero() {
			data["ACTION_NETWORK_API_KEY"] = initial.Reveal()
		}
		srv.AddSecret("campaign", "web-env", data)
		kc := filepath.Join(t.TempDir(), "config")
		text := fmt.Sprintf("current-context: c\nclusters: [{name: c, cluster: {server: %q, certificate-authority-data: %s}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\nusers: [{name: u, user: {token: %s}}]\n",
			srv.URL, base64.StdEncoding.EncodeToString(srv.CA), srv.Token)
		if err := os.WriteFile(kc, []byte(text), 0o600); err != nil {
			ct.Fatalf("%v", err)
		}
		item := config.Integration{ID: "k8s-web", Key: "actionnetwork-main", Type: kubernetes.Type, Settings: map[string]any{
			"namespace": "campaign", "secret": "web-env", "field": "ACTION_NETWORK_API_KEY", "kubeconfig": kc,
		}}
		h, logs := host(item, envOf(nil))
		in, err := kubernetes.New(h, item)
		if err != nil {
			ct.Fatalf("kubernetes.New: %v", err)
		}
		return in, &platformProbe{
			base:   srv.Base,
			holds:  func() secret.Key { return srv.Holds("campaign", "web-env", "ACTION_NETWORK_API_KEY") },
			set:    func(k secret.Key) { srv.SetData("campaign", "web-env", "ACTION_NETWORK_API_KEY", k.Reveal()) },
			writes: srv.Patches,
			logs:   logs,
		}
	}))
}
