package slack

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/internal/leakcheck"
	"github.com/rekey-dev/rekey/internal/slacktest"
	"github.com/rekey-dev/rekey/notifiers"
)

const (
	testToken   = "xoxb-1111111111-2222222222-SuPeRsEcReTtOkEnVaLuE"
	testChannel = "C0123456789"
	webhookPath = "/services/T00000000/B00000000/WeBhOoKsEcReTpAtHpArT"
)

// reply is one scripted HTTP answer.
type reply struct {
	status     int
	retryAfter string
	body       string
}

// call is one request the fake received.
type call struct {
	method string // Web API method ("chat.postMessage") or "webhook"
	auth   string
	ctype  string
	body   string
	form   url.Values     // Web API calls
	json   map[string]any // webhook calls
}

// fakeSlack speaks Slack's Web API (POST /api/<method>, form-encoded as
// slack-go sends it, bearer token) and an incoming webhook endpoint
// (POST JSON, "ok" or a plain-text error).
type fakeSlack struct {
	t   *testing.T
	srv *httptest.Server

	mu      sync.Mutex
	calls   []call
	script  map[string][]reply // per method, used up in order; then success
	nextTS  int
	onCall  func(call)
	webhook string
	// scopes is what auth.test's X-OAuth-Scopes header says the token may
	// do, and what conversations.open checks ("-": no header at all).
	scopes string
	// dms are the direct-message conversations opened, by channel id.
	dms     map[string]string
	refused []string // codes of the messages refused for Slack's limits
}

func (f *fakeSlack) refuse(code string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.refused = append(f.refused, code)
}

func newFake(t *testing.T) *fakeSlack {
	t.Helper()
	f := &fakeSlack{t: t, script: map[string][]reply{}, nextTS: 100, scopes: "chat:write,im:write", dms: map[string]string{}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	f.webhook = f.srv.URL + webhookPath
	return f
}

func (f *fakeSlack) apiURL() string { return f.srv.URL + "/api/" }

func (f *fakeSlack) then(method string, rs ...reply) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.script[method] = append(f.script[method], rs...)
}

func (f *fakeSlack) got() []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]call(nil), f.calls...)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (f *fakeSlack) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	raw, _ := io.ReadAll(r.Body)
	c := call{auth: r.Header.Get("Authorization"), ctype: r.Header.Get("Content-Type"), body: string(raw)}

	var method string
	switch {
	case r.URL.Path == webhookPath:
		method, c.method = "webhook", "webhook"
		if err := json.Unmarshal(raw, &c.json); err != nil || !strings.HasPrefix(c.ctype, "application/json") {
			http.Error(w, "invalid_payload", http.StatusBadRequest)
			return
		}
	case strings.HasPrefix(r.URL.Path, "/api/"):
		method = strings.TrimPrefix(r.URL.Path, "/api/")
		c.method = method
		if !strings.HasPrefix(c.ctype, "application/x-www-form-urlencoded") {
			writeJSON(w, 200, map[string]any{"ok": false, "error": "invalid_form_data"})
			return
		}
		c.form, _ = url.ParseQuery(string(raw))
	default:
		http.NotFound(w, r)
		return
	}

	f.mu.Lock()
	f.calls = append(f.calls, c)
	var rep *reply
	if rs := f.script[method]; len(rs) > 0 {
		rep = &rs[0]
		f.script[method] = rs[1:]
	}
	f.nextTS++
	ts := fmt.Sprintf("1700000000.000%d", f.nextTS)
	onCall := f.onCall
	f.mu.Unlock()
	if onCall != nil {
		onCall(c)
	}

	if rep != nil {
		if rep.retryAfter != "" {
			w.Header().Set("Retry-After", rep.retryAfter)
		}
		if strings.HasPrefix(rep.body, "{") {
			w.Header().Set("Content-Type", "application/json; charset=utf-8")
		}
		w.WriteHeader(rep.status)
		_, _ = io.WriteString(w, rep.body)
		return
	}

	if method == "webhook" {
		// An incoming webhook refuses what chat.postMessage would, with
		// a 400 and the code as plain text.
		txt, _ := c.json["text"].(string)
		blocks := ""
		if b, ok := c.json["blocks"]; ok && b != nil {
			raw, _ := json.Marshal(b)
			blocks = string(raw)
		}
		if code := slacktest.Check(txt, blocks); code != "" {
			f.refuse(code)
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, code)
			return
		}
		_, _ = io.WriteString(w, "ok")
		return
	}
	// The Web API: a bearer token or a token field, as Slack accepts.
	tok := strings.TrimPrefix(c.auth, "Bearer ")
	if c.auth == "" {
		tok = c.form.Get("token")
	}
	switch {
	case tok == "":
		writeJSON(w, 200, map[string]any{"ok": false, "error": "not_authed"})
		return
	case tok != testToken:
		writeJSON(w, 200, map[string]any{"ok": false, "error": "invalid_auth"})
		return
	case method == "auth.test":
		f.mu.Lock()
		if f.scopes != "-" {
			w.Header().Set("X-OAuth-Scopes", f.scopes)
		}
		f.mu.Unlock()
		writeJSON(w, 200, map[string]any{"ok": true, "url": "https://greens.slack.com/", "team": "Greens",
			"user": "rekey", "team_id": "T0000000001", "user_id": "U0000000001", "bot_id": "B0000000001"})
		return
	case method == "conversations.open":
		f.openDM(w, c.form)
		return
	case c.form.Get("channel") == "":
		writeJSON(w, 200, map[string]any{"ok": false, "error": "channel_not_found"})
		return
	}
	if ch := c.form.Get("channel"); strings.HasPrefix(ch, "D") {
		f.mu.Lock()
		_, open := f.dms[ch]
		f.mu.Unlock()
		if !open {
			writeJSON(w, 200, map[string]any{"ok": false, "error": "channel_not_found"})
			return
		}
	}
	if method == "chat.postMessage" || method == "chat.update" {
		// Slack's limits on a message: too many blocks, a section or
		// header too long, too much text in all.
		if code := slacktest.Check(c.form.Get("text"), c.form.Get("blocks")); code != "" {
			f.refuse(code)
			writeJSON(w, 200, map[string]any{"ok": false, "error": code})
			return
		}
	}
	switch method {
	case "chat.postMessage":
		writeJSON(w, 200, map[string]any{"ok": true, "channel": c.form.Get("channel"), "ts": ts,
			"message": map[string]any{"type": "message", "text": c.form.Get("text"), "ts": ts}})
	case "chat.update":
		if c.form.Get("ts") == "" {
			writeJSON(w, 200, map[string]any{"ok": false, "error": "message_not_found"})
			return
		}
		writeJSON(w, 200, map[string]any{"ok": true, "channel": c.form.Get("channel"), "ts": c.form.Get("ts"), "text": c.form.Get("text")})
	default:
		writeJSON(w, 200, map[string]any{"ok": false, "error": "unknown_method"})
	}
}

