package serve

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rekey-dev/rekey/config"
	"github.com/rekey-dev/rekey/integrations"
	"github.com/rekey-dev/rekey/integrations/manual"
	"github.com/rekey-dev/rekey/internal/leakcheck"
	"github.com/rekey-dev/rekey/rotation"
	"github.com/rekey-dev/rekey/secret"
	"github.com/rekey-dev/rekey/store/memstore"
)

type pageCourier struct {
	mu    sync.Mutex
	codes []rotation.Code
}

func (c *pageCourier) Deliver(_ context.Context, d rotation.Delivery) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.codes = append(c.codes, d.Code)
	return "slack-dm", nil
}

// pageWorld is a key rotated with a hand-off for CallHub, and a daemon
// serving the hand-off page. The store is in memory (it wraps and
// records hand-offs as the conformance suite holds Vault to); the
// hand-off stories on a real Vault are internal/e2e's and cmd/rekey's.
type pageWorld struct {
	srv   *httptest.Server
	code  rotation.Code
	key   secret.Key
	logs  *syncBuffer
	codes *pageCourier
}

func newPageWorld(t *testing.T) *pageWorld {
	t.Helper()
	ctx := context.Background()
	store := memstore.New(memstore.Options{})
	old, key := secret.New("an-old-page-0123456789abcdef0123"), secret.New("an-new-page-fedcba9876543210fedc")
	if _, err := store.WriteKey(ctx, "an/main", old, 0, nil); err != nil {
		t.Fatal(err)
	}
	in := config.Integration{ID: "callhub", Key: "an-main", Type: "manual", Owner: "<@U0CALLHUB>",
		Instructions: "CallHub → Settings → paste the key", Settings: map[string]any{"handoff": map[string]any{"ttl": "1h"}}}
	m, err := manual.New(integrations.Host{Config: &config.Config{File: "t.yaml", Integrations: []config.Integration{in}}}, in)
	if err != nil {
		t.Fatal(err)
	}
	job := rotation.Job{Key: config.Key{ID: "an-main", Provider: "none", VaultPath: "an/main"}, Reason: "manual",
		Targets: []rotation.Target{{Config: in, Integration: m}}}
	red := secret.NewRedactor()
	red.AddKey(old, key)
	w := &pageWorld{key: key, logs: &syncBuffer{}, codes: &pageCourier{}}
	log := slog.New(red.Handler(slog.NewJSONHandler(w.logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	eng := &rotation.Engine{Store: store, Logger: log, Redact: red.Redact,
		Handoffs: &rotation.Handoffs{Vault: store, Records: store, Courier: w.codes, Learn: func(s string) { red.Add(s) }}}
	if _, err := eng.Rotate(ctx, job, key); err != nil {
		t.Fatal(err)
	}
	w.code = w.codes.codes[0]
	s, err := New(Options{Serve: config.Serve{AuditInterval: config.Duration(time.Hour), LeaseTTL: config.Duration(time.Minute)},
		Store: store, Engine: eng, Jobs: []rotation.Job{job}, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	w.srv = httptest.NewServer(s.Handler())
	t.Cleanup(w.srv.Close)
	t.Cleanup(func() {
		leakcheck.Assert(t, "serve's log", w.logs.Bytes(), w.code.Reveal(), key.Reveal(), old.Reveal())
	})
	return w
}

func (w *pageWorld) post(t *testing.T, path, body string, header ...string) (*http.Response, map[string]string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, w.srv.URL+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]string
	raw, _ := io.ReadAll(resp.Body)
	json.Unmarshal(raw, &out)
	return resp, out
}

func (w *pageWorld) codeBody() string {
	b, _ := json.Marshal(map[string]string{"code": w.code.Reveal()})
	return string(b)
}

func checkHeaders(t *testing.T, what string, h http.Header) {
	t.Helper()
	want := map[string]string{
		"Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
		"Cache-Control":           "no-store",
		"Referrer-Policy":         "no-referrer",
		"X-Content-Type-Options":  "nosniff",
		"X-Frame-Options":         "DENY",
	}
	for k, v := range want {
		if got := h.Get(k); got != v {
			t.Errorf("%s: %s = %q, want %q", what, k, got, v)
		}
	}
}

// The page and its assets are the embedded files, with headers that let
// them load nothing else, and nothing in them points anywhere else.
func TestHandoffPageServesOnlyItsOwnAssets(t *testing.T) {
	w := newPageWorld(t)
	external := regexp.MustCompile(`(?i)(https?:)?//[a-z0-9]|<script>|<style>|\son[a-z]+=|style=|javascript:`)
	for path, ctype := range map[string]string{
		"/handoff":         "text/html; charset=utf-8",
		"/handoff/app.js":  "text/javascript; charset=utf-8",
		"/handoff/app.css": "text/css; charset=utf-8",
	} {
		resp, err := http.Get(w.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != ctype {
			t.Fatalf("GET %s: %d %s", path, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		checkHeaders(t, "GET "+path, resp.Header)
		if m := external.Find(body); m != nil {
			t.Errorf("%s holds %q: an inline script or style, or a reference to another origin", path, m)
		}
	}
	if resp, _ := http.Post(w.srv.URL+"/handoff", "application/json", strings.NewReader("{}")); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /handoff: %d", resp.StatusCode)
	}
}

// Lookup says which key and integration a code is for without opening
// it; reveal opens it once; a second reveal is gone; every answer is
// no-store and none but reveal's holds the key.
func TestHandoffPageCalls(t *testing.T) {
	w := newPageWorld(t)
	resp, got := w.post(t, "/handoff/lookup", w.codeBody())
	if resp.StatusCode != 200 || got["integration"] != "callhub" || got["key"] != "an-main" || got["state"] != "unopened" ||
		got["fingerprint"] != w.key.Fingerprint() || got["instructions"] != "CallHub → Settings → paste the key" {
		t.Fatalf("lookup: %d %v", resp.StatusCode, got)
	}
	checkHeaders(t, "lookup", resp.Header)
	_, got = w.post(t, "/handoff/lookup", w.codeBody()) // looking opens nothing
	if got["state"] != "unopened" {
		t.Fatalf("second lookup: %v", got)
	}
	resp, got = w.post(t, "/handoff/reveal", w.codeBody(), "Origin", w.srv.URL)
	if resp.StatusCode != 200 || got["key"] != w.key.Reveal() || got["integration"] != "callhub" {
		t.Fatalf("reveal: %d (key shown: %v)", resp.StatusCode, got["key"] == w.key.Reveal())
	}
	checkHeaders(t, "reveal", resp.Header)
	resp, got = w.post(t, "/handoff/reveal", w.codeBody())
	if resp.StatusCode != http.StatusGone || got["state"] != "already opened" || got["key"] != "" {
		t.Fatalf("second reveal: %d %v", resp.StatusCode, got)
	}
	leakcheck.Assert(t, "the second reveal's answer", []byte(got["error"]), w.code.Reveal(), w.key.Reveal())
	resp, got = w.post(t, "/handoff/lookup", w.codeBody())
	if resp.StatusCode != 200 || got["state"] != "tried-twice" {
		t.Fatalf("lookup after: %d %v", resp.StatusCode, got)
	}
	resp, got = w.post(t, "/handoff/confirm", w.codeBody())
	if resp.StatusCode != 200 || got["state"] != "current" {
		t.Fatalf("confirm: %d %v", resp.StatusCode, got)
	}
	resp, _ = w.post(t, "/handoff/lookup", `{"code":"hvs.CAESIMadeUpCodeThatRekeyNeverIssued0123"}`)
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("a made-up code: %d", resp.StatusCode)
	}
}

// Calls come from the page only (same origin, JSON), carry a code, and
// are rate-limited: a client guessing codes is slowed down.
func TestHandoffPageRefusesAndLimits(t *testing.T) {
	w := newPageWorld(t)
	if resp, _ := w.post(t, "/handoff/reveal", w.codeBody(), "Origin", "https://evil.example"); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("another origin: %d", resp.StatusCode)
	}
	if resp, _ := w.post(t, "/handoff/reveal", w.codeBody(), "Content-Type", "text/plain"); resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Fatalf("not JSON: %d", resp.StatusCode)
	}
	if resp, _ := w.post(t, "/handoff/reveal", `{}`); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("no code: %d", resp.StatusCode)
	}
	limited := 0
	for i := range 8 {
		resp, got := w.post(t, "/handoff/reveal", `{"code":"hvs.CAESIGuess`+strings.Repeat("x", i)+`0123456789abcdef"}`)
		if resp.StatusCode == http.StatusTooManyRequests {
			limited++
			if resp.Header.Get("Retry-After") == "" || got["error"] == "" {
				t.Fatalf("429 without Retry-After or a reason: %v", got)
			}
		}
	}
	if limited == 0 {
		t.Fatal("8 guesses in a row were not rate-limited")
	}
	// The real code, from the same client, waits too; nothing was opened.
	if resp, _ := w.post(t, "/handoff/reveal", w.codeBody()); resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("the limited client's next reveal: %d", resp.StatusCode)
	}
	if resp, got := w.post(t, "/handoff/lookup", w.codeBody()); resp.StatusCode != 200 || got["state"] != "unopened" {
		t.Fatalf("the code after the guesses: %d %v", resp.StatusCode, got)
	}
}
