package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/rekey-dev/rekey/internal/leakcheck"
	"github.com/rekey-dev/rekey/internal/sshtest"
)

// sshWorld is a script's hosts: real sshd servers on loopback (package
// sshtest), each a host of its own, sharing one known_hosts file and one
// client identity under $WORK/.ssh.
type sshWorld struct {
	mu      sync.Mutex
	tb      testing.TB
	servers map[string]*sshtest.Server
	stamps  map[string]time.Time
}

// sshCmds are testscript commands for the stories about other hosts.
var sshCmds = map[string]func(ts *testscript.TestScript, neg bool, args []string){
	// sshd start NAME: start (or start again) the host NAME; scripts see
	//   $SSH_NAME (user@127.0.0.1:port), $SSH_FP_NAME (its host key's
	//   SHA256 fingerprint, quoted for a regexp), $SSH_KNOWN_HOSTS (trusts every host started)
	//   and $SSH_IDENTITY (a key every host accepts).
	// sshd stop NAME: stop it and cut its connections: the host is down.
	// sshd newkey NAME: give it a new host key (known_hosts keeps the old).
	"sshd": func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) != 2 {
			ts.Fatalf("usage: sshd start|stop|newkey NAME")
		}
		w := getWorld(ts)
		sw := w.ssh
		sw.mu.Lock()
		defer sw.mu.Unlock()
		name := args[1]
		env := strings.ToUpper(name)
		dir := filepath.Join(ts.Getenv("WORK"), ".ssh")
		kh, id := filepath.Join(dir, "known_hosts"), filepath.Join(dir, "id_ed25519")
		srv := sw.servers[name]
		switch args[0] {
		case "start":
			if srv != nil {
				srv.Start()
				return
			}
			ts.Check(os.MkdirAll(dir, 0o700))
			if _, err := os.Stat(id); err != nil {
				sshtest.WriteKey(sw.tb, id, "")
			}
			pub, err := os.ReadFile(id + ".pub")
			ts.Check(err)
			srv = sshtest.Start(sw.tb, sshtest.Options{})
			srv.AuthorizeLine(pub)
			sw.servers[name] = srv
			f, err := os.OpenFile(kh, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
			ts.Check(err)
			_, err = f.WriteString(srv.KnownHostsLine(0))
			ts.Check(err)
			f.Close()
			ts.Setenv("SSH_"+env, srv.Target(0))
			ts.Setenv("SSH_FP_"+env, regexp.QuoteMeta(srv.Fingerprint()))
			ts.Setenv("SSH_KNOWN_HOSTS", kh)
			ts.Setenv("SSH_IDENTITY", id)
		case "stop":
			if srv == nil {
				ts.Fatalf("sshd %s was never started", name)
			}
			srv.Stop()
		case "newkey":
			if srv == nil {
				ts.Fatalf("sshd %s was never started", name)
			}
			srv.Stop()
			srv.NewHostKey()
			srv.Start()
			ts.Setenv("SSH_FP_"+env, regexp.QuoteMeta(srv.Fingerprint()))
		default:
			ts.Fatalf("sshd: unknown subcommand %s", args[0])
		}
	},
	// nokeys FILE...: no key the script minted is in FILE, in any
	//   encoding (for copies of every process's argv and environment, which
	//   hold rekey's own tokens in rekey's own environment, so they are
	//   kept out of dumps/, whose check covers tokens too).
	"nokeys": func(ts *testscript.TestScript, neg bool, args []string) {
		w := getWorld(ts)
		for _, f := range args {
			b, err := os.ReadFile(ts.MkAbs(f))
			ts.Check(err)
			if len(b) == 0 {
				ts.Fatalf("%s is empty", f)
			}
			if found := leakcheck.Find(b, w.keys()...); len(found) > 0 {
				ts.Fatalf("a key is in %s: %v", f, found)
			}
		}
	},
	// stamp FILE: remember FILE's modification time.
	// same-stamp FILE: FILE has the modification time stamp remembered
	// (nothing wrote it since).
	"stamp": func(ts *testscript.TestScript, neg bool, args []string) {
		w := getWorld(ts)
		fi, err := os.Stat(ts.MkAbs(args[0]))
		ts.Check(err)
		w.ssh.mu.Lock()
		w.ssh.stamps[ts.MkAbs(args[0])] = fi.ModTime()
		w.ssh.mu.Unlock()
	},
	"same-stamp": func(ts *testscript.TestScript, neg bool, args []string) {
		w := getWorld(ts)
		fi, err := os.Stat(ts.MkAbs(args[0]))
		ts.Check(err)
		w.ssh.mu.Lock()
		was, ok := w.ssh.stamps[ts.MkAbs(args[0])]
		w.ssh.mu.Unlock()
		if !ok {
			ts.Fatalf("%s was never stamped", args[0])
		}
		if fi.ModTime().Equal(was) == neg {
			ts.Fatalf("%s modified at %s, stamped at %s", args[0], fi.ModTime(), was)
		}
	},
}
