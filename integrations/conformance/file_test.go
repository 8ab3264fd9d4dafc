package conformance_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rekey-dev/rekey/config"
	"github.com/rekey-dev/rekey/integrations"
	"github.com/rekey-dev/rekey/integrations/conformance"
	"github.com/rekey-dev/rekey/integrations/file"
	"github.com/rekey-dev/rekey/secret"
)

// reloadScript stands in for `systemctl reload site`: it counts reloads
// (one per write that changed the file), logs its argv and environment,
// and fails or hangs when the probe says so.
const reloadScript = `#!/bin/sh
dir=$(dirname "$0")
{ echo "reload $*"; env | sort; } >> "$dir/log"
if [ -e "$dir/hang" ]; then rm -f "$dir/hang"; sleep 60; fi
if [ -e "$dir/fail" ]; then code=$(cat "$dir/fail"); rm -f "$dir/fail"; exit "$code"; fi
echo reloaded >> "$dir/reloads"
`

// TestFile runs the suite against a .env file whose reload command is a
// script the probe controls.
func TestFile(t *testing.T) {
	conformance.Run(t, conformance.TargetFunc(func(ct conformance.T, initial secret.Key) (integrations.Integration, conformance.Probe) {
		p := &fileProbe{t: ct, dir: t.TempDir()}
		p.env = filepath.Join(p.dir, "site.env")
		script(ct, p.dir, "reload.sh", reloadScript)
		p.SetHolds(ct, initial)
		settings := map[string]any{
			"path": p.env, "format": "dotenv", "field": "ACTION_NETWORK_API_KEY",
			"reload": []string{filepath.Join(p.dir, "reload.sh"), "site"},
		}
		item := config.Integration{ID: "site-env", Key: "actionnetwork-main", Type: file.Type, Settings: settings}
		h, logs := host(item, envOf(map[string]string{"GITHUB_TOKEN": "ghp_not_for_children"}))
		p.logs = logs
		in, err := file.New(h, item)
		if err != nil {
			ct.Fatalf("file.New: %v", err)
		}
		return in, p
	}))
}

// childEnvClean fails the check when a token from rekey's own
// environment reached a child process.
func childEnvClean(t conformance.T, log []byte) {
	if bytes.Contains(log, []byte("ghp_not_for_children")) {
		t.Errorf("rekey's GITHUB_TOKEN reached a child's environment")
	}
}

func script(t conformance.T, dir, name, body string) {
	if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o755); err != nil {
		t.Fatalf("write %s: %v", name, err)
	}
}

type fileProbe struct {
	t        conformance.T
	dir, env string
	logs     *syncBuffer
}

func (p *fileProbe) Writes() int {
	b, _ := os.ReadFile(filepath.Join(p.dir, "reloads"))
	return bytes.Count(b, []byte("\n"))
}

func (p *fileProbe) Holds(t conformance.T) secret.Key {
	b, err := os.ReadFile(p.env)
	if err != nil {
		t.Fatalf("read %s: %v", p.env, err)
	}
	if !bytes.HasPrefix(b, []byte("# the site's settings\nSITE_URL=https://greens.example\n")) {
		t.Errorf("the rest of %s was not kept", p.env)
	}
	var held string
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "ACTION_NETWORK_API_KEY="); ok {
			held = strings.Trim(v, `"'`)
		}
	}
	return secret.New(held)
}

func (p *fileProbe) SetHolds(t conformance.T, k secret.Key) bool {
	content := "# the site's settings\nSITE_URL=https://greens.example\n"
	if !k.IsZero() {
		content += "ACTION_NETWORK_API_KEY=" + k.Reveal() + "\n"
	}
	content += "LIST=greens\n"
	if err := os.WriteFile(p.env, []byte(content), 0o640); err != nil {
		t.Fatalf("write %s: %v", p.env, err)
	}
	return true
}

func (p *fileProbe) FailNext(f conformance.Failure) bool {
	code := "77" // EX_NOPERM
	if f == conformance.Transient {
		code = "75" // EX_TEMPFAIL
	}
	return os.WriteFile(filepath.Join(p.dir, "fail"), []byte(code), 0o600) == nil
}

func (p *fileProbe) HangNext() bool {
	return os.WriteFile(filepath.Join(p.dir, "hang"), nil, 0o600) == nil
}

func (p *fileProbe) Logs() []byte {
	b, _ := os.ReadFile(filepath.Join(p.dir, "log"))
	childEnvClean(p.t, b)
	return append(b, p.logs.Bytes()...)
}
