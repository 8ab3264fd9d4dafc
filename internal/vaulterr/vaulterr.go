// Package vaulterr is rekey's one classifier of errors from the Vault
// client, shared by rekey's own store (vaultstore) and the vault
// integration type, so that both call the same answer by the same class
// and say the same about it. It imports the Vault client, failure and
// neterr, and nothing else of rekey's.
//
// What an error keeps:
//
//   - the status of Vault's answer, and Vault's own messages (the "errors"
//     of its JSON answer) when the client parsed them as Vault's
//     (ResponseError.RawError false), cut to 300 bytes on one line. A body
//     that is not Vault's JSON (a proxy's error page, which may quote the
//     request, token and key included) is never kept. Vault's messages hold
//     no secret value; a proxy that imitates Vault's JSON could still put
//     one there, so every text rekey prints, posts or records also passes
//     the redactor of package secret, which knows every secret rekey holds;
//   - for a request that got no answer, a fixed description (package
//     neterr), never the transport's text, which can quote the answer;
//   - for an answer the client could not decode, a fixed description,
//     never the decoder's text, which can quote the answer.
package vaulterr

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"unicode"
	"unicode/utf8"

	vault "github.com/hashicorp/vault/api"

	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/internal/neterr"
)

// MaxMessage bounds how much of Vault's own messages an error keeps.
const MaxMessage = 300

// notVault stands for a body that is not Vault's JSON.
const notVault = "an answer that is not Vault's"

// Classify turns an error from the Vault client into a classified one
// prefixed with where (which names the operation and path, never a value):
//
//   - ctx ended, or the request was cancelled or timed out: where and the
//     context's error (a timeout is transient);
//   - vault.ErrSecretNotFound, 404: failure.ErrNotFound;
//   - 400 saying check-and-set did not match: failure.ErrConflict;
//   - 401, 403: failure.ErrUnauthorized;
//   - 412 (a performance standby behind), 429, 5xx (sealed, no leader):
//     failure.ErrTransient;
//   - other statuses as failure.ClassifyStatus, other 4xx failure.ErrInvalid;
//   - no answer, or one the client could not read: failure.ErrTransient
//     (a refused or malformed redirect, or a certificate that does not
//     verify, failure.ErrInvalid).
func Classify(ctx context.Context, where string, err error) error {
	return classify(ctx, where, "", err)
}

// ClassifyToken is Classify for a request made with the token in
// $tokenEnv: a refusal (401, 403) says which variable to check.
func ClassifyToken(ctx context.Context, where, tokenEnv string, err error) error {
	return classify(ctx, where, tokenEnv, err)
}

func classify(ctx context.Context, where, tokenEnv string, err error) error {
	if err == nil {
		return nil
	}
	if ctx != nil {
		if cerr := ctx.Err(); cerr != nil {
			return fmt.Errorf("%s: %w", where, cerr)
		}
	}
	if errors.Is(err, vault.ErrSecretNotFound) {
		return fmt.Errorf("%s: %w", where, failure.ErrNotFound)
	}
	var re *vault.ResponseError
	if errors.As(err, &re) {
		return response(where, tokenEnv, re)
	}
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("%s: %w", where, context.Canceled)
	}
	if neterr.IsTransport(err) || errors.Is(err, context.DeadlineExceeded) {
		return neterr.Wrap(context.Background(), where, err)
	}
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	if errors.As(err, &syntax) || errors.As(err, &typ) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return fmt.Errorf("%s: the answer is not the JSON Vault sends: %w", where, failure.ErrTransient)
	}
	if strings.Contains(err.Error(), "non-printable characters") {
		// The client's own check of the token, before anything is sent.
		return fmt.Errorf("%s: the Vault token holds non-printable characters: %w", where, failure.ErrInvalid)
	}
	// Anything else is the client refusing an answer whose shape it did
	// not expect; its text can quote that answer.
	return fmt.Errorf("%s: an answer the Vault client could not use: %w", where, failure.ErrTransient)
}

func response(where, tokenEnv string, re *vault.ResponseError) error {
	code := re.StatusCode
	msg := Message(re)
	detail := fmt.Sprintf("status %d", code)
	if msg != "" {
		detail += ": " + msg
	}
	switch {
	case code == http.StatusBadRequest && mentions(re, "check-and-set parameter did not match"):
		return fmt.Errorf("%s: check-and-set did not match the current version: %w", where, failure.ErrConflict)
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		if tokenEnv != "" {
			detail += fmt.Sprintf(" (is the token in $%s valid, and does its policy allow this path?)", tokenEnv)
		}
		return fmt.Errorf("%s: %s: %w", where, detail, failure.ErrUnauthorized)
	case code == http.StatusNotFound:
		return fmt.Errorf("%s: %w", where, failure.ErrNotFound)
	case code == http.StatusPreconditionFailed, code == http.StatusTooManyRequests, code >= 500:
		return fmt.Errorf("%s: %s: %w", where, detail, failure.ErrTransient)
	}
	class := failure.ClassifyStatus(code)
	if class == nil {
		class = failure.ErrInvalid
	}
	return fmt.Errorf("%s: %s: %w", where, detail, class)
}

// Message is Vault's own messages in re on one line, cut to MaxMessage
// bytes: "" when Vault said nothing, and a fixed text when the body was
// not Vault's JSON (it is never repeated).
func Message(re *vault.ResponseError) string {
	if re.RawError {
		return notVault
	}
	var b strings.Builder
	for _, e := range re.Errors {
		if b.Len() > 0 {
			b.WriteString("; ")
		}
		b.WriteString(strings.Join(strings.FieldsFunc(e, func(r rune) bool {
			return unicode.IsSpace(r) || !unicode.IsPrint(r)
		}), " "))
	}
	return truncate(b.String(), MaxMessage)
}

func mentions(re *vault.ResponseError, s string) bool {
	if re.RawError {
		return false
	}
	for _, e := range re.Errors {
		if strings.Contains(e, s) {
			return true
		}
	}
	return false
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
