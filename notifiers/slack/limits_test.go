package slack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/internal/slacktest"
	"github.com/rekey-dev/rekey/notifiers"
	"github.com/rekey-dev/rekey/state"
)

// manyIntegrations returns n integrations: every tenth current, the rest
// failing (with a long reason) or pending, each failing or pending one
// with its own owner.
func manyIntegrations(n int) []notifiers.Integration {
	ins := make([]notifiers.Integration, n)
	for i := range ins {
		in := notifiers.Integration{ID: fmt.Sprintf("site-%04d-env", i), Type: "http"}
		switch {
		case i%10 == 0:
			in.State, in.Reason = state.Current, "holds the current version"
		case i%10 == 1:
			in.State, in.Reason, in.Owner = state.Pending, fmt.Sprintf("waiting for <@U%07d> to update it and run `rekey confirm`", i), fmt.Sprintf("<@U%07d>", i)
		default:
			in.State, in.Owner = state.Failing, fmt.Sprintf("<@U%07d>", i)
			in.Reason = fmt.Sprintf("http: apply PUT https://site-%04d.example.org/wp-json/signup/v1/settings: status 503 (Service Unavailable) after 4 attempts: transient failure", i)
		}
		ins[i] = in
	}
	return ins
}

// bigEvents are the events a key with n integrations produces: the
// urgent leak alert naming every integration that breaks, the outcome of
// a rotation where most fail, an audit report and a reminder.
func bigEvents(n int) []notifiers.Event {
	ins := manyIntegrations(n)
	waiting := make([]notifiers.Integration, n)
	ids := make([]string, n)
	for i, in := range ins {
		waiting[i] = notifiers.Integration{ID: in.ID, Type: in.Type, State: state.Waiting, Owner: in.Owner,
			Reason: "breaks when the leaked key is revoked, until it gets the new key"}
		ids[i] = in.ID
	}
	return []notifiers.Event{
		{Kind: notifiers.LeakAlert, Urgent: true, KeyID: "actionnetwork-main", RotationID: "r-leak", Reason: "leak",
			Fingerprint: "sha256:0123456789ab", Owner: "<@U012ABCDEF>",
			Instructions: "Action Network → Details → API & Sync → REVOKE & GENERATE NEW KEY",
			Title:        "Key actionnetwork-main leaked (version 1, sha256:0123456789ab): <@U012ABCDEF>, Action Network → Details → API & Sync → REVOKE & GENERATE NEW KEY",
			Text:         fmt.Sprintf("It STILL WORKS: revoke it now. %d integrations break when it is revoked, and are updated as soon as the new key is pasted into rekey: %s.", n, strings.Join(ids, ", ")),
			Integrations: waiting},
		{Kind: notifiers.RotationFinished, KeyID: "actionnetwork-main", RotationID: "r-rot", Reason: "scheduled",
			Fingerprint: "sha256:ba9876543210", OldFingerprint: "sha256:0123456789ab", Owner: "<@U012ABCDEF>",
			Title:        fmt.Sprintf("Rotation of actionnetwork-main: %d of %d integrations not current yet", n-n/10, n),
			Text:         "Run `rekey resume actionnetwork-main` after fixing failures; manual integrations need `rekey confirm actionnetwork-main INTEGRATION`.",
			Integrations: ins},
		{Kind: notifiers.AuditReport, KeyID: "actionnetwork-main", Title: "Audit of actionnetwork-main", Integrations: ins},
		{Kind: notifiers.Reminder, KeyID: "actionnetwork-main", Title: "actionnetwork-main is due for rotation in 7 days",
			Owner: "<@U012ABCDEF>", Integrations: ins},
	}
}

// accepted returns the messages the fake accepted: text and blocks text.
func accepted(t *testing.T, calls []call) []string {
	t.Helper()
	var out []string
	for _, c := range calls {
		switch c.method {
		case "webhook":
			b, _ := json.Marshal(c.json["blocks"])
			txt, _ := c.json["text"].(string)
			out = append(out, txt+"\n"+blocksText(t, string(b)))
		case "chat.postMessage", "chat.update":
			blocks := c.form.Get("blocks")
			if blocks == "" {
				blocks = "[]"
			}
			out = append(out, c.form.Get("text")+"\n"+blocksText(t, blocks))
		}
	}
	return out
}

