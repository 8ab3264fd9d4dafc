package e2e

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rekey-dev/rekey/config"
	"github.com/rekey-dev/rekey/integrations"
	"github.com/rekey-dev/rekey/integrations/all"
	"github.com/rekey-dev/rekey/internal/ghtest"
	"github.com/rekey-dev/rekey/internal/leakcheck"
	"github.com/rekey-dev/rekey/internal/vaulttest"
	"github.com/rekey-dev/rekey/internal/webtest"
	"github.com/rekey-dev/rekey/rotation"
	"github.com/rekey-dev/rekey/secret"
	"github.com/rekey-dev/rekey/state"
	"github.com/rekey-dev/rekey/vaultstore"
)

// TestRotationAcrossAllSixTypes rotates one key held by a file, an exec
// script, a person (manual, with an HTTP probe), the sign-up widget's HTTP
// API, a GitHub Actions secret and an app's Vault path, against the real
// Vault dev server and test servers speaking each protocol. Everything
// ends current; the manual one after `confirm`.
func TestRotationAcrossAllSixTypes(t *testing.T) {
	ctx := context.Background()
	old, key := secret.New("an-old-0123456789abcdef0123456789"), secret.New("an-new-fedcba9876543210fedcba9876")
	env := vaulttest.New(t)
	store := vaultstore.New(env.Client, env.Mount, "rekey")
	if _, err := store.WriteKey(ctx, "actionnetwork/main", old, 0, nil); err != nil {
		t.Fatal(err)
	}
	// The reporting app's own settings, with other fields that must stay.
	if _, err := env.Client.KVv2(env.Mount).Put(ctx, "apps/reporting", map[string]any{"ACTION_NETWORK_KEY": old.Reveal(), "DB_HOST": "db.internal"}); err != nil {
		t.Fatal(err)
	}

	gh := ghtest.New(t, ghtest.Options{})
	gh.AddRepo("greens/campaign-site")
	gh.SetSecret(ghtest.Repo("greens/campaign-site"), "ACTION_NETWORK_API_KEY", ghtest.Secret{Value: old, CreatedAt: time.Now().Add(-90 * 24 * time.Hour), UpdatedAt: time.Now().Add(-90 * 24 * time.Hour)})
	web := webtest.New(t)
	web.SetHolds(old)
	callhub := webtest.New(t) // stands for CallHub: a person updates it, the probe checks it
	callhub.SetHolds(old)

	dir := t.TempDir()
	envFile := filepath.Join(dir, ".env")
	original := "# site\nAPP_ENV=production\nACTION_NETWORK_API_KEY=" + old.Reveal() + "  # rotated by rekey\n"
	if err := os.WriteFile(envFile, []byte(original), 0o640); err != nil {
		t.Fatal(err)
	}
	syncKey := filepath.Join(dir, "sync-key")
	if err := os.WriteFile(syncKey, []byte(old.Reveal()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	cfgPath := filepath.Join(dir, "rekey.yaml")
	cfgText := fmt.Sprintf(`
vault: {mount: %[1]s}
keys:
  - {id: actionnetwork-main, provider: none, vault_path: actionnetwork/main, owner: "<@U012ABCDEF>"}
integrations:
  - {id: site-env, key: actionnetwork-main, type: file, path: %[2]s, format: dotenv, field: ACTION_NETWORK_API_KEY}
  - id: sync-script
    key: actionnetwork-main
    type: exec
    apply: [sh, -c, 'cat > %[3]s.tmp && mv %[3]s.tmp %[3]s']
    read: [cat, %[3]s]
  - id: callhub
    key: actionnetwork-main
    type: manual
    owner: "<@U0CALL>"
    instructions: "CallHub → Settings → Integrations → paste the key"
    verify: {http: {url: "%[10]s%[4]s", expect_status: 200}}
  - id: signup-widget
    key: actionnetwork-main
    type: http
    apply:
      method: PUT
      url: "${WP_URL}%[5]s"
      headers: {Authorization: "Bearer ${WP_TOKEN}"}
      body: '{"%[6]s": "{{key}}"}'
    read:
      url: "${WP_URL}%[5]s"
      headers: {Authorization: "Bearer ${WP_TOKEN}"}
      json_pointer: %[7]s
  - {id: ci, key: actionnetwork-main, type: github, repo: greens/campaign-site, secret: ACTION_NETWORK_API_KEY, token_env: GITHUB_TOKEN, api_url: "%[8]s"}
  - {id: reporting, key: actionnetwork-main, type: vault, mount: %[1]s, path: apps/reporting, field: ACTION_NETWORK_KEY, address: "%[9]s", token_env: REPORTING_TOKEN}
`, env.Mount, envFile, syncKey, webtest.StatusPath, webtest.SettingsPath, webtest.Field, webtest.Pointer, gh.URL, env.Addr, callhub.URL)
	if err := os.WriteFile(cfgPath, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{
		"CALLHUB_URL": callhub.URL, "WP_URL": web.URL, "WP_TOKEN": web.Token,
		"GITHUB_TOKEN": gh.Token, "REPORTING_TOKEN": env.Token,
	}
	var logs bytes.Buffer
	host := integrations.Host{
		Config: cfg, Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Getenv: func(k string) string { return vars[k] }, HTTPClient: &http.Client{Timeout: 10 * time.Second},
	}
	k, _ := cfg.KeyByID("actionnetwork-main")
	job := rotation.Job{Key: *k, Reason: "scheduled"}
	for _, in := range cfg.Integrations {
		integ, err := all.New(host, in)
		if err != nil {
			t.Fatalf("build %s: %v", in.ID, err)
		}
		job.Targets = append(job.Targets, rotation.Target{Config: in, Integration: integ})
	}
	eng := &rotation.Engine{Store: store, Logger: host.Logger, Concurrency: 6, Timeout: 10 * time.Second, Retries: 2}

	out, err := eng.Rotate(ctx, job, key)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range out.Results {
		want := state.Current
		if r.ID == "callhub" {
			want = state.Pending
		}
		if r.State != want {
			t.Errorf("%s (%s) is %s (%s), want %s", r.ID, r.Type, r.State, r.Reason, want)
		}
	}

	// A person pastes the key in CallHub, then confirms; its probe passes.
	callhub.SetHolds(key)
	res, err := eng.Confirm(ctx, job, job.Targets[2], "pasted")
	if err != nil || res.State != state.Current {
		t.Fatalf("confirm callhub: %+v, %v", res, err)
	}

	// An audit (read back, updated_at, probes) agrees: everything current.
	audit := eng.Audit(ctx, job)
	if !audit.AllCurrent() {
		t.Fatalf("audit after the rotation: %+v", audit.Integrations)
	}

	// Each target really holds the new key.
	if b, _ := os.ReadFile(envFile); string(b) != strings.Replace(original, old.Reveal(), key.Reveal(), 1) {
		t.Errorf(".env is not the original with only the value changed")
	}
	if b, _ := os.ReadFile(syncKey); strings.TrimSpace(string(b)) != key.Reveal() {
		t.Errorf("sync script holds %v", secret.New(strings.TrimSpace(string(b))))
	}
	if !web.Holds().Equal(key) {
		t.Errorf("widget holds %v", web.Holds())
	}
	if s, ok := gh.Secret(ghtest.Repo("greens/campaign-site"), "ACTION_NETWORK_API_KEY"); !ok || !s.Value.Equal(key) {
		t.Errorf("GitHub secret decrypts to %v", s.Value)
	}
	app, err := env.Client.KVv2(env.Mount).Get(ctx, "apps/reporting")
	if err != nil || app.Data["ACTION_NETWORK_KEY"] != key.Reveal() || app.Data["DB_HOST"] != "db.internal" {
		t.Errorf("reporting app's settings: %v", err)
	}
	if v := gh.Violations(); len(v) > 0 {
		t.Errorf("GitHub protocol violations: %v", v)
	}

	// A second rotation run over the same state writes nothing new.
	puts, writes := gh.Puts(), web.Writes()
	if _, err := eng.Resume(ctx, job); err != nil {
		t.Fatal(err)
	}
	if gh.Puts() != puts || web.Writes() != writes {
		t.Errorf("resume of a finished rotation wrote again: github %d→%d, widget %d→%d", puts, gh.Puts(), writes, web.Writes())
	}

	for what, data := range map[string][]byte{
		"logs": logs.Bytes(), "vault records": env.Dump(t, "rekey/"),
		"github server log": gh.Log(), "audit": []byte(fmt.Sprintf("%+v", audit)),
	} {
		leakcheck.Assert(t, what, data, old.Reveal(), key.Reveal())
	}
}
