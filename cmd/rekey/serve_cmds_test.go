package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	vault "github.com/hashicorp/vault/api"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/rogpeppe/go-internal/testscript"
)

// serveCmds are testscript commands for the serve stories.
var serveCmds = map[string]func(ts *testscript.TestScript, neg bool, args []string){
	// vault-policy-token FILE [EXTRA...]: load FILE (a path from the module
	// root, such as configs/vault-policy.hcl), and any EXTRA files from the
	// script's work directory, as one policy, with the mount "secret"
	// renamed to the script's $VAULT_MOUNT, and set VAULT_TOKEN to a token
	// that holds that policy and nothing else (not even Vault's default).
	"vault-policy-token": func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) < 1 {
			ts.Fatalf("usage: vault-policy-token FILE [EXTRA...]")
		}
		w := getWorld(ts)
		hcl := strings.ReplaceAll(policyFiles(ts, args), `"secret/`, `"`+w.vault.Mount+`/`)
		if !strings.Contains(hcl, w.vault.Mount+"/") {
			ts.Fatalf("%s names no path under the mount secret/", args[0])
		}
		name := "rekey-" + w.vault.Mount
		ts.Check(w.vault.Client.Sys().PutPolicy(name, hcl))
		sec, err := w.vault.Client.Auth().Token().Create(&vault.TokenCreateRequest{
			Policies: []string{name}, NoDefaultPolicy: true, TTL: "1h",
		})
		ts.Check(err)
		ts.Setenv("VAULT_TOKEN", sec.Auth.ClientToken)
	},
	// vault-denied read|write|list PATH: the script's VAULT_TOKEN may not
	// do that to PATH (a KV path of the mount, such as other/app).
	"vault-denied": func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) != 2 {
			ts.Fatalf("usage: vault-denied read|write|list PATH")
		}
		w := getWorld(ts)
		c, err := w.vault.Client.Clone()
		ts.Check(err)
		c.SetToken(ts.Getenv("VAULT_TOKEN"))
		ctx := context.Background()
		kv := c.KVv2(w.vault.Mount)
		switch args[0] {
		case "read":
			_, err = kv.Get(ctx, args[1])
		case "write":
			_, err = kv.Put(ctx, args[1], map[string]any{"x": "y"})
		case "list":
			_, err = c.Logical().ListWithContext(ctx, w.vault.Mount+"/metadata/"+args[1])
		default:
			ts.Fatalf("vault-denied: unknown operation %s", args[0])
		}
		var re *vault.ResponseError
		denied := errors.As(err, &re) && re.StatusCode == http.StatusForbidden
		if denied == neg {
			ts.Fatalf("%s %s: err %v; want denied: %v", args[0], args[1], err, !neg)
		}
	},
	// free-port VAR: set VAR to a TCP port free on 127.0.0.1.
	"free-port": func(ts *testscript.TestScript, neg bool, args []string) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		ts.Check(err)
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		ts.Setenv(args[0], fmt.Sprint(port))
	},
	// healthz ADDR leader|follower [LIMIT]: wait (up to LIMIT, default
	// 30s) until ADDR's /healthz answers 200 and says the instance leads
	// (or does not).
	"healthz": func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) < 2 {
			ts.Fatalf("usage: healthz ADDR leader|follower [LIMIT]")
		}
		limit := 30 * time.Second
		if len(args) > 2 {
			d, err := time.ParseDuration(args[2])
			ts.Check(err)
			limit = d
		}
		want := args[1] == "leader"
		start := time.Now()
		var last string
		for time.Since(start) < limit {
			resp, err := http.Get("http://" + args[0] + "/healthz")
			if err == nil {
				var h struct {
					Status string `json:"status"`
					Leader bool   `json:"leader"`
				}
				err = json.NewDecoder(resp.Body).Decode(&h)
				resp.Body.Close()
				last = fmt.Sprintf("status %d %+v %v", resp.StatusCode, h, err)
				if err == nil && resp.StatusCode == 200 && h.Status == "ok" && h.Leader == want {
					ts.Logf("%s is %s after %v", args[0], args[1], time.Since(start).Round(time.Millisecond))
					return
				}
			} else {
				last = err.Error()
			}
			time.Sleep(20 * time.Millisecond)
		}
		ts.Fatalf("%s not %s within %v: %s", args[0], args[1], limit, last)
	},
	// metric ADDR REGEXP: ADDR's /metrics parses as Prometheus text and
	// has a line matching REGEXP.
	"metric": func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) != 2 {
			ts.Fatalf("usage: metric ADDR REGEXP")
		}
		resp, err := http.Get("http://" + args[0] + "/metrics")
		ts.Check(err)
		defer resp.Body.Close()
		var body strings.Builder
		p := expfmt.NewTextParser(model.UTF8Validation)
		if _, err := p.TextToMetricFamilies(io.TeeReader(resp.Body, &body)); err != nil {
			ts.Fatalf("/metrics of %s is not Prometheus text: %v", args[0], err)
		}
		re, err := regexp.Compile("(?m)" + args[1])
		ts.Check(err)
		if re.MatchString(body.String()) == neg {
			ts.Fatalf("/metrics of %s: match for %s: %v\n%s", args[0], args[1], !neg, body.String())
		}
	},
	// serve-lease held|released: the serve lease record in Vault is held
	// (or was released).
	"serve-lease": func(ts *testscript.TestScript, neg bool, args []string) {
		l := readRecord(ts, "serve/lease")
		held, _ := l["held"].(bool)
		if held != (args[0] == "held") {
			ts.Fatalf("serve lease: %v, want %s", l, args[0])
		}
	},
	// serve-audited: wait (up to 30s) until the instance holding the lease
	// has run an audit round (what was said names it).
	"serve-audited": func(ts *testscript.TestScript, neg bool, args []string) {
		start := time.Now()
		for time.Since(start) < 30*time.Second {
			said, lease := tryRecord(ts, "serve/said"), tryRecord(ts, "serve/lease")
			if said != nil && lease != nil && lease["held"] == true && said["by"] == lease["holder"] {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		ts.Fatalf("no audit round by the lease holder within 30s")
	},
	// slack-wait N REGEXP: wait (up to 30s) until N lines of the Slack
	// log match REGEXP (what a background serve posted so far).
	"slack-wait": func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) != 2 {
			ts.Fatalf("usage: slack-wait N REGEXP")
		}
		n, err := strconv.Atoi(args[0])
		ts.Check(err)
		re := regexp.MustCompile(args[1])
		log := getWorld(ts).slack.log
		for start := time.Now(); time.Since(start) < 30*time.Second; time.Sleep(50 * time.Millisecond) {
			b, _ := os.ReadFile(log)
			if len(re.FindAll(b, -1)) >= n {
				return
			}
		}
		ts.Fatalf("fewer than %d lines of the Slack log match %q after 30s", n, args[1])
	},
	// serve-signal TERM|KILL: send the signal to the process holding the
	// serve lease (its pid is in the lease record).
	"serve-signal": func(ts *testscript.TestScript, neg bool, args []string) {
		sig := map[string]syscall.Signal{"TERM": syscall.SIGTERM, "KILL": syscall.SIGKILL}[args[0]]
		if sig == 0 {
			ts.Fatalf("usage: serve-signal TERM|KILL")
		}
		l := readRecord(ts, "serve/lease")
		pid, _ := strconv.Atoi(fmt.Sprint(l["pid"]))
		if pid <= 0 || int(pid) == os.Getpid() {
			ts.Fatalf("serve lease names pid %d", pid)
		}
		ts.Check(syscall.Kill(int(pid), sig))
	},
}

// readRecord reads one of rekey's records (under state_path rekey) with
// the root token.
func readRecord(ts *testscript.TestScript, rel string) map[string]any {
	r := tryRecord(ts, rel)
	if r == nil {
		ts.Fatalf("no record rekey/%s", rel)
	}
	return r
}

func tryRecord(ts *testscript.TestScript, rel string) map[string]any {
	w := getWorld(ts)
	sec, err := w.vault.Client.KVv2(w.vault.Mount).Get(context.Background(), "rekey/"+rel)
	if err != nil || sec == nil {
		return nil
	}
	return sec.Data
}

// moduleRoot finds the directory holding go.mod above the working directory.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the working directory")
		}
		dir = parent
	}
}
