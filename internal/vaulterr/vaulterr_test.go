package vaulterr

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"syscall"
	"testing"

	vault "github.com/hashicorp/vault/api"

	"github.com/rekey-dev/rekey/failure"
)

const peer = "peer-chose-this-0123456789"

func TestClassify(t *testing.T) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	var syntax *json.SyntaxError
	jsonErr := json.Unmarshal([]byte("<html>"+peer), &map[string]any{})
	if !errors.As(jsonErr, &syntax) {
		t.Fatal("no syntax error to test with")
	}
	cases := []struct {
		name  string
		ctx   context.Context
		err   error
		class error
		says  string
		not   string // must not appear
	}{
		{"cas", nil, &vault.ResponseError{StatusCode: 400, Errors: []string{"check-and-set parameter did not match the current version"}},
			failure.ErrConflict, "check-and-set did not match", ""},
		{"denied", nil, &vault.ResponseError{StatusCode: 403, Errors: []string{"1 error occurred:\n\t* permission denied\n\n"}},
			failure.ErrUnauthorized, "status 403: 1 error occurred: * permission denied", "\n"},
		{"sealed", nil, &vault.ResponseError{StatusCode: 503, Errors: []string{"Vault is sealed"}}, failure.ErrTransient, "status 503: Vault is sealed", ""},
		{"standby", nil, &vault.ResponseError{StatusCode: 412, Errors: []string{"required index state not present"}}, failure.ErrTransient, "status 412", ""},
		{"throttled", nil, &vault.ResponseError{StatusCode: 429}, failure.ErrTransient, "status 429", ""},
		{"missing", nil, &vault.ResponseError{StatusCode: 404}, failure.ErrNotFound, "not found", ""},
		{"secret not found", nil, fmt.Errorf("%w: at secret/data/x", vault.ErrSecretNotFound), failure.ErrNotFound, "not found", ""},
		{"bad request", nil, &vault.ResponseError{StatusCode: 400, Errors: []string{"no data provided"}}, failure.ErrInvalid, "status 400: no data provided", ""},
		{"not Vault's body", nil, &vault.ResponseError{StatusCode: 502, RawError: true, Errors: []string{"<html>" + peer}},
			failure.ErrTransient, "status 502: an answer that is not Vault's", peer},
		{"refused", nil, &url.Error{Op: "Put", URL: "http://" + peer, Err: &net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}},
			failure.ErrTransient, "connection refused", peer},
		{"malformed", nil, &url.Error{Op: "Put", URL: "http://x", Err: errors.New(`net/http: HTTP/1.x transport connection broken: malformed HTTP response "` + peer + `"`)},
			failure.ErrTransient, "malformed response", peer},
		{"a URL that does not parse", nil, &url.Error{Op: "parse", URL: "http://%zz/" + peer, Err: errors.New(`invalid URL escape "%zz"`)},
			failure.ErrTransient, "request failed", peer},
		{"not json", nil, fmt.Errorf("error parsing secret at x: %w", jsonErr), failure.ErrTransient, "not the JSON Vault sends", peer},
		{"unexpected shape", nil, fmt.Errorf("unexpected type for 'data' element: string (%#v)", peer), failure.ErrTransient, "could not use", peer},
		{"token", nil, errors.New("configured Vault token contains non-printable characters and cannot be used"), failure.ErrInvalid, "non-printable", ""},
		{"cancelled", cancelled, &url.Error{Op: "Put", URL: "http://" + peer, Err: errors.New("use of closed network connection")}, context.Canceled, "context canceled", peer},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx := c.ctx
			if ctx == nil {
				ctx = context.Background()
			}
			err := ClassifyToken(ctx, "vault: write secret/x", "APP_TOKEN", c.err)
			if !errors.Is(err, c.class) || !strings.Contains(err.Error(), c.says) || !strings.HasPrefix(err.Error(), "vault: write secret/x: ") {
				t.Errorf("Classify = %q; want %v saying %q", err, c.class, c.says)
			}
			if c.not != "" && strings.Contains(err.Error(), c.not) {
				t.Errorf("%q holds %q", err, c.not)
			}
		})
	}
	if err := ClassifyToken(context.Background(), "w", "APP_TOKEN", &vault.ResponseError{StatusCode: 403}); !strings.Contains(err.Error(), "$APP_TOKEN") {
		t.Errorf("a refusal does not name the token's variable: %v", err)
	}
	long := &vault.ResponseError{StatusCode: 500, Errors: []string{strings.Repeat("é", 400)}}
	if m := Message(long); len(m) > MaxMessage || !strings.HasSuffix(m, "…") {
		t.Errorf("Message is %d bytes: %q", len(m), m)
	}
}
