package slack

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/rekey-dev/rekey/failure"
	slackapi "github.com/slack-go/slack"
)

// Slack Web API error codes (https://docs.slack.dev/reference/methods/chat.postMessage#errors)
// that no retry can fix, by class. Codes not listed are invalid requests,
// except those in transientCodes.
var (
	unauthorizedCodes = map[string]bool{
		"not_authed": true, "invalid_auth": true, "account_inactive": true,
		"token_revoked": true, "token_expired": true, "no_permission": true,
		"missing_scope": true, "not_allowed_token_type": true, "not_in_channel": true,
		"restricted_action": true, "ekm_access_denied": true, "team_access_not_granted": true,
		"cant_update_message": true, "edit_window_closed": true,
	}
	notFoundCodes = map[string]bool{
		"channel_not_found": true, "message_not_found": true, "thread_not_found": true,
	}
	transientCodes = map[string]bool{
		"ratelimited": true, "internal_error": true, "fatal_error": true,
		"service_unavailable": true, "request_timeout": true,
	}
)

// classify turns an error from slack-go into one rekey can return: a
// message that holds no secret (secrets lists the token or webhook URL to
// strip, in case a lower layer put one in) and a class from integrations
// (ErrTransient, ErrUnauthorized, ErrNotFound, ErrInvalid), or a
// *failure.RetryAfterError for a 429 that says how long to wait.
// The slack-go error itself is not kept: *url.Error carries the URL, and
// for a webhook the URL is the secret.
func classify(what string, err error, secrets ...string) error {
	desc, class := describe(err)
	desc = redact(desc, secrets...)
	out := fmt.Errorf("slack: %s: %s: %w", what, desc, class)
	var rl *slackapi.RateLimitedError
	if errors.As(err, &rl) {
		return &failure.RetryAfterError{After: rl.RetryAfter, Err: out}
	}
	if tooBig(err) {
		return &refusedError{out}
	}
	return out
}

// refusedCodes are the Web API's answers to a message too long or with
// blocks it will not take; a shorter plain-text message gets through.
var refusedCodes = map[string]bool{
	"msg_too_long": true, "msg_blocks_too_long": true,
	"invalid_blocks": true, "invalid_blocks_format": true,
}

// refusedError is Slack refusing a message for its size or its blocks.
type refusedError struct{ error }

func (e *refusedError) Unwrap() error { return e.error }

// tooBig reports whether Slack refused the message for its size or its
// blocks: one of refusedCodes from the Web API, or a 400 from a webhook
// (which answers invalid_blocks, msg_too_long or invalid_payload in a
// plain-text body that slack-go does not keep).
func tooBig(err error) bool {
	var (
		api  slackapi.SlackErrorResponse
		code slackapi.StatusCodeError
	)
	switch {
	case errors.As(err, &api):
		return refusedCodes[api.Err]
	case errors.As(err, &code):
		return code.Code == http.StatusBadRequest
	}
	return false
}

// refused reports whether err is Slack refusing a message for its size or
// its blocks.
func refused(err error) bool {
	var r *refusedError
	return errors.As(err, &r)
}

// describe says what went wrong, in words built from the error's parts
// rather than its whole text, and which class it belongs to.
func describe(err error) (string, error) {
	var (
		rl   *slackapi.RateLimitedError
		api  slackapi.SlackErrorResponse
		code slackapi.StatusCodeError
		ue   *url.Error
	)
	switch {
	case errors.Is(err, context.Canceled):
		return "cancelled", context.Canceled
	case errors.As(err, &rl):
		return "rate limited", failure.ErrTransient
	case errors.As(err, &api):
		switch {
		case unauthorizedCodes[api.Err]:
			return api.Err, failure.ErrUnauthorized
		case notFoundCodes[api.Err]:
			return api.Err, failure.ErrNotFound
		case transientCodes[api.Err]:
			return api.Err, failure.ErrTransient
		}
		return api.Err, failure.ErrInvalid
	case errors.As(err, &code):
		class := failure.ClassifyStatus(code.Code)
		if class == nil {
			class = failure.ErrTransient
		}
		return fmt.Sprintf("status %d", code.Code), class
	case errors.As(err, &ue):
		// The URL is left out: the inner error names the host and port
		// where it matters, and a webhook's path is its secret.
		if ue.Timeout() || errors.Is(err, context.DeadlineExceeded) {
			return "timed out: " + ue.Err.Error(), failure.ErrTransient
		}
		return ue.Op + ": " + ue.Err.Error(), failure.ErrTransient
	case errors.Is(err, context.DeadlineExceeded):
		return "timed out", failure.ErrTransient
	}
	// A reply that was not JSON, a connection that broke mid-way: worth
	// another try. The text comes from encoding/json or net, not Slack.
	return err.Error(), failure.ErrTransient
}

// redact replaces each secret, and for URLs their path, in s.
func redact(s string, secrets ...string) string {
	for _, sec := range secrets {
		if sec == "" {
			continue
		}
		s = strings.ReplaceAll(s, sec, "[redacted]")
		if u, err := url.Parse(sec); err == nil && u.Host != "" && len(u.EscapedPath()) > 1 {
			s = strings.ReplaceAll(s, u.EscapedPath(), "/[redacted]")
			s = strings.ReplaceAll(s, u.Path, "/[redacted]")
		}
	}
	return s
}

// retryable reports whether err is worth another attempt.
func retryable(err error) bool {
	return errors.Is(err, failure.ErrTransient)
}

// sleep waits for d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
