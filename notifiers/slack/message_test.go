package slack

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	slackapi "github.com/slack-go/slack"

	"github.com/rekey-dev/rekey/notifiers"
)

func TestEscape(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain", "plain"},
		{"a < b & c > d", "a &lt; b &amp; c &gt; d"},
		{"waiting for <@U0CALL>", "waiting for <@U0CALL>"},
		{"ask <@U0CALL|alice> or <!subteam^S0OPS>", "ask <@U0CALL|alice> or <!subteam^S0OPS>"},
		{"see <#C0123|ops>", "see <#C0123|ops>"},
		{"server said <!channel> <!here> <https://evil|click>", "server said &lt;!channel&gt; &lt;!here&gt; &lt;https://evil|click&gt;"},
		{"<@u0lower>", "&lt;@u0lower&gt;"},
	}
	for _, tt := range tests {
		if got := escape(tt.in); got != tt.want {
			t.Errorf("escape(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestMention(t *testing.T) {
	tests := []struct{ in, want string }{
		{"<@U012ABCDEF>", "<@U012ABCDEF>"},
		{" <@U01>, <@U02> ", "<@U01>, <@U02>"},
		{"<!subteam^S0OPS>", "<!subteam^S0OPS>"},
		{"alice <alice@example.org>", "alice &lt;alice@example.org&gt;"},
		{"ops team", "ops team"},
	}
	for _, tt := range tests {
		if got := mention(tt.in); got != tt.want {
			t.Errorf("mention(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestIntegrationLine(t *testing.T) {
	tests := []struct {
		in   notifiers.Integration
		want string
	}{
		{notifiers.Integration{ID: "site-env", Type: "file", State: "current", Owner: "<@U1>"},
			":white_check_mark: *site-env* (file): current"},
		{notifiers.Integration{ID: "ci", Type: "github", State: "failing", Reason: "status 401", Owner: "<@U1>"},
			":x: *ci* (github): failing — status 401 <@U1>"},
		{notifiers.Integration{ID: "callhub", Type: "manual", State: "pending", Reason: "waiting for <@U1>", Owner: "<@U1>"},
			":hourglass_flowing_sand: *callhub* (manual): pending — waiting for <@U1>"},
		{notifiers.Integration{ID: "wp", Type: "http", State: "stale", Previous: "current", Owner: "<@U2>"},
			":warning: *wp* (http): current → stale <@U2>"},
		{notifiers.Integration{ID: "x", State: "unknown", Reason: "could not read back: timeout", Owner: "<@U2>"},
			":grey_question: *x*: unknown — could not read back: timeout"},
		{notifiers.Integration{ID: "y"}, ":grey_question: *y*: unknown"},
	}
	for _, tt := range tests {
		if got := integrationLine(tt.in); got != tt.want {
			t.Errorf("integrationLine(%+v)\n got %q\nwant %q", tt.in, got, tt.want)
		}
	}
}

func TestRenderUpdateDropsChannelMention(t *testing.T) {
	ev := notifiers.Event{Kind: notifiers.RotationFinished, Urgent: true, Title: "done", Text: "detail"}
	if m := render(ev, false).main; !strings.HasPrefix(m.text, "<!channel> :rotating_light: done") {
		t.Errorf("post text = %q", m.text)
	}
	m := render(ev, true).main
	if !strings.HasPrefix(m.text, ":rotating_light: done") || strings.Contains(m.text, "<!channel>") {
		t.Errorf("update text = %q", m.text)
	}
	if b, _ := json.Marshal(m.blocks); strings.Contains(string(b), "channel") {
		t.Errorf("update blocks mention the channel: %s", b)
	}
}

func TestRenderNoTitle(t *testing.T) {
	m := render(notifiers.Event{Kind: notifiers.Reminder, KeyID: "k"}, false).main
	if !strings.HasPrefix(m.text, "reminder k") {
		t.Errorf("text = %q", m.text)
	}
}

// TestRenderLimits: a key with very many integrations stays within Slack's
// Block Kit limits, and the fallback keeps every owner who must act.
func TestRenderLimits(t *testing.T) {
	var ins []notifiers.Integration
	for i := range 2000 {
		in := notifiers.Integration{ID: fmt.Sprintf("integration-%04d", i), Type: "file", State: "current",
			Reason: strings.Repeat("fine ", 10)}
		if i%400 == 7 {
			in.State, in.Owner = "failing", fmt.Sprintf("<@U%04d>", i)
		}
		ins = append(ins, in)
	}
	ev := notifiers.Event{Kind: notifiers.AuditReport, KeyID: "k", Title: strings.Repeat("long title ", 30),
		Text: strings.Repeat("x", 5000), Integrations: ins}
	m := render(ev, false).main

	if len(m.blocks) > maxBlocks {
		t.Errorf("%d blocks, Slack takes %d", len(m.blocks), maxBlocks)
	}
	for i, b := range m.blocks {
		switch b := b.(type) {
		case *slackapi.HeaderBlock:
			if n := utf8.RuneCountInString(b.Text.Text); n > maxHeader {
				t.Errorf("header has %d characters", n)
			}
		case *slackapi.SectionBlock:
			if n := utf8.RuneCountInString(b.Text.Text); n > maxSection {
				t.Errorf("section %d has %d characters", i, n)
			}
		}
	}
	if n := utf8.RuneCountInString(m.text); n > maxFallback {
		t.Errorf("fallback has %d characters", n)
	}
	for i := 7; i < 2000; i += 400 {
		who := fmt.Sprintf("<@U%04d>", i)
		if !strings.Contains(m.text, who) {
			t.Errorf("fallback lost %s", who)
		}
	}
	if b, _ := json.Marshal(m.blocks); !strings.Contains(string(b), "2000 integrations:* 5 failing, 1995 current") {
		t.Errorf("blocks do not count the integrations in each state")
	}
}