// openDM answers conversations.open as Slack does for a bot token: it
// needs im:write, and users= one user id (U… or W…) that exists (here:
// any but U0NOBODY); the answer names the direct message's channel.
func (f *fakeSlack) openDM(w http.ResponseWriter, form url.Values) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !strings.Contains(","+f.scopes+",", ",im:write,") {
		writeJSON(w, 200, map[string]any{"ok": false, "error": "missing_scope", "needed": "im:write", "provided": f.scopes})
		return
	}
	users := form.Get("users")
	switch {
	case users == "":
		writeJSON(w, 200, map[string]any{"ok": false, "error": "users_list_not_supplied"})
		return
	case strings.Contains(users, ","):
		writeJSON(w, 200, map[string]any{"ok": false, "error": "not_enough_users"}) // a group DM is another call
		return
	case users == "U0NOBODY" || (users[0] != 'U' && users[0] != 'W'):
		writeJSON(w, 200, map[string]any{"ok": false, "error": "user_not_found"})
		return
	}
	id := "D0" + users
	f.dms[id] = users
	writeJSON(w, 200, map[string]any{"ok": true, "channel": map[string]any{"id": id}})
}

// waits records the waits between attempts instead of sleeping.
type waits struct {
	mu sync.Mutex
	d  []time.Duration
}

func (w *waits) sleep(ctx context.Context, d time.Duration) error {
	w.mu.Lock()
	w.d = append(w.d, d)
	w.mu.Unlock()
	return ctx.Err()
}

func (w *waits) get() []time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]time.Duration(nil), w.d...)
}

type testNotifier struct {
	*Notifier
	logs  *bytes.Buffer
	waits *waits
}

