package slack

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	slackapi "github.com/slack-go/slack"

	"github.com/rekey-dev/rekey/failure"
)

// DirectMessage is a message for one person alone (a hand-off code): a
// header, mrkdwn sections, a line of small print, and the plain-text
// fallback notifications show.
type DirectMessage struct {
	Title    string
	Sections []string
	Context  string
	Fallback string
}

func (m DirectMessage) blocks() []slackapi.Block {
	var blocks []slackapi.Block
	if m.Title != "" {
		blocks = append(blocks, slackapi.NewHeaderBlock(
			slackapi.NewTextBlockObject(slackapi.PlainTextType, truncate(m.Title, maxHeader), false, false)))
	}
	for _, s := range m.Sections {
		blocks = append(blocks, slackapi.NewSectionBlock(
			slackapi.NewTextBlockObject(slackapi.MarkdownType, truncate(s, maxSection), false, false), nil, nil))
	}
	if m.Context != "" {
		blocks = append(blocks, slackapi.NewContextBlock("",
			slackapi.NewTextBlockObject(slackapi.MarkdownType, truncate(m.Context, maxSection), false, false)))
	}
	return blocks
}

// SendDirect sends m to the Slack user userID (U… or W…) alone:
// conversations.open with users=userID (the bot needs im:write), then
// chat.postMessage to the conversation it opened (chat:write), with link
// and media unfurling off, so Slack fetches no link the message holds.
// Only a bot token can; with a webhook it is an error. Errors never hold
// the message.
func (n *Notifier) SendDirect(ctx context.Context, userID string, m DirectMessage) error {
	if n.api == nil {
		return fmt.Errorf("slack: direct message to %s: an incoming webhook cannot send one (a bot token can): %w", userID, failure.ErrInvalid)
	}
	var channel string
	err := n.retry(ctx, "open a direct message with "+userID, func(ctx context.Context) error {
		ch, _, _, err := n.api.OpenConversationContext(ctx, &slackapi.OpenConversationParameters{Users: []string{userID}})
		if err == nil && (ch == nil || ch.ID == "") {
			return slackapi.SlackErrorResponse{Err: "channel_not_found"}
		}
		if err == nil {
			channel = ch.ID
		}
		return err
	})
	if err != nil {
		return err
	}
	return n.retry(ctx, "direct message to "+userID, func(ctx context.Context) error {
		_, _, err := n.api.PostMessageContext(ctx, channel,
			slackapi.MsgOptionText(m.Fallback, false),
			slackapi.MsgOptionBlocks(m.blocks()...),
			slackapi.MsgOptionDisableLinkUnfurl(),
			slackapi.MsgOptionDisableMediaUnfurl(),
		)
		return err
	})
}

// Scopes returns the OAuth scopes of the bot token, as Slack lists them in
// the X-OAuth-Scopes header of its answer to auth.test. said is false when
// the answer had no such header (a proxy may drop it), so nothing can be
// told from it. With a webhook there is no token: said is false.
func (n *Notifier) Scopes(ctx context.Context) (scopes []string, said bool, err error) {
	if n.api == nil {
		return nil, false, nil
	}
	err = n.retry(ctx, "auth.test", func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.apiURL+"auth.test", strings.NewReader(url.Values{}.Encode()))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := bearerClient{c: n.http, token: n.secrets[0]}.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		switch {
		case resp.StatusCode == http.StatusTooManyRequests:
			return &slackapi.RateLimitedError{RetryAfter: failure.ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now())}
		case resp.StatusCode != http.StatusOK:
			return slackapi.StatusCodeError{Code: resp.StatusCode, Status: http.StatusText(resp.StatusCode)}
		}
		var answer struct {
			OK    bool   `json:"ok"`
			Error string `json:"error"`
		}
		if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&answer); err != nil {
			return err
		}
		if !answer.OK {
			return slackapi.SlackErrorResponse{Err: answer.Error}
		}
		h, ok := resp.Header[http.CanonicalHeaderKey("X-OAuth-Scopes")]
		said = ok
		scopes = nil
		for _, v := range h {
			for _, s := range strings.Split(v, ",") {
				if s = strings.TrimSpace(s); s != "" {
					scopes = append(scopes, s)
				}
			}
		}
		return nil
	})
	return scopes, said, err
}
