package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/rekey-dev/rekey/internal/ghtest"
	"github.com/rekey-dev/rekey/secret"
)

// leakCmds are testscript commands for the leak, audit and scan stories.
var leakCmds = map[string]func(ts *testscript.TestScript, neg bool, args []string){
	// on-alert generate NAME: when rekey posts a leak alert to Slack, the
	//   owner reads it and clicks REVOKE & GENERATE NEW KEY: every valid
	//   key is revoked and a new one minted into keys/NAME, before Slack
	//   answers (so before rekey asks for the new key).
	// on-alert mint NAME: the owner reads it and pastes a valid key
	//   without revoking anything (another list's key, say).
	// (What was posted is in dumps/slack.log: grep it.)
	"on-alert": func(ts *testscript.TestScript, neg bool, args []string) {
		w := getWorld(ts)
		if len(args) != 2 || (args[0] != "generate" && args[0] != "mint") {
			ts.Fatalf("usage: on-alert generate|mint NAME")
		}
		work, how, name := ts.Getenv("WORK"), args[0], args[1]
		w.slack.then(func(text string) bool {
			if !strings.Contains(text, "leaked") {
				return false
			}
			if how == "generate" {
				for _, k := range w.keys() {
					w.sim.Revoke(k)
				}
			}
			os.WriteFile(work+"/keys/"+name, []byte(w.sim.Generate()+"\n"), 0o600)
			return true
		})
	},
	// github repo OWNER/NAME: the repository exists on the world's GitHub ($GH_URL).
	// github set OWNER/NAME SECRET NAME: the Actions secret holds keys/NAME,
	//   written an hour ago by someone else.
	// github holds OWNER/NAME SECRET NAME: the secret holds keys/NAME.
	// github ratelimit N SECONDS: the next N requests are answered 403 with
	//   the primary rate limit used up until SECONDS from now.
	"github": func(ts *testscript.TestScript, neg bool, args []string) {
		w := getWorld(ts)
		switch {
		case len(args) == 2 && args[0] == "repo":
			w.gh.AddRepo(args[1])
		case len(args) == 4 && args[0] == "set":
			w.gh.SetSecret(ghtest.Repo(args[1]), args[2], ghtest.Secret{Value: secret.New(readKey(ts, args[3])), UpdatedAt: time.Now().Add(-time.Hour)})
		case len(args) == 4 && args[0] == "holds":
			sec, ok := w.gh.Secret(ghtest.Repo(args[1]), args[2])
			if (ok && sec.Value.Equal(secret.New(readKey(ts, args[3])))) == neg {
				ts.Fatalf("GitHub secret %s of %s holds %s: %v (it holds %s)", args[2], args[1], args[3], !neg, sec.Value.Fingerprint())
			}
		case len(args) == 3 && args[0] == "ratelimit":
			n, err := strconv.Atoi(args[1])
			ts.Check(err)
			secs, err := strconv.Atoi(args[2])
			ts.Check(err)
			w.gh.RateLimit(n, http.StatusForbidden, time.Now().Add(time.Duration(secs)*time.Second))
		default:
			ts.Fatalf("usage: github repo OWNER/NAME | github set|holds OWNER/NAME SECRET NAME | github ratelimit N SECONDS")
		}
	},
	// web set NAME: an administrator put keys/NAME in the widget's settings.
	// web holds NAME: the widget holds keys/NAME.
	// web fail N STATUS: the widget answers its next N requests with STATUS
	//   and an error body that echoes the key it holds.
	"web": func(ts *testscript.TestScript, neg bool, args []string) {
		w := getWorld(ts)
		switch {
		case len(args) == 2 && args[0] == "set":
			w.web.SetHolds(secret.New(readKey(ts, args[1])))
		case len(args) == 2 && args[0] == "holds":
			if w.web.Holds().Equal(secret.New(readKey(ts, args[1]))) == neg {
				ts.Fatalf("the widget holds %s: %v (it holds %s)", args[1], !neg, w.web.Holds().Fingerprint())
			}
		case len(args) == 3 && args[0] == "fail":
			n, err := strconv.Atoi(args[1])
			ts.Check(err)
			status, err := strconv.Atoi(args[2])
			ts.Check(err)
			if http.StatusText(status) == "" {
				ts.Fatalf("web fail: %d is not an HTTP status", status)
			}
			for range n {
				w.web.FailNext(status)
			}
		default:
			ts.Fatalf("usage: web set|holds NAME | web fail N STATUS")
		}
	},
	// timeline KEY WHAT...: the incident timeline of KEY's latest rotation,
	// as recorded in Vault, has a mark containing each WHAT, in this order.
	"timeline": func(ts *testscript.TestScript, neg bool, args []string) {
		w := getWorld(ts)
		if len(args) < 2 {
			ts.Fatalf("usage: timeline KEY WHAT...")
		}
		kv := w.vault.Client.KVv2(w.vault.Mount)
		st, err := kv.Get(context.Background(), "rekey/keys/"+args[0]+"/state")
		ts.Check(err)
		latest, _ := st.Data["latest_rotation"].(string)
		rec, err := kv.Get(context.Background(), "rekey/keys/"+args[0]+"/rotations/"+latest)
		ts.Check(err)
		marks, _ := rec.Data["timeline"].([]any)
		var whats []string
		for _, m := range marks {
			mm, _ := m.(map[string]any)
			what, _ := mm["what"].(string)
			whats = append(whats, what)
		}
		i := 0
		for _, want := range args[1:] {
			for i < len(whats) && !strings.Contains(whats[i], want) {
				i++
			}
			if i == len(whats) {
				ts.Fatalf("timeline of rotation %s has no %q in order; it is:\n  %s", latest, want, strings.Join(whats, "\n  "))
			}
			i++
		}
	},
	// paste-entries FROM CONFIG: append to CONFIG, whose last section is
	// integrations:, the entries `rekey scan --suggest` printed in FROM.
	"paste-entries": func(ts *testscript.TestScript, neg bool, args []string) {
		b, err := os.ReadFile(ts.MkAbs(args[0]))
		ts.Check(err)
		var entries []string
		for l := range strings.SplitSeq(string(b), "\n") {
			if strings.HasPrefix(l, "  - {id: ") {
				entries = append(entries, l+"\n")
			}
		}
		if len(entries) == 0 {
			ts.Fatalf("no entries in %s", args[0])
		}
		f, err := os.OpenFile(ts.MkAbs(args[1]), os.O_APPEND|os.O_WRONLY, 0)
		ts.Check(err)
		defer f.Close()
		_, err = f.WriteString(strings.Join(entries, ""))
		ts.Check(err)
	},
	// subst64 TEMPLATE OUT NAME: like subst, with @KEY@ replaced by the
	// standard base64 of keys/NAME (a key inside a Kubernetes Secret).
	"subst64": func(ts *testscript.TestScript, neg bool, args []string) {
		b, err := os.ReadFile(ts.MkAbs(args[0]))
		ts.Check(err)
		enc := base64.StdEncoding.EncodeToString([]byte(readKey(ts, args[2])))
		ts.Check(os.WriteFile(ts.MkAbs(args[1]), bytes.ReplaceAll(b, []byte("@KEY@"), []byte(enc)), 0o600))
	},
}
