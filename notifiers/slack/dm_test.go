package slack

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/rekey-dev/rekey/failure"
)

const dmSecret = "hvs.CAESIHandOffCodeForTheOwnerOnly0123456789"

func handoffMessage() DirectMessage {
	return DirectMessage{
		Title:    "Your one-time hand-off code for callhub",
		Sections: []string{"*Or in a terminal:* run `rekey reveal` and paste this code:\n```" + dmSecret + "```"},
		Context:  "It opens once.",
		Fallback: "Your one-time hand-off code for callhub is in this message.",
	}
}

// A direct message is conversations.open with the one user, then
// chat.postMessage to the conversation Slack opened, unfurling off; never
// the shared channel.
func TestSendDirect(t *testing.T) {
	f := newFake(t)
	n := newBot(t, f, 0)
	if err := n.SendDirect(context.Background(), "U0CALLHUB", handoffMessage()); err != nil {
		t.Fatal(err)
	}
	got := f.got()
	if len(got) != 2 || got[0].method != "conversations.open" || got[1].method != "chat.postMessage" {
		t.Fatalf("calls: %+v", got)
	}
	if u := got[0].form.Get("users"); u != "U0CALLHUB" {
		t.Fatalf("conversations.open users=%q", u)
	}
	post := got[1]
	if post.form.Get("channel") != "D0U0CALLHUB" || post.form.Get("channel") == testChannel {
		t.Fatalf("posted to %q, want the direct message's channel", post.form.Get("channel"))
	}
	if post.form.Get("unfurl_links") != "false" || post.form.Get("unfurl_media") != "false" {
		t.Fatalf("unfurling: links %q media %q", post.form.Get("unfurl_links"), post.form.Get("unfurl_media"))
	}
	if !strings.Contains(post.form.Get("blocks"), dmSecret) {
		t.Fatal("the code is not in the message's blocks")
	}
	if strings.Contains(post.form.Get("text"), dmSecret) {
		t.Fatal("the fallback text, which notifications show, holds the code")
	}
	for _, c := range got {
		if c.auth != "Bearer "+testToken || c.form.Has("token") {
			t.Fatalf("%s: token not (only) in the Authorization header", c.method)
		}
	}
}

// What Slack refuses is said in Slack's words, classified, without the
// message; only a bot token can send one.
func TestSendDirectRefused(t *testing.T) {
	ctx := context.Background()
	f := newFake(t)
	n := newBot(t, f, 3)
	err := n.SendDirect(ctx, "U0NOBODY", handoffMessage())
	if !errors.Is(err, failure.ErrNotFound) || !strings.Contains(err.Error(), "user_not_found") {
		t.Fatalf("unknown user: %v", err)
	}
	f.scopes = "chat:write"
	err = n.SendDirect(ctx, "U0CALLHUB", handoffMessage())
	if !errors.Is(err, failure.ErrUnauthorized) || !strings.Contains(err.Error(), "missing_scope") {
		t.Fatalf("no im:write: %v", err)
	}
	for _, c := range f.got() {
		if c.method == "chat.postMessage" {
			t.Fatalf("posted after conversations.open failed: %+v", c.form)
		}
	}
	if err != nil && strings.Contains(err.Error(), dmSecret) {
		t.Fatal("the error holds the message")
	}
	hook, err := New(Options{WebhookURL: f.webhook})
	if err != nil {
		t.Fatal(err)
	}
	if err := hook.SendDirect(ctx, "U0CALLHUB", handoffMessage()); !errors.Is(err, failure.ErrInvalid) {
		t.Fatalf("webhook: %v, want failure.ErrInvalid", err)
	}
}

// Scopes reads auth.test's X-OAuth-Scopes header; no header says nothing.
func TestScopes(t *testing.T) {
	ctx := context.Background()
	f := newFake(t)
	n := newBot(t, f, 0)
	scopes, said, err := n.Scopes(ctx)
	if err != nil || !said || !slices.Equal(scopes, []string{"chat:write", "im:write"}) {
		t.Fatalf("Scopes = %v, %v, %v", scopes, said, err)
	}
	f.scopes = "-"
	if scopes, said, err = n.Scopes(ctx); err != nil || said || scopes != nil {
		t.Fatalf("no header: %v, %v, %v", scopes, said, err)
	}
	f.then("auth.test", reply{status: 200, body: `{"ok":false,"error":"invalid_auth"}`})
	if _, _, err := n.Scopes(ctx); !errors.Is(err, failure.ErrUnauthorized) {
		t.Fatalf("invalid_auth: %v", err)
	}
	f.then("auth.test", reply{status: 429, retryAfter: "1", body: `{"ok":false,"error":"ratelimited"}`})
	if _, _, err := n.Scopes(ctx); !failure.IsTransient(err) {
		t.Fatalf("429 with no retries left: %v, want transient", err)
	}
	for _, c := range f.got() {
		if c.method != "auth.test" || c.auth != "Bearer "+testToken || strings.Contains(c.body, testToken) {
			t.Fatalf("call %s: auth %q, body %q", c.method, c.auth, c.body)
		}
	}
}
