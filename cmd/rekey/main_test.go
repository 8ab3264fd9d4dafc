package main

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"
	"github.com/rogpeppe/go-internal/testscript"

	"github.com/rekey-dev/rekey/internal/ansim"
	"github.com/rekey-dev/rekey/internal/cli"
	"github.com/rekey-dev/rekey/internal/ghtest"
	"github.com/rekey-dev/rekey/internal/leakcheck"
	"github.com/rekey-dev/rekey/internal/slacktest"
	"github.com/rekey-dev/rekey/internal/sshtest"
	"github.com/rekey-dev/rekey/internal/vaulttest"
	"github.com/rekey-dev/rekey/internal/webtest"
	"github.com/rekey-dev/rekey/secret"
)

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"rekey": func() { os.Exit(rekeyMain()) },
	})
}

// rekeyMain runs the CLI, copying its stdout and stderr to the script's
// capture folder so the leak check sees every byte it ever printed.
func rekeyMain() int {
	out, errw := io.Writer(os.Stdout), io.Writer(os.Stderr)
	if dir := os.Getenv("REKEY_TEST_CAPTURE"); dir != "" {
		if len(os.Args) > 1 && os.Args[1] == "reveal" {
			dir += "-reveal" // it prints the key it opens: checked apart (handoffCmds)
		}
		stamp := strconv.FormatInt(time.Now().UnixNano(), 10)
		if f, err := os.Create(filepath.Join(dir, stamp+".out")); err == nil {
			defer f.Close()
			out = io.MultiWriter(os.Stdout, f)
		}
		if f, err := os.Create(filepath.Join(dir, stamp+".err")); err == nil {
			defer f.Close()
			errw = io.MultiWriter(os.Stderr, f)
		}
	}
	return cli.Main(os.Args[1:], cli.Streams{In: os.Stdin, Out: out, Err: errw})
}

func TestScripts(t *testing.T) {
	srv := vaulttest.Shared(t)
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata",
		RequireExplicitExec: true,
		Setup: func(e *testscript.Env) error {
			return setup(e, srv)
		},
		Cmds:      allCmds(),
		Condition: scriptCondition,
	})
}

// world is what one script runs against: a Vault mount, the Action
// Network simulator, a GitHub API server, a WordPress-like widget holding
// a key behind its settings API, and a Slack Web API server. Scripts see
//
//	$VAULT_ADDR $VAULT_TOKEN $VAULT_MOUNT  the mount (rekey's token)
//	$AN_URL                                Action Network's API root
//	$GH_URL $GITHUB_TOKEN                  GitHub's API root and a token it accepts
//	$WEB_URL $WEB_TOKEN                    the widget and its admin token
//	$SLACK_URL $SLACK_BOT_TOKEN            Slack's API root (api_url) and a bot token
//	$DOWN_URL                              a URL where nothing listens
//	$DUMPS                                 $WORK/dumps, leak-checked; Slack posts go to dumps/slack.log
//	$SSH_NAME $SSH_KNOWN_HOSTS ...         hosts over SSH, once a script says `sshd start NAME` (ssh_cmds_test.go)
type world struct {
	vault *vaulttest.Env
	sim   *ansim.Sim
	an    *httptest.Server
	gh    *ghtest.Server
	web   *webtest.Server
	slack *worldSlack
	ssh   *sshWorld
	work  string

	mu      sync.Mutex
	secrets []string // tokens and canaries a script added (token, hostile)
	// codes are the hand-off codes the owners' direct messages held
	// (dm-code): searched for everywhere but those messages.
	codes []string
	// revealed are the keys `rekey reveal` was seen to print (reveal-ok):
	// allowed in its own output only.
	revealed []string
}

// addSecret makes the leak check look for s too.
func (w *world) addSecret(s string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.secrets = append(w.secrets, s)
}

const worldKey = "rekey-world"

