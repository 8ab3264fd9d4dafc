package slack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	slackapi "github.com/slack-go/slack"

	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/internal/neterr"
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
		// conversations.open (a direct message)
		"user_not_found": true, "user_not_visible": true, "user_disabled": true,
	}
	transientCodes = map[string]bool{
		"ratelimited": true, "internal_error": true, "fatal_error": true,
		"service_unavailable": true, "request_timeout": true,
	}
	// invalidCodes are the other codes chat.postMessage, chat.update and
	// auth.test document; any code outside these four lists is reported
	// without its text (an "error" field is a byte the peer chose).
	invalidCodes = map[string]bool{
		"invalid_blocks": true, "invalid_blocks_format": true, "msg_too_long": true, "msg_blocks_too_long": true,
		"no_text": true, "too_many_attachments": true, "invalid_arguments": true, "invalid_form_data": true,
		"invalid_post_type": true, "invalid_charset": true, "invalid_json": true, "json_not_object": true,
		"missing_post_type": true, "is_archived": true, "channel_is_archived": true, "duplicate_channel_not_found": true,
		"duplicate_message_not_found": true, "too_many_contact_cards": true, "message_limit_exceeded": true,
		"slack_connect_file_link_sharing_blocked": true, "invalid_metadata_format": true, "invalid_metadata_schema": true,
		"metadata_too_large": true, "method_deprecated": true, "deprecated_endpoint": true, "unknown_method": true,
		"upgrade_required": true, "two_factor_setup_required": true, "invalid_arg_name": true, "invalid_array_arg": true,
		"block_mismatch": true, "accesslimited": true, "team_added_to_org": true, "cant_broadcast_message": true,
		"as_user_not_supported": true, "messages_tab_disabled": true, "restricted_too_many": true,
		// conversations.open (a direct message)
		"users_list_not_supplied": true, "not_enough_users": true, "too_many_users": true, "cannot_dm_bot": true,
		"method_not_supported_for_channel_type": true,
	}
)

// classify turns an error from slack-go into one rekey can return: a
// message built by describe, from no byte the peer chose (secrets lists
// the token or webhook URL to strip all the same, in case one is in a
// description) and a class from integrations
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

// describe says what went wrong, in words of rekey's own or from Slack's
// documented vocabulary, and which class it belongs to. No text the peer
// chose is kept: net/http's errors can quote the answer or a redirect's
// Location (package neterr), slack-go's can quote a Retry-After header,
// and an "error" field that is not one of Slack's codes is not repeated.
func describe(err error) (string, error) {
	var (
		rl   *slackapi.RateLimitedError
		api  slackapi.SlackErrorResponse
		code slackapi.StatusCodeError
		num  *strconv.NumError
		syn  *json.SyntaxError
		typ  *json.UnmarshalTypeError
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
		case invalidCodes[api.Err]:
			return api.Err, failure.ErrInvalid
		}
		return "an error code rekey does not know", failure.ErrInvalid
	case errors.As(err, &code):
		class := failure.ClassifyStatus(code.Code)
		if class == nil {
			class = failure.ErrTransient
		}
		return fmt.Sprintf("status %d", code.Code), class
	case errors.As(err, &num):
		// slack-go parses a 429's Retry-After and returns strconv's error,
		// which quotes the header.
		return "status 429 with a Retry-After that is not a number of seconds", failure.ErrTransient
	case neterr.IsTransport(err):
		return neterr.Describe(err)
	case errors.Is(err, context.DeadlineExceeded):
		return "timed out", failure.ErrTransient
	case errors.As(err, &syn), errors.As(err, &typ), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		// A reply that was not JSON: a proxy's error page, a connection
		// that broke mid-way. encoding/json's text can quote the reply.
		return "an answer that is not Slack's JSON", failure.ErrTransient
	}
	return "request failed", failure.ErrTransient
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