// TestLongListsStayWithinSlackLimits: a key with 1,000 integrations, most
// failing, each with its owner. Slack (the fake enforces its limits)
// accepts every message as rekey first renders it; the message says how
// many are in each state and names the first owners and failures, and the
// rest are detailed in replies in its thread (messages of their own for a
// webhook), so every owner who must act is mentioned somewhere.
func TestLongListsStayWithinSlackLimits(t *testing.T) {
	const n = 1000
	for _, mode := range []string{"bot", "webhook"} {
		for _, ev := range bigEvents(n) {
			t.Run(mode+"/"+string(ev.Kind), func(t *testing.T) {
				f := newFake(t)
				var tn testNotifier
				if mode == "bot" {
					tn = newBot(t, f, 0)
				} else {
					tn = newHook(t, f, 0)
				}
				if err := tn.Notify(context.Background(), ev); err != nil {
					t.Fatalf("not delivered: %v", err)
				}
				if len(f.refused) > 0 {
					t.Fatalf("Slack refused %d messages: %v", len(f.refused), f.refused)
				}
				calls := f.got()
				msgs := accepted(t, calls)
				if len(msgs) < 2 {
					t.Fatalf("%d messages for %d integrations, want a summary and details", len(msgs), n)
				}
				top := msgs[0]
				if ev.Kind != notifiers.LeakAlert {
					for _, want := range []string{"1000 integrations", "800 failing", "100 pending", "100 current"} {
						if !strings.Contains(top, want) {
							t.Errorf("the first message does not say %q:\n%.2000s", want, top)
						}
					}
				} else if !strings.Contains(top, "1000 integrations") || !strings.Contains(top, "1000 waiting") {
					t.Errorf("the leak alert does not count what breaks:\n%.2000s", top)
				}
				if !strings.Contains(top, "*site-0002-env*") {
					t.Errorf("the first message does not name the first integration not current")
				}
				if ev.Integrations[2].State.NeedsAction() && !strings.Contains(top, "<@U0000002>") {
					t.Errorf("the first message does not name the first owner who must act")
				}
				if ev.Urgent && !strings.HasPrefix(calls[0].form.Get("text")+fmt.Sprint(calls[0].json["text"]), "<!channel>") {
					t.Errorf("the urgent alert does not start with <!channel>")
				}
				all := strings.Join(msgs, "\n")
				for _, in := range ev.Integrations {
					if in.State == state.Current {
						continue
					}
					if !strings.Contains(all, "*"+in.ID+"*") {
						t.Fatalf("%s (%s) is in no message", in.ID, in.State)
					}
					if in.State.NeedsAction() && !strings.Contains(all, in.Owner) {
						t.Fatalf("owner %s of %s is mentioned in no message", in.Owner, in.ID)
					}
				}
				for i, c := range calls {
					if mode == "bot" && i > 0 && c.form.Get("thread_ts") != "1700000000.000101" {
						t.Errorf("detail %d is not a reply in the first message's thread (thread_ts %q)", i, c.form.Get("thread_ts"))
					}
				}
				first := calls[0].form.Get("blocks")
				if mode == "webhook" {
					b, _ := json.Marshal(calls[0].json["blocks"])
					first = string(b)
				}
				for _, c := range calls {
					noLeak(t, c.method+" body", c.body)
				}
				noLeak(t, "logs", tn.logs.String())
				t.Logf("%s %s: %d messages, the first with %d characters of block text", mode, ev.Kind, len(calls), slacktest.BlockText(first))
			})
		}
	}
}

// TestRenderedMessagesPassSlacksChecks renders events of every size and
// shape and checks each message, main and details, as Slack would.
func TestRenderedMessagesPassSlacksChecks(t *testing.T) {
	long := strings.Repeat("é<&> ", 2000)
	var evs []notifiers.Event
	for _, n := range []int{0, 1, 3, 40, 60, 90, 200, 1000, 3000} {
		for _, ev := range bigEvents(n) {
			evs = append(evs, ev)
			ev.Title, ev.Text, ev.Instructions, ev.Owner = long, long, long, long
			evs = append(evs, ev)
		}
	}
	for _, ev := range evs {
		for _, update := range []bool{false, true} {
			p := render(ev, update)
			for i, m := range append([]message{p.main}, p.details...) {
				b, err := json.Marshal(m.blocks)
				if err != nil {
					t.Fatal(err)
				}
				if code := slacktest.Check(m.text, string(b)); code != "" {
					t.Fatalf("%s with %d integrations (update %v): message %d refused: %s (%d blocks, %d characters of block text, text %d)",
						ev.Kind, len(ev.Integrations), update, i, code, len(m.blocks), slacktest.BlockText(string(b)), len(m.text))
				}
				if i > 0 && update {
					t.Fatalf("an update has details")
				}
			}
			if len(p.details) > maxDetails {
				t.Fatalf("%d detail messages", len(p.details))
			}
		}
	}
}