func newBot(t *testing.T, f *fakeSlack, retries int) testNotifier {
	t.Helper()
	logs := &bytes.Buffer{}
	n, err := New(Options{
		Token: testToken, Channel: testChannel, APIURL: f.apiURL(),
		Logger:  slog.New(slog.NewTextHandler(logs, nil)),
		Retries: retries, Backoff: 10 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	w := &waits{}
	n.sleep = w.sleep
	return testNotifier{n, logs, w}
}

func newHook(t *testing.T, f *fakeSlack, retries int) testNotifier {
	t.Helper()
	logs := &bytes.Buffer{}
	n, err := New(Options{
		WebhookURL: f.webhook,
		Logger:     slog.New(slog.NewTextHandler(logs, nil)),
		Retries:    retries, Backoff: 10 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	w := &waits{}
	n.sleep = w.sleep
	return testNotifier{n, logs, w}
}

// noLeak checks that neither the token nor the webhook URL (nor its secret
// path) appears in data.
func noLeak(t *testing.T, what string, data string) {
	t.Helper()
	leakcheck.Assert(t, what, []byte(data), testToken, webhookPath, "WeBhOoKsEcReTpAtHpArT")
}

func started(rot string) notifiers.Event {
	return notifiers.Event{
		Kind: notifiers.RotationStarted, KeyID: "actionnetwork-main", RotationID: rot, Reason: "scheduled",
		OldFingerprint: "sha256:0123456789ab",
		Owner:          "<@U012ABCDEF>",
		Instructions:   "Action Network → Details → API & Sync → REVOKE & GENERATE NEW KEY",
		Title:          "Rotating actionnetwork-main",
		Integrations: []notifiers.Integration{
			{ID: "site-env", Type: "file", State: "waiting"},
			{ID: "callhub", Type: "manual", State: "waiting", Owner: "<@U0CALL>"},
		},
	}
}

func progress(rot string) notifiers.Event {
	return notifiers.Event{
		Kind: notifiers.RotationProgress, KeyID: "actionnetwork-main", RotationID: rot,
		Fingerprint: "sha256:ba9876543210",
		Title:       "ci failed",
		Integrations: []notifiers.Integration{
			{ID: "ci", Type: "github", State: "failing", Reason: "github: put secret: unauthorized", Owner: "<@U0CI>"},
		},
	}
}

func finished(rot string) notifiers.Event {
	return notifiers.Event{
		Kind: notifiers.RotationFinished, KeyID: "actionnetwork-main", RotationID: rot,
		Fingerprint: "sha256:ba9876543210", OldFingerprint: "sha256:0123456789ab",
		Title: "Rotation of actionnetwork-main: 1 current, 1 pending, 1 failing",
		Integrations: []notifiers.Integration{
			{ID: "site-env", Type: "file", State: "current", Reason: "holds the current version"},
			{ID: "callhub", Type: "manual", State: "pending", Reason: "waiting for <@U0CALL>", Owner: "<@U0CALL>"},
			{ID: "ci", Type: "github", State: "failing", Reason: "unauthorized", Owner: "<@U0CI>"},
		},
	}
}

// blockTypes decodes the blocks field of a call and returns their types.
func blockTypes(t *testing.T, raw string) []string {
	t.Helper()
	var blocks []struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal([]byte(raw), &blocks); err != nil {
		t.Fatalf("blocks are not JSON: %v", err)
	}
	var types []string
	for _, b := range blocks {
		types = append(types, b.Type)
	}
	return types
}

// checkWire checks what every Web API call must carry: the bearer token in
// the header and nowhere else, a channel, a text fallback and blocks.
func checkWire(t *testing.T, c call) {
	t.Helper()
	if c.auth != "Bearer "+testToken {
		t.Errorf("%s: Authorization = %q, want the bot token as a bearer token", c.method, c.auth)
	}
	noLeak(t, c.method+" body", c.body)
	if c.form.Get("channel") != testChannel {
		t.Errorf("%s: channel = %q, want %q", c.method, c.form.Get("channel"), testChannel)
	}
	if c.form.Get("text") == "" {
		t.Errorf("%s: no text fallback", c.method)
	}
	types := blockTypes(t, c.form.Get("blocks"))
	if len(types) == 0 || types[0] != "header" {
		t.Errorf("%s: block types = %v, want a header first", c.method, types)
	}
	for _, ty := range types {
		if ty != "header" && ty != "section" && ty != "context" {
			t.Errorf("%s: block type %q", c.method, ty)
		}
	}
}

// blocksText returns every string in a blocks JSON array, one a line.
func blocksText(t *testing.T, raw string) string {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(raw), &v); err != nil {
		t.Fatalf("blocks are not JSON: %v", err)
	}
	var b strings.Builder
	var walk func(any)
	walk = func(v any) {
		switch v := v.(type) {
		case string:
			b.WriteString(v + "\n")
		case []any:
			for _, e := range v {
				walk(e)
			}
		case map[string]any:
			for _, e := range v {
				walk(e)
			}
		}
	}
	walk(v)
	return b.String()
}

func TestRotationIsOneThread(t *testing.T) {
	f := newFake(t)
	n := newBot(t, f, 3)
	ctx := context.Background()
	for _, ev := range []notifiers.Event{started("r1"), progress("r1"), progress("r1"), finished("r1")} {
		if err := n.Notify(ctx, ev); err != nil {
			t.Fatalf("%s: %v", ev.Kind, err)
		}
	}
	calls := f.got()
	want := []struct{ method, threadTS string }{
		{"chat.postMessage", ""},
		{"chat.postMessage", "1700000000.000101"},
		{"chat.postMessage", "1700000000.000101"},
		{"chat.postMessage", "1700000000.000101"},
		{"chat.update", ""},
	}
	if len(calls) != len(want) {
		t.Fatalf("got %d calls, want %d: %+v", len(calls), len(want), calls)
	}
	for i, w := range want {
		c := calls[i]
		checkWire(t, c)
		if types := strings.Join(blockTypes(t, c.form.Get("blocks")), " "); !strings.HasPrefix(types, "header section") || !strings.HasSuffix(types, "section context") {
			t.Errorf("call %d: block types %s, want header, sections, context", i, types)
		}
		if c.method != w.method || c.form.Get("thread_ts") != w.threadTS {
			t.Errorf("call %d: %s thread_ts=%q, want %s thread_ts=%q", i, c.method, c.form.Get("thread_ts"), w.method, w.threadTS)
		}
	}
	upd := calls[4]
	if upd.form.Get("ts") != "1700000000.000101" {
		t.Errorf("chat.update ts = %q, want the top message's", upd.form.Get("ts"))
	}
	if !strings.Contains(upd.form.Get("text"), "1 current, 1 pending, 1 failing") {
		t.Errorf("chat.update text does not carry the outcome:\n%s", upd.form.Get("text"))
	}
	// The owner who must click is named at the start.
	if !strings.Contains(calls[0].form.Get("text"), "<@U012ABCDEF>") || !strings.Contains(blocksText(t, calls[0].form.Get("blocks")), "REVOKE") {
		t.Errorf("top message lacks the owner or the instructions:\n%s", calls[0].form.Get("text"))
	}
	// The owners of failing and pending integrations are mentioned, in
	// text and blocks; the owner of a current one is not asked.
	for _, c := range []call{calls[1], calls[3], calls[4]} {
		for _, who := range []string{"<@U0CI>"} {
			if !strings.Contains(c.form.Get("text"), who) || !strings.Contains(blocksText(t, c.form.Get("blocks")), who) {
				t.Errorf("%s %s: %s not mentioned", c.method, c.form.Get("thread_ts"), who)
			}
		}
	}
	if !strings.Contains(calls[3].form.Get("text"), "<@U0CALL>") {
		t.Errorf("finished reply does not mention the pending integration's owner")
	}
	if strings.Contains(calls[0].form.Get("text"), "<@U0CALL>") {
		t.Errorf("start message mentions an owner whose integration is only waiting")
	}

	// A second rotation gets its own message; the first keeps its thread.
	if err := n.Notify(ctx, started("r2")); err != nil {
		t.Fatal(err)
	}
	if err := n.Notify(ctx, progress("r1")); err != nil {
		t.Fatal(err)
	}
	calls = f.got()
	if got := calls[5].form.Get("thread_ts"); got != "" {
		t.Errorf("second rotation's first message has thread_ts %q", got)
	}
	if got := calls[6].form.Get("thread_ts"); got != "1700000000.000101" {
		t.Errorf("later event of r1 has thread_ts %q", got)
	}
	noLeak(t, "logs", n.logs.String())
}

func TestEventsOutsideRotationsAreTopLevel(t *testing.T) {
	f := newFake(t)
	n := newBot(t, f, 0)
	evs := []notifiers.Event{
		{Kind: notifiers.Reminder, KeyID: "k", Title: "k is due in 7 days"},
		{Kind: notifiers.StateChanged, KeyID: "k", Title: "ci changed", Integrations: []notifiers.Integration{
			{ID: "ci", Type: "github", State: "stale", Previous: "current", Owner: "<@U0CI>"}}},
		{Kind: notifiers.AuditReport, KeyID: "k", Title: "audit"},
		{Kind: notifiers.LeakAlert, KeyID: "k", Urgent: true, Title: "leaked key still works"},
		{Kind: notifiers.Reminder, KeyID: "k", Title: "k is due in 1 day"},
	}
	for _, ev := range evs {
		if err := n.Notify(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
	calls := f.got()
	if len(calls) != len(evs) {
		t.Fatalf("got %d calls, want %d", len(calls), len(evs))
	}
	for i, c := range calls {
		checkWire(t, c)
		if c.method != "chat.postMessage" || c.form.Get("thread_ts") != "" {
			t.Errorf("event %d (%s): %s thread_ts=%q, want a top-level message", i, evs[i].Kind, c.method, c.form.Get("thread_ts"))
		}
	}
	if txt := calls[1].form.Get("text"); !strings.Contains(txt, "current → stale") || !strings.Contains(txt, "<@U0CI>") {
		t.Errorf("state change message:\n%s", txt)
	}
}

func TestLeakAlertStartsThreadAndUrgentRepliesReachChannel(t *testing.T) {
	f := newFake(t)
	n := newBot(t, f, 0)
	leak := notifiers.Event{Kind: notifiers.LeakAlert, Urgent: true, KeyID: "k", RotationID: "r9",
		Title: "Key k leaked", Text: "Revoke it now.", Owner: "<@U012ABCDEF>"}
	still := leak
	still.Title = "The leaked key still works"
	fin := finished("r9")
	fin.Urgent = true
	for _, ev := range []notifiers.Event{leak, progress("r9"), still, fin} {
		if err := n.Notify(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
	calls := f.got()
	if len(calls) != 5 {
		t.Fatalf("got %d calls, want 5", len(calls))
	}
	top := calls[0].form.Get("text")
	if !strings.HasPrefix(top, "<!channel> :rotating_light: ") {
		t.Errorf("urgent text does not start with <!channel> and a siren:\n%s", top)
	}
	if !strings.Contains(blocksText(t, calls[0].form.Get("blocks")), "<!channel>") {
		t.Errorf("urgent blocks lack <!channel>")
	}
	if calls[0].form.Get("thread_ts") != "" || calls[1].form.Get("thread_ts") == "" || calls[2].form.Get("thread_ts") == "" {
		t.Errorf("leak alert should start the thread and the rest reply in it")
	}
	if calls[1].form.Get("reply_broadcast") != "" {
		t.Errorf("a routine reply was broadcast to the channel")
	}
	if calls[2].form.Get("reply_broadcast") != "true" {
		t.Errorf("an urgent reply was not broadcast to the channel")
	}
	upd := calls[4]
	if upd.method != "chat.update" {
		t.Fatalf("last call %s, want chat.update", upd.method)
	}
	if strings.Contains(upd.form.Get("text"), "<!channel>") {
		t.Errorf("the edit of the top message mentions the channel again")
	}
	if !strings.Contains(upd.form.Get("text"), ":rotating_light:") {
		t.Errorf("the edit of an urgent top message lost its siren")
	}
}

func TestRetries(t *testing.T) {
	ok := reply{status: 200, body: `{"ok":true,"channel":"C0123456789","ts":"1700000000.000100"}`}
	r500 := reply{status: 500, body: "<html>oops</html>"}
	tests := []struct {
		name      string
		retries   int
		script    []reply
		wantCalls int
		wantWaits []time.Duration
		wantClass error // nil: success
	}{
		{"429 honours Retry-After", 3, []reply{{status: 429, retryAfter: "1", body: `{"ok":false,"error":"ratelimited"}`}, ok}, 2, []time.Duration{time.Second}, nil},
		{"429 twice", 3, []reply{{status: 429, retryAfter: "2"}, {status: 429, retryAfter: "1"}, ok}, 3, []time.Duration{2 * time.Second, time.Second}, nil},
		{"429 without Retry-After backs off", 3, []reply{{status: 429}, ok}, 2, []time.Duration{10 * time.Millisecond}, nil},
		{"5xx backs off exponentially", 3, []reply{r500, {status: 502}, {status: 503}, ok}, 4,
			[]time.Duration{10 * time.Millisecond, 20 * time.Millisecond, 40 * time.Millisecond}, nil},
		{"ratelimited in a 200 body", 3, []reply{{status: 200, body: `{"ok":false,"error":"ratelimited"}`}, ok}, 2, []time.Duration{10 * time.Millisecond}, nil},
		{"internal_error", 3, []reply{{status: 200, body: `{"ok":false,"error":"internal_error"}`}, ok}, 2, []time.Duration{10 * time.Millisecond}, nil},
		{"not JSON", 1, []reply{{status: 200, body: "<html>proxy</html>"}, ok}, 2, []time.Duration{10 * time.Millisecond}, nil},
		{"gives up after Retries", 3, []reply{r500, r500, r500, r500, ok}, 4,
			[]time.Duration{10 * time.Millisecond, 20 * time.Millisecond, 40 * time.Millisecond}, failure.ErrTransient},
		{"no retries", 0, []reply{r500, ok}, 1, nil, failure.ErrTransient},
		{"429 then gives up", 1, []reply{{status: 429, retryAfter: "1"}, {status: 429, retryAfter: "1"}, ok}, 2, []time.Duration{time.Second}, failure.ErrTransient},
		{"channel_not_found is final", 3, []reply{{status: 200, body: `{"ok":false,"error":"channel_not_found"}`}}, 1, nil, failure.ErrNotFound},
		{"not_in_channel is final", 3, []reply{{status: 200, body: `{"ok":false,"error":"not_in_channel"}`}}, 1, nil, failure.ErrUnauthorized},
		{"invalid_auth is final", 3, []reply{{status: 200, body: `{"ok":false,"error":"invalid_auth"}`}}, 1, nil, failure.ErrUnauthorized},
		{"invalid_blocks is sent again as text", 3, []reply{{status: 200, body: `{"ok":false,"error":"invalid_blocks"}`}}, 2, nil, nil},
		{"invalid_arguments is final", 3, []reply{{status: 200, body: `{"ok":false,"error":"invalid_arguments"}`}}, 1, nil, failure.ErrInvalid},
		{"404 is final", 3, []reply{{status: 404, body: "not found"}}, 1, nil, failure.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t)
			f.then("chat.postMessage", tt.script...)
			n := newBot(t, f, tt.retries)
			err := n.Notify(context.Background(), notifiers.Event{Kind: notifiers.Reminder, KeyID: "k", Title: "due"})
			if got := len(f.got()); got != tt.wantCalls {
				t.Errorf("calls = %d, want %d", got, tt.wantCalls)
			}
			if got := n.waits.get(); fmt.Sprint(got) != fmt.Sprint(tt.wantWaits) {
				t.Errorf("waits = %v, want %v", got, tt.wantWaits)
			}
			switch {
			case tt.wantClass == nil && err != nil:
				t.Errorf("err = %v, want success", err)
			case tt.wantClass != nil && !errors.Is(err, tt.wantClass):
				t.Errorf("err = %v, want class %v", err, tt.wantClass)
			}
			if err != nil {
				if !strings.HasPrefix(err.Error(), "slack: ") || !strings.Contains(err.Error(), testChannel) {
					t.Errorf("err = %q, want the slack: prefix and the channel named", err)
				}
				noLeak(t, "error", err.Error())
			}
			noLeak(t, "logs", n.logs.String())
		})
	}
}

// TestRetryRealSleep runs the real wait once, kept tiny by Backoff.
func TestRetryRealSleep(t *testing.T) {
	f := newFake(t)
	f.then("chat.postMessage", reply{status: 503})
	n, err := New(Options{Token: testToken, Channel: testChannel, APIURL: f.apiURL(), Retries: 1, Backoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Notify(context.Background(), notifiers.Event{Kind: notifiers.Reminder, Title: "x"}); err != nil {
		t.Fatal(err)
	}
	if got := len(f.got()); got != 2 {
		t.Errorf("calls = %d, want 2", got)
	}
}

func TestRetryAfterPastDeadlineIsNotWaited(t *testing.T) {
	f := newFake(t)
	f.then("chat.postMessage", reply{status: 429, retryAfter: "30"})
	n := newBot(t, f, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := n.Notify(ctx, notifiers.Event{Kind: notifiers.Reminder, Title: "x"})
	if failure.RetryAfter(err) != 30*time.Second || !errors.Is(err, failure.ErrTransient) {
		t.Errorf("err = %v, want a retry-after error of 30s", err)
	}
	if w := n.waits.get(); len(w) != 0 {
		t.Errorf("waited %v although the deadline comes first", w)
	}
}

func TestContext(t *testing.T) {
	t.Run("cancelled before", func(t *testing.T) {
		f := newFake(t)
		n := newBot(t, f, 3)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		err := n.Notify(ctx, started("r"))
		if !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v, want context.Canceled", err)
		}
		if len(f.got()) != 0 {
			t.Errorf("a request was sent with a cancelled context")
		}
	})
	t.Run("cancelled while backing off", func(t *testing.T) {
		f := newFake(t)
		f.then("chat.postMessage", reply{status: 500}, reply{status: 500})
		n, err := New(Options{Token: testToken, Channel: testChannel, APIURL: f.apiURL(), Retries: 3, Backoff: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		f.onCall = func(call) { cancel() }
		err = n.Notify(ctx, started("r"))
		if !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v, want context.Canceled", err)
		}
		if got := len(f.got()); got != 1 {
			t.Errorf("calls = %d, want 1", got)
		}
	})
}

func TestWebhook(t *testing.T) {
	tests := []struct {
		name      string
		script    []reply
		wantCalls int
		wantClass error
		long      bool // a plain text longer than its shortest form
	}{
		{"ok", nil, 1, nil, false},
		{"a 400 is sent again as plain text", []reply{{status: 400, body: "invalid_payload"}}, 2, nil, false},
		{"a 400 three times is final", []reply{{status: 400, body: "invalid_payload"}, {status: 400, body: "invalid_payload"}, {status: 400, body: "invalid_payload"}}, 3, failure.ErrInvalid, true},
		{"a short plain text refused is not sent again", []reply{{status: 400, body: "invalid_payload"}, {status: 400, body: "invalid_payload"}, {status: 400, body: "invalid_payload"}}, 2, failure.ErrInvalid, false},
		{"no_service is final", []reply{{status: 404, body: "no_service"}}, 1, failure.ErrNotFound, false},
		{"action_prohibited is final", []reply{{status: 403, body: "action_prohibited"}}, 1, failure.ErrUnauthorized, false},
		{"500 is retried", []reply{{status: 500}, {status: 500}}, 3, nil, false},
		{"429 is retried", []reply{{status: 429, retryAfter: "1", body: "rate_limited"}}, 2, nil, false},
		{"500 until it gives up", []reply{{status: 500}, {status: 500}, {status: 500}, {status: 500}}, 3, failure.ErrTransient, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t)
			f.then("webhook", tt.script...)
			n := newHook(t, f, 2)
			ev := finished("r1")
			if tt.long {
				ev.Text = strings.Repeat("Run `rekey resume` once the failing ones are fixed. ", 30)
			}
			err := n.Notify(context.Background(), ev)
			if got := len(f.got()); got != tt.wantCalls {
				t.Errorf("calls = %d, want %d", got, tt.wantCalls)
			}
			if tt.wantClass == nil && err != nil || tt.wantClass != nil && !errors.Is(err, tt.wantClass) {
				t.Errorf("err = %v, want class %v", err, tt.wantClass)
			}
			if err != nil {
				noLeak(t, "error", err.Error())
			}
			noLeak(t, "logs", n.logs.String())
		})
	}
}

func TestWebhookCannotThread(t *testing.T) {
	f := newFake(t)
	n := newHook(t, f, 0)
	for _, ev := range []notifiers.Event{started("r1"), progress("r1"), finished("r1")} {
		if err := n.Notify(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
	calls := f.got()
	if len(calls) != 3 {
		t.Fatalf("got %d calls, want 3 (one message per event, no update)", len(calls))
	}
	for i, c := range calls {
		if c.method != "webhook" {
			t.Errorf("call %d went to %s", i, c.method)
		}
		if _, ok := c.json["thread_ts"]; ok {
			t.Errorf("call %d has thread_ts", i)
		}
		if txt, _ := c.json["text"].(string); txt == "" {
			t.Errorf("call %d has no text fallback", i)
		}
		blocks, _ := json.Marshal(c.json["blocks"])
		if types := blockTypes(t, string(blocks)); len(types) < 3 || types[0] != "header" {
			t.Errorf("call %d blocks = %v", i, types)
		}
		if c.auth != "" {
			t.Errorf("call %d sent an Authorization header to a webhook", i)
		}
	}
	if txt := calls[2].json["text"].(string); !strings.Contains(txt, "<@U0CI>") || !strings.Contains(txt, "<@U0CALL>") {
		t.Errorf("webhook message lacks mentions:\n%s", txt)
	}
}

// TestSecretsStayOutOfErrors makes network failures, whose Go errors quote
// the URL, and checks that neither the webhook URL nor the token leaks.
func TestSecretsStayOutOfErrors(t *testing.T) {
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()

	// A transport whose error text quotes the whole request, as a careless
	// proxy library might.
	quoting := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		body, _ := io.ReadAll(r.Body)
		return nil, fmt.Errorf("proxy refused %s %s (auth %s) body %s", r.Method, r.URL, r.Header.Get("Authorization"), body)
	})}

	// A server that never answers, for a client timeout.
	hang := make(chan struct{})
	silent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	}))
	defer silent.Close()
	defer close(hang)
	impatient := &http.Client{Timeout: 20 * time.Millisecond}

	tests := []struct {
		name string
		opts Options
	}{
		{"webhook, connection refused", Options{WebhookURL: closed.URL + webhookPath}},
		{"webhook, timeout", Options{WebhookURL: silent.URL + webhookPath, HTTPClient: impatient}},
		{"token, timeout", Options{Token: testToken, Channel: testChannel, APIURL: silent.URL + "/api/", HTTPClient: impatient}},
		{"webhook, error quoting the URL", Options{WebhookURL: "https://hooks.slack.com" + webhookPath, HTTPClient: quoting}},
		{"token, connection refused", Options{Token: testToken, Channel: testChannel, APIURL: closed.URL + "/api/"}},
		{"token, error quoting the request", Options{Token: testToken, Channel: testChannel, HTTPClient: quoting}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logs := &bytes.Buffer{}
			tt.opts.Logger = slog.New(slog.NewTextHandler(logs, nil))
			tt.opts.Retries = 1
			n, err := New(tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			n.sleep = (&waits{}).sleep
			err = n.Notify(context.Background(), started("r"))
			if !errors.Is(err, failure.ErrTransient) {
				t.Fatalf("err = %v, want a transient failure", err)
			}
			noLeak(t, "error", err.Error())
			noLeak(t, "error chain", fmt.Sprintf("%#v", err))
			noLeak(t, "logs", logs.String())
			if logs.Len() == 0 {
				t.Errorf("the retry was not logged")
			}
		})
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestNew(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		wantErr string
	}{
		{"nothing", Options{}, "a bot token or a webhook URL is required"},
		{"both", Options{Token: testToken, WebhookURL: "https://hooks.slack.com" + webhookPath, Channel: "C1"}, "not both"},
		{"token without channel", Options{Token: testToken}, "channel is required"},
		{"webhook not a URL", Options{WebhookURL: "hooks.slack.com" + webhookPath}, "not an http(s) URL"},
		{"webhook bad escape", Options{WebhookURL: "https://hooks.slack.com/%zz" + webhookPath}, "not an http(s) URL"},
		{"bad api_url", Options{Token: testToken, Channel: "C1", APIURL: "slack.example/api"}, "api_url"},
		{"negative retries", Options{Token: testToken, Channel: "C1", Retries: -1}, "retries"},
		{"token", Options{Token: testToken, Channel: "C1"}, ""},
		{"webhook", Options{WebhookURL: "https://hooks.slack.com" + webhookPath}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.opts)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
			noLeak(t, "error", err.Error())
		})
	}
}

func TestHTTPClientTimeout(t *testing.T) {
	mine := &http.Client{}
	n, err := New(Options{Token: testToken, Channel: "C1", HTTPClient: mine})
	if err != nil {
		t.Fatal(err)
	}
	if n.http.Timeout != DefaultTimeout || mine.Timeout != 0 {
		t.Errorf("timeout = %v (caller's %v), want %v on a copy", n.http.Timeout, mine.Timeout, DefaultTimeout)
	}
	short := &http.Client{Timeout: time.Second}
	n, _ = New(Options{WebhookURL: "https://hooks.slack.com" + webhookPath, HTTPClient: short})
	if n.http.Timeout != time.Second || short.CheckRedirect != nil {
		t.Errorf("a client's own timeout was not kept, or the caller's client was changed")
	}
}

// A redirect is never followed: the token would go on, and the webhook
// URL (a secret) would be sent along as the Referer.
func TestRedirectsAreNotFollowed(t *testing.T) {
	var got []string
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.Header.Get("Referer")+" "+r.Header.Get("Authorization"))
	}))
	defer elsewhere.Close()
	redirect := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, elsewhere.URL+"/landing", http.StatusTemporaryRedirect)
	}))
	defer redirect.Close()
	hook, _ := New(Options{WebhookURL: redirect.URL + webhookPath})
	bot, _ := New(Options{Token: testToken, Channel: testChannel, APIURL: redirect.URL + "/api/"})
	for _, n := range []*Notifier{hook, bot} {
		if err := n.Notify(context.Background(), started("r1")); err == nil {
			t.Error("a redirect was taken for a delivery")
		}
	}
	if len(got) > 0 {
		t.Fatalf("the redirect was followed: %q", got)
	}
}

