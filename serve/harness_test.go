package serve

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/rekey-dev/rekey/config"
	"github.com/rekey-dev/rekey/integrations"
	"github.com/rekey-dev/rekey/integrations/file"
	"github.com/rekey-dev/rekey/internal/leakcheck"
	"github.com/rekey-dev/rekey/internal/slacktest"
	"github.com/rekey-dev/rekey/internal/vaulttest"
	"github.com/rekey-dev/rekey/notifiers/slack"
	"github.com/rekey-dev/rekey/rotation"
	"github.com/rekey-dev/rekey/secret"
	"github.com/rekey-dev/rekey/vaultstore"
)

const (
	slackToken   = "xoxb-serve-test"
	slackChannel = "C0SERVE"
	day          = 24 * time.Hour
)

// clock is a test clock that moves only when told to, plus a millisecond
// on every reading so that durations measured with it are not zero.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock(t time.Time) *clock { return &clock{t: t} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Millisecond)
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// slackServer speaks the part of Slack's Web API the bot notifier uses:
// POST /api/chat.postMessage, form-encoded, with a bearer token, answering
// {"ok":true,"channel":…,"ts":…}, or a scripted error. It refuses what
// Slack refuses for its limits (internal/slacktest).
type slackServer struct {
	srv *httptest.Server

	mu    sync.Mutex
	posts []url.Values
	fail  string // answer {"ok":false,"error":fail} while set
	ts    int
}

func newSlack(t *testing.T) *slackServer {
	s := &slackServer{}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *slackServer) serve(w http.ResponseWriter, r *http.Request) {
	reply := func(v map[string]any) {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		json.NewEncoder(w).Encode(v)
	}
	if r.Method != http.MethodPost {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if r.URL.Path != "/api/chat.postMessage" {
		reply(map[string]any{"ok": false, "error": "unknown_method"})
		return
	}
	if !strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		reply(map[string]any{"ok": false, "error": "invalid_form_data"})
		return
	}
	raw, _ := io.ReadAll(r.Body)
	form, _ := url.ParseQuery(string(raw))
	switch {
	case r.Header.Get("Authorization") != "Bearer "+slackToken:
		reply(map[string]any{"ok": false, "error": "invalid_auth"})
		return
	case form.Get("channel") != slackChannel:
		reply(map[string]any{"ok": false, "error": "channel_not_found"})
		return
	case form.Get("text") == "" && form.Get("blocks") == "":
		reply(map[string]any{"ok": false, "error": "no_text"})
		return
	}
	if code := slacktest.Check(form.Get("text"), form.Get("blocks")); code != "" {
		reply(map[string]any{"ok": false, "error": code})
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != "" {
		reply(map[string]any{"ok": false, "error": s.fail})
		return
	}
	s.posts = append(s.posts, form)
	s.ts++
	ts := fmt.Sprintf("1700000000.%06d", s.ts)
	reply(map[string]any{"ok": true, "channel": slackChannel, "ts": ts,
		"message": map[string]any{"type": "message", "text": form.Get("text"), "ts": ts}})
}

func (s *slackServer) setFail(e string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail = e
}

// texts returns the fallback text of every message posted.
func (s *slackServer) texts() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, p := range s.posts {
		out = append(out, p.Get("text"))
	}
	return out
}

// bodies returns every message posted, whole, for the leak check.
func (s *slackServer) bodies() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b bytes.Buffer
	for _, p := range s.posts {
		b.WriteString(p.Encode() + "\n")
	}
	return b.Bytes()
}

// count returns how many messages contained substr.
func (s *slackServer) count(substr string) int {
	n := 0
	for _, t := range s.texts() {
		if strings.Contains(t, substr) {
			n++
		}
	}
	return n
}

func (s *slackServer) notifier(t *testing.T) *slack.Notifier {
	n, err := slack.New(slack.Options{Token: slackToken, Channel: slackChannel, APIURL: s.srv.URL + "/api/"})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// syncBuffer is a log destination safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.b.Bytes())
}

// world is one key in a real Vault, held by one .env file, watched by
// daemon instances that share a Slack channel.
type world struct {
	t     *testing.T
	env   *vaulttest.Env
	store *vaultstore.Store
	clock *clock
	now   func() time.Time
	slack *slackServer
	logs  *syncBuffer
	dir   string
	job   rotation.Job
	keys  []string // every key value minted, for the leak check
	serve config.Serve
}

