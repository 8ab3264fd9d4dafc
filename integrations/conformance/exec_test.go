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
	execint "github.com/rekey-dev/rekey/integrations/exec"
	"github.com/rekey-dev/rekey/secret"
)

// The commands of an exec integration: apply stores the key it reads on
// stdin in the file "target", read prints it, verify checks there is one.
// Each logs its argv and environment (never stdin), and any of them hangs
// when the probe says so; apply fails when told to.
const (
	execPrelude = `#!/bin/sh
dir=$(dirname "$0")
{ echo "$(basename "$0") $*"; env | sort; } >> "$dir/log"
if [ -e "$dir/hang" ]; then rm -f "$dir/hang"; sleep 60; fi
`
	applyScript = execPrelude + `if [ -e "$dir/fail" ]; then code=$(cat "$dir/fail"); rm -f "$dir/fail"; exit "$code"; fi
IFS= read -r key || exit 1
printf '%s\n' "$key" > "$dir/target.tmp" && mv "$dir/target.tmp" "$dir/target"
echo wrote >> "$dir/writes"
`
	readScript   = execPrelude + `[ -e "$dir/target" ] && cat "$dir/target"; exit 0` + "\n"
	verifyScript = execPrelude + `[ -s "$dir/target" ]` + "\n"
)

func TestExec(t *testing.T) {
	conformance.Run(t, conformance.TargetFunc(func(ct conformance.T, initial secret.Key) (integrations.Integration, conformance.Probe) {
		p := &execProbe{t: ct, dir: t.TempDir()}
		script(ct, p.dir, "apply.sh", applyScript)
		script(ct, p.dir, "read.sh", readScript)
		script(ct, p.dir, "verify.sh", verifyScript)
		p.SetHolds(ct, initial)
		settings := map[string]any{
			"apply":  []string{filepath.Join(p.dir, "apply.sh"), "--site", "greens"},
			"read":   []string{filepath.Join(p.dir, "read.sh"), "--site", "greens"},
			"verify": []string{filepath.Join(p.dir, "verify.sh")},
			"env":    []string{"WP_CLI_TOKEN=${WP_CLI_TOKEN}"},
		}
		item := config.Integration{ID: "wp-cli", Key: "actionnetwork-main", Type: execint.Type, Settings: settings}
		h, logs := host(item, envOf(map[string]string{"WP_CLI_TOKEN": "wp-cli-token", "GITHUB_TOKEN": "ghp_not_for_children"}))
		p.logs = logs
		in, err := execint.New(h, item)
		if err != nil {
			ct.Fatalf("exec.New: %v", err)
		}
		return in, p
	}))
}

type execProbe struct {
	t    conformance.T
	dir  string
	logs *syncBuffer
}

func (p *execProbe) Writes() int {
	b, _ := os.ReadFile(filepath.Join(p.dir, "writes"))
	return bytes.Count(b, []byte("\n"))
}

func (p *execProbe) Holds(conformance.T) secret.Key {
	b, _ := os.ReadFile(filepath.Join(p.dir, "target"))
	return secret.New(strings.TrimSpace(string(b)))
}

func (p *execProbe) SetHolds(t conformance.T, k secret.Key) bool {
	target := filepath.Join(p.dir, "target")
	if k.IsZero() {
		os.Remove(target)
		return true
	}
	if err := os.WriteFile(target, []byte(k.Reveal()+"\n"), 0o600); err != nil {
		t.Fatalf("write target: %v", err)
	}
	return true
}

func (p *execProbe) FailNext(f conformance.Failure) bool {
	code := "77" // EX_NOPERM
	if f == conformance.Transient {
		code = "75" // EX_TEMPFAIL
	}
	return os.WriteFile(filepath.Join(p.dir, "fail"), []byte(code), 0o600) == nil
}

func (p *execProbe) HangNext() bool {
	return os.WriteFile(filepath.Join(p.dir, "hang"), nil, 0o600) == nil
}

func (p *execProbe) Logs() []byte {
	b, _ := os.ReadFile(filepath.Join(p.dir, "log"))
	childEnvClean(p.t, b)
	return append(b, p.logs.Bytes()...)
}