// TestRefusedMessageIsPostedAgainAsText: when Slack still refuses a
// message as too long or its blocks as invalid, it is posted again as a
// shorter plain-text message, so the alert arrives.
func TestRefusedMessageIsPostedAgainAsText(t *testing.T) {
	refuse := func(code string) reply { return reply{status: 200, body: `{"ok":false,"error":"` + code + `"}`} }
	ev := notifiers.Event{Kind: notifiers.LeakAlert, Urgent: true, KeyID: "k", Title: "Key k leaked", Owner: "<@U012ABCDEF>",
		Integrations: []notifiers.Integration{{ID: "ci", Type: "github", State: state.Failing, Owner: "<@U0CI>"}}}
	for _, code := range []string{"msg_blocks_too_long", "invalid_blocks", "msg_too_long"} {
		t.Run(code, func(t *testing.T) {
			f := newFake(t)
			f.then("chat.postMessage", refuse(code))
			n := newBot(t, f, 3)
			if err := n.Notify(context.Background(), ev); err != nil {
				t.Fatalf("not delivered: %v", err)
			}
			calls := f.got()
			if len(calls) != 2 {
				t.Fatalf("%d calls, want the message and its plain-text form", len(calls))
			}
			again := calls[1]
			if again.form.Get("blocks") != "" {
				t.Errorf("sent again with blocks")
			}
			txt := again.form.Get("text")
			if !strings.HasPrefix(txt, "<!channel>") || !strings.Contains(txt, "Key k leaked") || !strings.Contains(txt, "<@U0CI>") {
				t.Errorf("plain-text form lost the alert:\n%s", txt)
			}
			if len(txt) >= len(calls[0].form.Get("text"))+len(calls[0].form.Get("blocks")) {
				t.Errorf("the second message is not shorter")
			}
			if !strings.Contains(n.logs.String(), code) {
				t.Errorf("the refusal was not logged:\n%s", n.logs.String())
			}
			noLeak(t, "logs", n.logs.String())
		})
	}
	// A plain-text form longer than the shortest one.
	long := ev
	long.Text = strings.Repeat("The leaked key is still in use somewhere. ", 40)
	t.Run("plain text refused too", func(t *testing.T) {
		f := newFake(t)
		f.then("chat.postMessage", refuse("msg_blocks_too_long"), refuse("msg_too_long"))
		n := newBot(t, f, 0)
		if err := n.Notify(context.Background(), long); err != nil {
			t.Fatalf("not delivered: %v", err)
		}
		calls := f.got()
		if len(calls) != 3 || len([]rune(calls[2].form.Get("text"))) > 1000 || len(calls[2].form.Get("text")) >= len(calls[1].form.Get("text")) {
			t.Fatalf("%d calls; want a third, shorter one", len(calls))
		}
	})
	t.Run("refused every time", func(t *testing.T) {
		f := newFake(t)
		f.then("chat.postMessage", refuse("invalid_blocks"), refuse("msg_too_long"), refuse("msg_too_long"), refuse("msg_too_long"))
		n := newBot(t, f, 0)
		err := n.Notify(context.Background(), long)
		if !errors.Is(err, failure.ErrInvalid) {
			t.Fatalf("err = %v, want invalid", err)
		}
		if len(f.got()) != 3 {
			t.Errorf("%d calls, want 3", len(f.got()))
		}
	})
	t.Run("a short plain text is not sent twice", func(t *testing.T) {
		f := newFake(t)
		f.then("chat.postMessage", refuse("invalid_blocks"), refuse("msg_too_long"), refuse("msg_too_long"))
		n := newBot(t, f, 0)
		err := n.Notify(context.Background(), ev)
		if !errors.Is(err, failure.ErrInvalid) {
			t.Fatalf("err = %v, want invalid", err)
		}
		if calls := f.got(); len(calls) != 2 || calls[1].form.Get("blocks") != "" {
			t.Errorf("%d calls, want the message and its plain-text form, once", len(calls))
		}
	})
	t.Run("other errors are not retried as text", func(t *testing.T) {
		f := newFake(t)
		f.then("chat.postMessage", refuse("channel_not_found"))
		n := newBot(t, f, 0)
		if err := n.Notify(context.Background(), ev); !errors.Is(err, failure.ErrNotFound) || len(f.got()) != 1 {
			t.Fatalf("err = %v after %d calls", err, len(f.got()))
		}
	})
	t.Run("update", func(t *testing.T) {
		f := newFake(t)
		f.then("chat.update", refuse("msg_blocks_too_long"))
		n := newBot(t, f, 0)
		for _, ev := range []notifiers.Event{started("r1"), finished("r1")} {
			if err := n.Notify(context.Background(), ev); err != nil {
				t.Fatal(err)
			}
		}
		calls := f.got()
		last := calls[len(calls)-1]
		if b := last.form.Get("blocks"); last.method != "chat.update" || (b != "" && b != "[]") || !strings.Contains(last.form.Get("text"), "1 failing") {
			t.Fatalf("the top message was not edited again as text: %+v", last)
		}
	})
	t.Run("webhook", func(t *testing.T) {
		f := newFake(t)
		f.then("webhook", reply{status: 400, body: "invalid_blocks"})
		n := newHook(t, f, 0)
		if err := n.Notify(context.Background(), ev); err != nil {
			t.Fatalf("not delivered: %v", err)
		}
		calls := f.got()
		if len(calls) != 2 || calls[1].json["blocks"] != nil {
			t.Fatalf("%d calls; the second must have no blocks: %v", len(calls), calls[len(calls)-1].json)
		}
		if txt, _ := calls[1].json["text"].(string); !strings.Contains(txt, "Key k leaked") {
			t.Errorf("plain-text form: %q", txt)
		}
	})
}