func newWorld(t *testing.T, rotateEvery time.Duration) *world {
	t.Helper()
	env := vaulttest.New(t)
	w := &world{
		t:     t,
		env:   env,
		store: vaultstore.New(env.Client, env.Mount, "rekey"),
		clock: newClock(time.Now().UTC()),
		slack: newSlack(t),
		logs:  &syncBuffer{},
		dir:   t.TempDir(),
		serve: config.Serve{
			AuditInterval: config.Duration(time.Hour),
			RemindBefore:  []config.Duration{config.Duration(14 * day), config.Duration(7 * day), config.Duration(day)},
			LeaseTTL:      config.Duration(time.Minute),
		},
	}
	cfg := &config.Config{File: "serve-test.yaml"}
	in := config.Integration{ID: "site-env", Key: "an-main", Type: file.Type, Owner: "<@USITE>", Settings: map[string]any{
		"path": filepath.Join(w.dir, ".env"), "format": "dotenv", "field": "AN_KEY",
	}}
	cfg.Integrations = []config.Integration{in}
	integ, err := file.New(integrations.Host{Config: cfg, Logger: slog.New(slog.DiscardHandler), Getenv: os.Getenv}, in)
	if err != nil {
		t.Fatal(err)
	}
	w.job = rotation.Job{
		Key: config.Key{ID: "an-main", Provider: "none", VaultPath: "an/main", RotateEvery: config.Duration(rotateEvery),
			Owner: "<@UOWNER>", Instructions: "Action Network → Details → API & Sync → REVOKE & GENERATE NEW KEY"},
		Targets: []rotation.Target{{Config: in, Integration: integ}},
	}
	w.now = w.clock.Now
	t.Cleanup(w.checkLeaks)
	return w
}

// realClock makes the instances and the engine use the real clock.
func (w *world) realClock() { w.now = time.Now }

// mint returns a new random key value.
func (w *world) mint() secret.Key {
	b := make([]byte, 16)
	rand.Read(b)
	v := hex.EncodeToString(b)
	w.keys = append(w.keys, v)
	return secret.New(v)
}

// store writes k as the key's next version.
func (w *world) storeKey(k secret.Key) int {
	w.t.Helper()
	cur, err := w.store.ReadKey(context.Background(), w.job.Key.VaultPath)
	cas := cur.Version
	if err != nil {
		cas = 0
	}
	v, err := w.store.WriteKey(context.Background(), w.job.Key.VaultPath, k, cas, nil)
	if err != nil {
		w.t.Fatal(err)
	}
	return v
}

// hold makes the .env file hold k.
func (w *world) hold(k secret.Key) {
	w.t.Helper()
	if err := os.WriteFile(filepath.Join(w.dir, ".env"), []byte("APP=site\nAN_KEY="+k.Reveal()+"\n"), 0o600); err != nil {
		w.t.Fatal(err)
	}
}

func (w *world) engine() *rotation.Engine {
	return &rotation.Engine{Store: w.store, Logger: slog.New(slog.NewJSONHandler(w.logs, nil)), Timeout: 10 * time.Second, Now: w.now}
}

// server starts an instance (not running: tests step it).
func (w *world) server(id string) *Server {
	w.t.Helper()
	s, err := New(Options{
		Serve:    w.serve,
		Store:    w.store,
		Engine:   w.engine(),
		Jobs:     []rotation.Job{w.job},
		Notifier: w.slack.notifier(w.t),
		Logger:   slog.New(slog.NewJSONHandler(w.logs, nil)),
		Now:      w.now,
		ID:       id,
	})
	if err != nil {
		w.t.Fatal(err)
	}
	return s
}

// checkLeaks looks for every key minted in everything the daemon wrote:
// logs, Slack messages, and its records in Vault.
func (w *world) checkLeaks() {
	leakcheck.Assert(w.t, "logs", w.logs.Bytes(), w.keys...)
	leakcheck.Assert(w.t, "slack messages", w.slack.bodies(), w.keys...)
	leakcheck.Assert(w.t, "vault records", w.env.Dump(w.t, "rekey/"), w.keys...)
}

func (w *world) said() Said {
	w.t.Helper()
	var s Said
	if _, err := w.store.GetRecord(context.Background(), saidPath, &s); err != nil {
		w.t.Fatal(err)
	}
	return s
}

func (w *world) lease() LeaseRecord {
	w.t.Helper()
	var l LeaseRecord
	if _, err := w.store.GetRecord(context.Background(), leasePath, &l); err != nil {
		w.t.Fatal(err)
	}
	return l
}

// saidBy returns the instance that ran the latest audit round ("" before any).
func (w *world) saidBy() string {
	var s Said
	if _, err := w.store.GetRecord(context.Background(), saidPath, &s); err != nil {
		return ""
	}
	return s.By
}

// run runs s until the returned stop is called; done is closed when Run
// has returned (nil, or the test fails).
func run(t *testing.T, s *Server) (stop func(), done chan struct{}) {
	ctx, cancel := context.WithCancel(context.Background())
	done = make(chan struct{})
	go func() {
		defer close(done)
		if err := s.Run(ctx); err != nil {
			t.Errorf("%s: Run: %v", s.ID(), err)
		}
	}()
	return cancel, done
}

// waitFor polls cond until it holds, or fails the test after limit.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s after %v", what, limit)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
