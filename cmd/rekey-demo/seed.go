package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	vault "github.com/hashicorp/vault/api"

	"github.com/rekey-dev/rekey/internal/vaulttest"
)

// seed writes example integrations holding oldKey, and a configuration
// for them, under dir. It returns the configuration's path.
func seed(dir, anURL, oldKey string, host *demoHost) (string, error) {
	site := filepath.Join(dir, "site")
	sync := filepath.Join(dir, "sync")
	widget := filepath.Join(dir, "wordpress")
	for _, d := range []string{site, sync, widget} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return "", err
		}
	}
	files := map[string]string{
		filepath.Join(site, ".env"):                 "# campaign site\nAPP_ENV=production\nACTION_NETWORK_API_KEY=" + oldKey + "   # rotated by rekey\nMAIL_FROM=team@example.org\n",
		filepath.Join(widget, "signup-widget.json"): "{\n  \"form\": \"join-us\",\n  \"actionnetwork\": {\"api_key\": \"" + oldKey + "\", \"list\": \"main\"},\n  \"theme\": \"green\"\n}\n",
		filepath.Join(sync, "key"):                  oldKey + "\n",
		filepath.Join(sync, "set-key"):              "#!/bin/sh\n# reads the new key on stdin\numask 077\ncat > \"$(dirname \"$0\")/key.tmp\" && mv \"$(dirname \"$0\")/key.tmp\" \"$(dirname \"$0\")/key\"\n",
		filepath.Join(sync, "show-key"):             "#!/bin/sh\ncat \"$(dirname \"$0\")/key\"\n",
	}
	for p, content := range files {
		mode := os.FileMode(0o600)
		if filepath.Base(p) == "set-key" || filepath.Base(p) == "show-key" {
			mode = 0o755
		}
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			return "", err
		}
	}
	cfg := fmt.Sprintf(`vault:
  mount: secret
  state_path: rekey
notify:
  console: true          # print what Slack would have received
rotation:
  concurrency: 16
  timeout: 10s
  retries: 2
keys:
  - id: actionnetwork-main
    provider: actionnetwork
    provider_url: %s
    vault_path: actionnetwork/main
    rotate_every: 90d
    owner: "<@U012ABCDEF>"
    instructions: "Action Network → Details → API & Sync → REVOKE & GENERATE NEW KEY"
    scan_paths: [%s]
integrations:
  - id: callhub
    key: actionnetwork-main
    type: manual
    owner: "Dana (CallHub admin)"    # no Slack user: her code is printed for the operator
    instructions: "CallHub → Settings → Integrations → Action Network → paste the key"
    handoff: {ttl: 24h}
  - id: site-env
    key: actionnetwork-main
    type: file
    path: %s
    format: dotenv
    field: ACTION_NETWORK_API_KEY
  - id: signup-widget
    key: actionnetwork-main
    type: file
    path: %s
    format: json
    field: actionnetwork.api_key
  - id: sync-script
    key: actionnetwork-main
    type: exec
    apply: [%s]
    read: [%s]
`, anURL, dir, filepath.Join(site, ".env"), filepath.Join(widget, "signup-widget.json"),
		filepath.Join(sync, "set-key"), filepath.Join(sync, "show-key"))
	if host != nil {
		// The same .env on "web1", reached over SSH: rewritten over SFTP.
		web1 := filepath.Join(dir, "web1")
		if err := os.MkdirAll(web1, 0o755); err != nil {
			return "", err
		}
		if err := os.WriteFile(filepath.Join(web1, ".env"), []byte("# web1\nACTION_NETWORK_API_KEY="+oldKey+"\nQUEUE=redis://localhost\n"), 0o640); err != nil {
			return "", err
		}
		cfg += fmt.Sprintf(`  - id: web1-env
    key: actionnetwork-main
    type: file
    host: %s
    path: %s
    format: dotenv
    field: ACTION_NETWORK_API_KEY
ssh:
  known_hosts: %s
  identity_file: %s
`, host.srv.Target(0), filepath.Join(web1, ".env"), host.srv.KnownHosts, host.srv.Identity)
	}
	p := filepath.Join(dir, "rekey.yaml")
	return p, os.WriteFile(p, []byte(cfg), 0o600)
}

// storeInitial writes the key's first version, as an operator would once.
func storeInitial(srv *vaulttest.Server, key string) error {
	vc := vault.DefaultConfig()
	vc.Address = srv.Addr
	c, err := vault.NewClient(vc)
	if err != nil {
		return err
	}
	c.SetToken(srv.Token)
	_, err = c.KVv2("secret").Put(context.Background(), "actionnetwork/main", map[string]any{"api_key": key})
	return err
}
