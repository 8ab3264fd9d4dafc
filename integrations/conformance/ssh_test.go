package conformance_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/rekey-dev/rekey/config"
	"github.com/rekey-dev/rekey/integrations"
	"github.com/rekey-dev/rekey/integrations/conformance"
	execint "github.com/rekey-dev/rekey/integrations/exec"
	"github.com/rekey-dev/rekey/integrations/file"
	"github.com/rekey-dev/rekey/internal/sshpool"
	"github.com/rekey-dev/rekey/internal/sshtest"
	"github.com/rekey-dev/rekey/secret"
)

// procSnapshot, run by a remote command while it runs, copies the
// argv and environment of every process on the host (the test's sshd
// runs on this machine) into the probe's log, where the suite's leak
// search looks for the key: sshd's session processes, the login shell,
// the command itself.
const procSnapshot = `cat /proc/[0-9]*/cmdline /proc/[0-9]*/environ >> "$dir/log" 2>/dev/null
`

// sshHost is what a factory is given on a run with a pool that reaches
// srv, and no file of the user running the test.
func sshHost(t *testing.T, srv *sshtest.Server, in config.Integration, getenv func(string) string) (integrations.Host, *syncBuffer) {
	h, logs := host(in, getenv)
	p := sshpool.New(sshpool.Options{
		KnownHosts: srv.KnownHosts, IdentityFile: srv.Identity, ConnectTimeout: 5 * time.Second,
		Home: t.TempDir(), Getenv: getenv, Logger: h.Logger,
	})
	t.Cleanup(func() { p.Close() })
	h.SSH = p
	return h, logs
}

// TestExecOverSSH runs the suite against exec commands on a host reached
// over SSH (a real sshd on loopback): the key reaches the remote apply
// command on its stdin, and nowhere in any process's argv or environment
// on the host while the commands run.
func TestExecOverSSH(t *testing.T) {
	srv := sshtest.Start(t, sshtest.Options{})
	conformance.Run(t, conformance.TargetFunc(func(ct conformance.T, initial secret.Key) (integrations.Integration, conformance.Probe) {
		p := &execProbe{t: ct, dir: t.TempDir()}
		script(ct, p.dir, "apply.sh", execPrelude+procSnapshot+applyScript[len(execPrelude):])
		script(ct, p.dir, "read.sh", execPrelude+procSnapshot+readScript[len(execPrelude):])
		script(ct, p.dir, "verify.sh", verifyScript)
		p.SetHolds(ct, initial)
		settings := map[string]any{
			"host":   srv.Target(0),
			"apply":  []string{filepath.Join(p.dir, "apply.sh"), "--site", "greens's $(site)"},
			"read":   []string{filepath.Join(p.dir, "read.sh"), "--site", "greens"},
			"verify": []string{filepath.Join(p.dir, "verify.sh")},
		}
		item := config.Integration{ID: "wp-cli", Key: "actionnetwork-main", Type: execint.Type, Settings: settings}
		h, logs := sshHost(t, srv, item, envOf(map[string]string{"GITHUB_TOKEN": "ghp_not_for_children"}))
		p.logs = logs
		in, err := execint.New(h, item)
		if err != nil {
			ct.Fatalf("exec.New: %v", err)
		}
		return in, p
	}))
}

// TestFileOverSSH runs the suite against a .env file on a host reached
// over SSH, rewritten over SFTP, whose reload command runs there.
func TestFileOverSSH(t *testing.T) {
	srv := sshtest.Start(t, sshtest.Options{})
	conformance.Run(t, conformance.TargetFunc(func(ct conformance.T, initial secret.Key) (integrations.Integration, conformance.Probe) {
		p := &fileProbe{t: ct, dir: t.TempDir()}
		p.env = filepath.Join(p.dir, "site.env")
		script(ct, p.dir, "reload.sh", reloadScript[:len("#!/bin/sh\ndir=$(dirname \"$0\")\n")]+procSnapshot+reloadScript[len("#!/bin/sh\ndir=$(dirname \"$0\")\n"):])
		p.SetHolds(ct, initial)
		settings := map[string]any{
			"host": srv.Target(0),
			"path": p.env, "format": "dotenv", "field": "ACTION_NETWORK_API_KEY",
			"reload": []string{filepath.Join(p.dir, "reload.sh"), "site"},
		}
		item := config.Integration{ID: "web1-env", Key: "actionnetwork-main", Type: file.Type, Settings: settings}
		h, logs := sshHost(t, srv, item, envOf(map[string]string{"GITHUB_TOKEN": "ghp_not_for_children"}))
		p.logs = logs
		in, err := file.New(h, item)
		if err != nil {
			ct.Fatalf("file.New: %v", err)
		}
		return in, p
	}))
}