func setup(e *testscript.Env, srv *vaulttest.Server) error {
	env, cleanup, err := srv.NewEnv()
	if err != nil {
		return err
	}
	tb, ok := e.T().(testing.TB)
	if !ok {
		cleanup()
		return fmt.Errorf("setup: testscript's T is not a testing.TB")
	}
	sim := ansim.New()
	an := httptest.NewServer(sim)
	w := &world{vault: env, sim: sim, an: an, work: e.WorkDir, gh: ghtest.New(tb, ghtest.Options{}), web: webtest.New(tb),
		ssh: &sshWorld{tb: tb, servers: map[string]*sshtest.Server{}, stamps: map[string]time.Time{}}}
	e.Values[worldKey] = w
	for _, d := range []string{".capture", ".capture-reveal", "keys", "dumps", "dm", "codes"} {
		if err := os.MkdirAll(filepath.Join(e.WorkDir, d), 0o700); err != nil {
			return err
		}
	}
	w.slack = newWorldSlack(filepath.Join(e.WorkDir, "dumps", "slack.log"))
	w.slack.dmDir = filepath.Join(e.WorkDir, "dm")
	down, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	downURL := "http://" + down.Addr().String()
	down.Close()
	e.Setenv("VAULT_ADDR", env.Addr)
	e.Setenv("VAULT_TOKEN", env.Token)
	e.Setenv("VAULT_MOUNT", env.Mount)
	e.Setenv("AN_URL", an.URL+"/api/v2/")
	e.Setenv("REKEY_TEST_CAPTURE", filepath.Join(e.WorkDir, ".capture"))
	e.Setenv("DUMPS", filepath.Join(e.WorkDir, "dumps"))
	e.Setenv("GH_URL", w.gh.URL)
	e.Setenv("GITHUB_TOKEN", w.gh.Token)
	e.Setenv("WEB_URL", w.web.URL)
	e.Setenv("WEB_TOKEN", w.web.Token)
	e.Setenv("SLACK_URL", w.slack.URL+"/api/")
	e.Setenv("SLACK_BOT_TOKEN", slackToken)
	e.Setenv("DOWN_URL", downURL)
	e.Defer(func() {
		w.checkNoLeaks(e.T())
		an.Close()
		w.slack.Close()
		cleanup()
	})
	return nil
}

// checkNoLeaks searches everything rekey printed, every dump a test
// integration wrote (its argv and environment), and rekey's records and
// key metadata in Vault for every key the script minted, raw, base64 and
// hex; and all but the requests the GitHub and widget servers received
// (which carry them) for every token of the world (Vault's, Slack's,
// GitHub's, the widget's) and every secret a script added.
func (w *world) checkNoLeaks(t testscript.T) {
	keys := w.keys()
	w.mu.Lock()
	tokens := append([]string{w.vault.Token, w.gh.Token, w.web.Token, slackToken}, w.secrets...)
	w.mu.Unlock()
	var blobs []struct {
		what string
		data []byte
	}
	for _, dir := range []string{".capture", "dumps"} {
		files, _ := os.ReadDir(filepath.Join(w.work, dir))
		for _, f := range files {
			b, _ := os.ReadFile(filepath.Join(w.work, dir, f.Name()))
			blobs = append(blobs, struct {
				what string
				data []byte
			}{dir + "/" + f.Name(), b})
		}
	}
	blobs = append(blobs, struct {
		what string
		data []byte
	}{"vault records", w.vault.DumpPrefix("rekey/")})
	// What the GitHub and widget servers received, outside the slots
	// meant for the key (a sealed box; the settings field).
	blobs = append(blobs, struct {
		what string
		data []byte
	}{"requests to GitHub", w.gh.Log()}, struct {
		what string
		data []byte
	}{"requests to the widget", w.web.Log()})
	meta := w.vault.DumpPrefix("")
	// The key path's data legitimately holds keys; its metadata must not.
	var metaOnly bytes.Buffer
	for _, line := range strings.Split(string(meta), "\n") {
		if strings.Contains(line, " metadata ") {
			metaOnly.WriteString(line + "\n")
		}
	}
	blobs = append(blobs, struct {
		what string
		data []byte
	}{"vault metadata", metaOnly.Bytes()})
	blobs = append(blobs, w.handoffBlobs()...) // handoff_cmds_test.go
	w.mu.Lock()
	codes := append([]string(nil), w.codes...)
	w.mu.Unlock()
	for _, b := range blobs {
		if found := leakcheck.Find(b.data, codes...); len(found) > 0 && !strings.HasPrefix(b.what, "dm/") {
			t.Fatal(fmt.Sprintf("hand-off code leaked into %s: %v", b.what, found))
		}
		if strings.HasPrefix(b.what, "reveal output") {
			if found := leakcheck.Find(b.data, w.unrevealable(keys)...); len(found) > 0 {
				t.Fatal(fmt.Sprintf("key leaked into %s: %v (only a revealed key may be there)", b.what, found))
			}
			if found := leakcheck.Find(b.data, tokens...); len(found) > 0 {
				t.Fatal(fmt.Sprintf("token leaked into %s: %v", b.what, found))
			}
			continue
		}
		if found := leakcheck.Find(b.data, keys...); len(found) > 0 {
			t.Fatal(fmt.Sprintf("key leaked into %s: %v", b.what, found))
		}
		if strings.HasPrefix(b.what, "requests to ") {
			continue
		}
		if found := leakcheck.Find(b.data, tokens...); len(found) > 0 {
			t.Fatal(fmt.Sprintf("token or peer bytes leaked into %s: %v (tokens: vault, github, widget, slack, then the script's)", b.what, found))
		}
	}
}