func TestAPIURLWithoutTrailingSlash(t *testing.T) {
	f := newFake(t)
	n, err := New(Options{Token: testToken, Channel: testChannel, APIURL: strings.TrimSuffix(f.apiURL(), "/")})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Notify(context.Background(), notifiers.Event{Kind: notifiers.Reminder, Title: "x"}); err != nil {
		t.Fatal(err)
	}
	if c := f.got(); len(c) != 1 || c[0].method != "chat.postMessage" {
		t.Errorf("calls = %+v", c)
	}
}

func TestResumeThread(t *testing.T) {
	f := newFake(t)
	n := newBot(t, f, 0)
	if _, _, ok := n.Thread("r1"); ok {
		t.Fatal("thread known before any message")
	}
	if err := n.Notify(context.Background(), started("r1")); err != nil {
		t.Fatal(err)
	}
	ch, ts, ok := n.Thread("r1")
	if !ok || ch != testChannel || ts != "1700000000.000101" {
		t.Fatalf("Thread = %q %q %v", ch, ts, ok)
	}

	// Another process continues the thread.
	n2 := newBot(t, f, 0)
	n2.ResumeThread("r1", ch, ts)
	if err := n2.Notify(context.Background(), finished("r1")); err != nil {
		t.Fatal(err)
	}
	calls := f.got()
	if len(calls) != 3 || calls[1].form.Get("thread_ts") != ts || calls[2].method != "chat.update" || calls[2].form.Get("ts") != ts {
		t.Errorf("resumed thread calls: %+v", calls)
	}
}