// TestRetryAfterIsCapped: Slack asking to wait ten minutes is not waited
// for: the message is given up on at once, and that is logged; waits are
// at most 30s for one message and a minute in all.
func TestRetryAfterIsCapped(t *testing.T) {
	limited := func(after string) reply {
		return reply{status: 429, retryAfter: after, body: `{"ok":false,"error":"ratelimited"}`}
	}
	t.Run("Retry-After 600", func(t *testing.T) {
		f := newFake(t)
		f.then("chat.postMessage", limited("600"), limited("600"))
		n := newBot(t, f, 3)
		start := time.Now()
		err := n.Notify(context.Background(), finished("r1"))
		if !errors.Is(err, failure.ErrTransient) {
			t.Fatalf("err = %v, want a transient failure", err)
		}
		if w := n.waits.get(); len(w) != 0 {
			t.Errorf("waited %v", w)
		}
		if len(f.got()) != 1 {
			t.Errorf("%d calls, want 1", len(f.got()))
		}
		if !strings.Contains(n.logs.String(), "giving up") || !strings.Contains(err.Error(), "10m0s") {
			t.Errorf("giving up is not logged, or the error does not say why: %v\n%s", err, n.logs.String())
		}
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("took %v", took)
		}
		noLeak(t, "error", err.Error())
		noLeak(t, "logs", n.logs.String())
	})
	t.Run("real clock", func(t *testing.T) {
		f := newFake(t)
		f.then("chat.postMessage", limited("600"))
		n, err := New(Options{Token: testToken, Channel: testChannel, APIURL: f.apiURL(), Retries: 3})
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if err := n.Notify(context.Background(), finished("r1")); err == nil {
			t.Fatal("delivered")
		}
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("took %v", took)
		}
	})
	t.Run("30s a message", func(t *testing.T) {
		f := newFake(t)
		f.then("chat.postMessage", limited("20"), limited("20"))
		n := newBot(t, f, 3)
		if err := n.Notify(context.Background(), finished("r1")); err == nil {
			t.Fatal("delivered")
		}
		if w := n.waits.get(); fmt.Sprint(w) != "[20s]" {
			t.Errorf("waits = %v, want [20s]", w)
		}
	})
	t.Run("a minute in all", func(t *testing.T) {
		f := newFake(t)
		for range 5 {
			f.then("chat.postMessage", limited("25"))
		}
		n := newBot(t, f, 3)
		for i := range 4 {
			n.Notify(context.Background(), notifiers.Event{Kind: notifiers.Reminder, KeyID: "k", Title: fmt.Sprint("due ", i)})
		}
		if w := n.waits.get(); fmt.Sprint(w) != "[25s 25s]" {
			t.Errorf("waits = %v, want [25s 25s]: 75s would pass a minute", w)
		}
		if got := len(f.got()); got != 6 {
			t.Errorf("%d calls, want 6", got)
		}
	})
}

// packedSize, which decides what fits before anything is built, says
// what builder.lines then builds, for lines short and long.
func TestPackedSizeIsWhatLinesBuild(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		lines := make([]string, 1+rng.IntN(300))
		for i := range lines {
			n := 1 + rng.IntN(120)
			if rng.IntN(20) == 0 {
				n = maxSection - 50 + rng.IntN(100) // near and past a section
			}
			lines[i] = strings.Repeat("é", n)
		}
		var b builder
		b.lines(lines)
		chars, secs := packedSize(lines)
		if secs != len(b.blocks) || chars != b.chars {
			t.Fatalf("%d lines: packedSize says %d characters in %d sections; lines built %d in %d", len(lines), chars, secs, b.chars, len(b.blocks))
		}
	}
}