func (w *world) keys() []string {
	files, _ := os.ReadDir(filepath.Join(w.work, "keys"))
	var keys []string
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(w.work, "keys", f.Name()))
		if err == nil && len(bytes.TrimSpace(b)) > 0 {
			keys = append(keys, string(bytes.TrimSpace(b)))
		}
	}
	return keys
}

// allCmds merges the script commands of every story file.
func allCmds() map[string]func(ts *testscript.TestScript, neg bool, args []string) {
	all := map[string]func(ts *testscript.TestScript, neg bool, args []string){}
	for _, m := range []map[string]func(ts *testscript.TestScript, neg bool, args []string){scriptCmds, leakCmds, serveCmds, faultCmds, hostileCmds, vaultCmds, extraCmds, sshCmds, handoffCmds} {
		for name, f := range m {
			if _, dup := all[name]; dup {
				panic("duplicate script command " + name)
			}
			all[name] = f
		}
	}
	return all
}

func getWorld(ts *testscript.TestScript) *world { return ts.Value(worldKey).(*world) }

var scriptCmds = map[string]func(ts *testscript.TestScript, neg bool, args []string){
	// exits N CMD ARGS...: run CMD and require exit code N; its stdout and
	// stderr are then checked with the stdout and stderr commands.
	"exits": func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) < 2 {
			ts.Fatalf("usage: exits CODE CMD ARGS...")
		}
		want, err := strconv.Atoi(args[0])
		ts.Check(err)
		err = ts.Exec(args[1], args[2:]...)
		got := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			got = ee.ExitCode()
		} else if err != nil {
			ts.Fatalf("%s: %v", args[1], err)
		}
		if got != want {
			ts.Fatalf("%s exited %d, want %d", args[1], got, want)
		}
	},
	// an generate NAME: the owner clicks REVOKE & GENERATE NEW KEY: every
	//   valid key is revoked and a new one minted into keys/NAME.
	// an mint NAME: a valid key without revoking (the list's first key).
	// an revoke NAME | an valid NAME | an invalid NAME | an throttle N
	"an": func(ts *testscript.TestScript, neg bool, args []string) {
		w := getWorld(ts)
		if len(args) < 2 {
			ts.Fatalf("usage: an generate|mint|revoke|valid|throttle ARG")
		}
		switch args[0] {
		case "generate":
			for _, k := range w.keys() {
				w.sim.Revoke(k)
			}
			writeKey(ts, args[1], w.sim.Generate())
		case "mint":
			writeKey(ts, args[1], w.sim.Generate())
		case "revoke":
			w.sim.Revoke(readKey(ts, args[1]))
		case "valid":
			if got := w.sim.Valid(readKey(ts, args[1])); got == neg {
				ts.Fatalf("key %s valid at Action Network: %v", args[1], got)
			}
		case "throttle":
			n, _ := strconv.Atoi(args[1])
			w.sim.Throttle(n)
		default:
			ts.Fatalf("an: unknown subcommand %s", args[0])
		}
	},
	// key NAME: mint a random key (not known to Action Network) into keys/NAME.
	"key": func(ts *testscript.TestScript, neg bool, args []string) {
		b := make([]byte, 16)
		rand.Read(b)
		writeKey(ts, args[0], hex.EncodeToString(b))
	},
	// vault-seed NAME PATH: store keys/NAME as a new version of PATH (with
	// check-and-set, as a mount with cas_required wants).
	"vault-seed": func(ts *testscript.TestScript, neg bool, args []string) {
		w := getWorld(ts)
		kv := w.vault.Client.KVv2(w.vault.Mount)
		cas := 0
		if md, err := kv.GetMetadata(context.Background(), args[1]); err == nil {
			cas = md.CurrentVersion
		}
		_, err := kv.Put(context.Background(), args[1], map[string]any{"api_key": readKey(ts, args[0])}, vault.WithCheckAndSet(cas))
		ts.Check(err)
	},
	// vault-holds NAME PATH [VERSION]: the current (or given) version of PATH is keys/NAME.
	"vault-holds": func(ts *testscript.TestScript, neg bool, args []string) {
		w := getWorld(ts)
		kv := w.vault.Client.KVv2(w.vault.Mount)
		sec, err := kv.Get(context.Background(), args[1])
		if len(args) > 2 {
			v, _ := strconv.Atoi(args[2])
			sec, err = kv.GetVersion(context.Background(), args[1], v)
		}
		ts.Check(err)
		got, _ := sec.Data["api_key"].(string)
		if (got == readKey(ts, args[0])) == neg {
			ts.Fatalf("vault %s holds %s: want %s (neg=%v)", args[1], secret.New(got).Fingerprint(), args[0], neg)
		}
	},
	// vault-meta PATH FIELD VALUE: custom metadata FIELD of PATH contains VALUE.
	"vault-meta": func(ts *testscript.TestScript, neg bool, args []string) {
		w := getWorld(ts)
		md, err := w.vault.Client.KVv2(w.vault.Mount).GetMetadata(context.Background(), args[0])
		ts.Check(err)
		got := fmt.Sprint(md.CustomMetadata[args[1]])
		if strings.Contains(got, args[2]) == neg {
			ts.Fatalf("metadata %s of %s = %q, want %q", args[1], args[0], got, args[2])
		}
	},
	// vault-versions PATH N: PATH has N versions.
	"vault-versions": func(ts *testscript.TestScript, neg bool, args []string) {
		w := getWorld(ts)
		md, err := w.vault.Client.KVv2(w.vault.Mount).GetMetadata(context.Background(), args[0])
		ts.Check(err)
		if strconv.Itoa(md.CurrentVersion) != args[1] {
			ts.Fatalf("%s has %d versions, want %s", args[0], md.CurrentVersion, args[1])
		}
	},
	// wait-version PATH N: wait (up to 60s) until PATH reaches version N.
	"wait-version": func(ts *testscript.TestScript, neg bool, args []string) {
		w := getWorld(ts)
		want, _ := strconv.Atoi(args[1])
		deadline := time.Now().Add(60 * time.Second)
		for time.Now().Before(deadline) {
			md, err := w.vault.Client.KVv2(w.vault.Mount).GetMetadata(context.Background(), args[0])
			if err == nil && md.CurrentVersion >= want {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		ts.Fatalf("%s never reached version %d", args[0], want)
	},
	// wait-file PATH: wait (up to 60s) until PATH exists.
	"wait-file": func(ts *testscript.TestScript, neg bool, args []string) {
		deadline := time.Now().Add(60 * time.Second)
		for time.Now().Before(deadline) {
			if _, err := os.Stat(ts.MkAbs(args[0])); err == nil {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		ts.Fatalf("%s never appeared", args[0])
	},
	// subst TEMPLATE OUT NAME: copy TEMPLATE to OUT with @KEY@ replaced by
	// keys/NAME (files that hold keys without the key being in the script).
	"subst": func(ts *testscript.TestScript, neg bool, args []string) {
		b, err := os.ReadFile(ts.MkAbs(args[0]))
		ts.Check(err)
		s := strings.ReplaceAll(string(b), "@KEY@", readKey(ts, args[2]))
		ts.Check(os.WriteFile(ts.MkAbs(args[1]), []byte(s), 0o600))
	},
	// same-but-key TEMPLATE FILE NAME: FILE is TEMPLATE with @KEY@ replaced
	// by keys/NAME, byte for byte.
	"same-but-key": func(ts *testscript.TestScript, neg bool, args []string) {
		a, err := os.ReadFile(ts.MkAbs(args[0]))
		ts.Check(err)
		b, err := os.ReadFile(ts.MkAbs(args[1]))
		ts.Check(err)
		s := strings.ReplaceAll(string(a), "@KEY@", readKey(ts, args[2]))
		if (s == string(b)) == neg {
			ts.Fatalf("%s differs from %s with the key substituted", args[1], args[0])
		}
	},
	// mode FILE PERM: the file's permission bits are PERM (octal).
	"mode": func(ts *testscript.TestScript, neg bool, args []string) {
		fi, err := os.Stat(ts.MkAbs(args[0]))
		ts.Check(err)
		want, _ := strconv.ParseUint(args[1], 8, 32)
		if (fi.Mode().Perm() == os.FileMode(want)) == neg {
			ts.Fatalf("%s has mode %o, want %s", args[0], fi.Mode().Perm(), args[1])
		}
	},
	// envsubst IN OUT: copy IN to OUT expanding $VAR and ${VAR} from the script's environment.
	"envsubst": func(ts *testscript.TestScript, neg bool, args []string) {
		b, err := os.ReadFile(ts.MkAbs(args[0]))
		ts.Check(err)
		ts.Check(os.WriteFile(ts.MkAbs(args[1]), []byte(os.Expand(string(b), ts.Getenv)), 0o600))
	},
	// vault-token read-only|records-only: set VAULT_TOKEN to a token that
	// may read the mount but write nothing, or write only rekey's records.
	"vault-token": func(ts *testscript.TestScript, neg bool, args []string) {
		w := getWorld(ts)
		m := w.vault.Mount
		hcl := fmt.Sprintf("path %q { capabilities = [\"read\", \"list\"] }\n", m+"/*")
		if args[0] == "records-only" {
			hcl += fmt.Sprintf("path %q { capabilities = [\"create\", \"read\", \"update\", \"list\"] }\n", m+"/data/rekey/*")
		}
		name := args[0] + "-" + m
		ts.Check(w.vault.Client.Sys().PutPolicy(name, hcl))
		sec, err := w.vault.Client.Auth().Token().Create(&vault.TokenCreateRequest{Policies: []string{name}, TTL: "1h"})
		ts.Check(err)
		ts.Setenv("VAULT_TOKEN", sec.Auth.ClientToken)
	},
	// holds FILE NAME: the file contains keys/NAME.
	"holds": func(ts *testscript.TestScript, neg bool, args []string) {
		b, err := os.ReadFile(ts.MkAbs(args[0]))
		ts.Check(err)
		if bytes.Contains(b, []byte(readKey(ts, args[1]))) == neg {
			ts.Fatalf("%s holds %s: %v", args[0], args[1], !neg)
		}
	},
}

func writeKey(ts *testscript.TestScript, name, value string) {
	ts.Check(os.WriteFile(filepath.Join(ts.Getenv("WORK"), "keys", name), []byte(value+"\n"), 0o600))
}

func readKey(ts *testscript.TestScript, name string) string {
	b, err := os.ReadFile(filepath.Join(ts.Getenv("WORK"), "keys", name))
	ts.Check(err)
	return string(bytes.TrimSpace(b))
}

// slackToken is the bot token the Slack server accepts.
const slackToken = "xoxb-rekey-test-0000000000-abcdefghijkl"

// worldSlack speaks the part of Slack's Web API rekey uses: POST
// /api/chat.postMessage and /api/chat.update, form-encoded, with a bearer
// token, answering {"ok": true, ...} or {"ok": false, "error": ...} as
// Slack does. It appends every message (method, channel, thread, text and
// blocks) to a log file under dumps/, where the leak check reads it and
// scripts grep it. It refuses what Slack refuses (internal/slacktest):
// too many blocks, a header or section too long, too much text in all,
// answering {"ok":false,"error":"msg_blocks_too_long"} and the like, and
// logs what it refused to dumps/slack-refused.log.
type worldSlack struct {
	*httptest.Server
	log   string
	dmDir string // direct messages go to <dmDir>/<user>.log, not the shared log

	scopes string            // auth.test's X-OAuth-Scopes ("" the default, "-" none)
	dms    map[string]string // direct-message channels opened, to their user

	mu         sync.Mutex
	n          int
	onPost     []func(text string) bool // run on each post until one returns true
	fail       []int                    // statuses for the next calls (0: answer normally)
	retryAfter string                   // Retry-After of a 429 ("1" when empty)
	calls      map[string]int           // calls answered ok, by method
	texts      []string                 // text of every message answered ok
	refused    map[string]int           // messages refused for Slack's limits, by error code
}

func newWorldSlack(logPath string) *worldSlack {
	s := &worldSlack{log: logPath, calls: map[string]int{}, refused: map[string]int{}}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// then runs f on every message posted from now on (before it is
// answered) until f returns true.
func (s *worldSlack) then(f func(text string) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onPost = append(s.onPost, f)
}

func (s *worldSlack) serve(w http.ResponseWriter, r *http.Request) {
	answer := func(v map[string]any) {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		json.NewEncoder(w).Encode(v)
	}
	method, ok := strings.CutPrefix(r.URL.Path, "/api/")
	if r.Method != http.MethodPost || !ok {
		http.NotFound(w, r)
		return
	}
	s.mu.Lock()
	code := 0
	if len(s.fail) > 0 {
		code, s.fail = s.fail[0], s.fail[1:]
	}
	retryAfter := cmp.Or(s.retryAfter, "1")
	s.mu.Unlock()
	switch code {
	case 0:
	case http.StatusTooManyRequests:
		w.Header().Set("Retry-After", retryAfter)
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.WriteHeader(code)
		fmt.Fprint(w, `{"ok":false,"error":"ratelimited"}`)
		return
	default:
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(code)
		fmt.Fprint(w, "<html><body>Slack is having trouble</body></html>")
		return
	}
	if !strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		answer(map[string]any{"ok": false, "error": "invalid_form_data"})
		return
	}
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	form, _ := url.ParseQuery(string(body))
	tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	if tok == "" {
		tok = form.Get("token")
	}
	switch {
	case tok == "":
		answer(map[string]any{"ok": false, "error": "not_authed"})
		return
	case tok != slackToken:
		answer(map[string]any{"ok": false, "error": "invalid_auth"})
		return
	case method == "auth.test" || method == "conversations.open":
		s.directMessages(w, method, form, answer) // handoff_cmds_test.go
		return
	case form.Get("channel") == "":
		answer(map[string]any{"ok": false, "error": "channel_not_found"})
		return
	}
	if method == "chat.postMessage" || method == "chat.update" {
		if code := slacktest.Check(form.Get("text"), form.Get("blocks")); code != "" {
			s.mu.Lock()
			s.refused[code]++
			f, err := os.OpenFile(filepath.Join(filepath.Dir(s.log), "slack-refused.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
			if err == nil {
				fmt.Fprintf(f, "%s refused=%s characters of block text=%d\n  text: %s\n  blocks: %s\n",
					method, code, slacktest.BlockText(form.Get("blocks")), form.Get("text"), form.Get("blocks"))
				f.Close()
			}
			s.mu.Unlock()
			answer(map[string]any{"ok": false, "error": code})
			return
		}
	}
	s.mu.Lock()
	s.n++
	ts := fmt.Sprintf("1700000000.%06d", s.n)
	logPath, isDM := s.logFor(form.Get("channel"))
	if !isDM && strings.HasPrefix(form.Get("channel"), "D") {
		s.mu.Unlock()
		answer(map[string]any{"ok": false, "error": "channel_not_found"})
		return
	}
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err == nil {
		fmt.Fprintf(f, "%s channel=%s thread_ts=%s ts=%s broadcast=%s\n  text: %s\n  blocks: %s\n",
			method, form.Get("channel"), form.Get("thread_ts"), form.Get("ts"), form.Get("reply_broadcast"),
			strings.ReplaceAll(form.Get("text"), "\n", "\n        "), form.Get("blocks"))
		f.Close()
	}
	hooks := s.onPost
	s.calls[method]++
	s.texts = append(s.texts, form.Get("text"))
	s.mu.Unlock()
	switch method {
	case "chat.postMessage":
		if form.Get("text") == "" && form.Get("blocks") == "" {
			answer(map[string]any{"ok": false, "error": "no_text"})
			return
		}
		for i, h := range hooks {
			if h(form.Get("text")) {
				s.mu.Lock()
				s.onPost = append(s.onPost[:i:i], s.onPost[i+1:]...)
				s.mu.Unlock()
				break
			}
		}
		answer(map[string]any{"ok": true, "channel": form.Get("channel"), "ts": ts,
			"message": map[string]any{"type": "message", "text": form.Get("text"), "ts": ts}})
	case "chat.update":
		if form.Get("ts") == "" {
			answer(map[string]any{"ok": false, "error": "message_not_found"})
			return
		}
		answer(map[string]any{"ok": true, "channel": form.Get("channel"), "ts": form.Get("ts"), "text": form.Get("text")})
	default:
		answer(map[string]any{"ok": false, "error": "unknown_method"})
	}
}