func TestUpdateFailure(t *testing.T) {
	f := newFake(t)
	f.then("chat.update", reply{status: 200, body: `{"ok":false,"error":"cant_update_message"}`})
	n := newBot(t, f, 3)
	if err := n.Notify(context.Background(), started("r1")); err != nil {
		t.Fatal(err)
	}
	err := n.Notify(context.Background(), finished("r1"))
	if !errors.Is(err, failure.ErrUnauthorized) || !strings.Contains(err.Error(), "update message 1700000000.000101 in "+testChannel) {
		t.Errorf("err = %v, want the update named and classed unauthorized", err)
	}
	if got := len(f.got()); got != 3 {
		t.Errorf("calls = %d, want 3 (post, reply, one update)", got)
	}
}

// TestFailedFirstPostIsRetriedByNextEvent: when the top message could not
// be posted, the next event of the rotation becomes the top message.
func TestFailedFirstPostIsRetriedByNextEvent(t *testing.T) {
	f := newFake(t)
	f.then("chat.postMessage", reply{status: 500})
	n := newBot(t, f, 0)
	if err := n.Notify(context.Background(), started("r1")); err == nil {
		t.Fatal("want an error")
	}
	if err := n.Notify(context.Background(), progress("r1")); err != nil {
		t.Fatal(err)
	}
	if got := f.got()[1].form.Get("thread_ts"); got != "" {
		t.Errorf("next event replied to a message that was never posted (thread_ts %q)", got)
	}
}

func TestConcurrentEventsOfOneRotation(t *testing.T) {
	f := newFake(t)
	n := newBot(t, f, 0)
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			ev := progress("r1")
			if i == 0 {
				ev = started("r1")
			}
			if err := n.Notify(context.Background(), ev); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	calls := f.got()
	top := 0
	for _, c := range calls {
		if c.form.Get("thread_ts") == "" {
			top++
		}
	}
	if len(calls) != 20 || top != 1 {
		t.Errorf("%d calls, %d top-level; want 20 and 1", len(calls), top)
	}
}

func TestPing(t *testing.T) {
	f := newFake(t)
	n := newBot(t, f, 1)
	if err := n.Ping(context.Background()); err != nil {
		t.Fatalf("Ping with a good token: %v", err)
	}
	calls := f.got()
	if len(calls) != 1 || calls[0].method != "auth.test" || calls[0].auth != "Bearer "+testToken {
		t.Fatalf("Ping sent %+v, want one auth.test with the bearer token", calls)
	}
	bad, err := New(Options{Token: "xoxb-wrong-token-value", Channel: testChannel, APIURL: f.apiURL()})
	if err != nil {
		t.Fatal(err)
	}
	err = bad.Ping(context.Background())
	if err == nil || !strings.Contains(err.Error(), "invalid_auth") {
		t.Fatalf("Ping with a bad token: %v, want invalid_auth", err)
	}
	noLeak(t, "ping error", err.Error())
	if strings.Contains(err.Error(), "xoxb-wrong-token-value") {
		t.Fatal("the token is in the error")
	}
	if err := newHook(t, f, 0).Ping(context.Background()); err != nil {
		t.Fatalf("Ping of a webhook: %v", err)
	}
}
