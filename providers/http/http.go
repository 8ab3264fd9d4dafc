// Package http checks a key against any HTTP endpoint that tells a working
// key from a refused one: a key's verify_url, header and valid_status.
//
// It sends GET verify_url with the key as the value of the named header
// and reads the status only:
//
//   - valid_status (default 200): valid;
//   - 401 or 403: invalid (the provider refused the key);
//   - 429: Retry-After is honoured within ctx, a bounded number of times,
//     then unknown;
//   - 408, 5xx, timeouts and network errors: unknown;
//   - anything else (3xx, 400, 404, another 2xx, …): unknown. An answer
//     that is neither the agreed success nor a refusal does not prove the
//     key dead: calling it invalid could tell a leak response that a
//     leaked key is dead when it is not.
//
// Redirects are not followed (the header would go with them). No response
// body is read: bodies can echo the key.
package http

import (
	"context"
	"fmt"
	"log/slog"
	nethttp "net/http"
	"net/url"
	"strings"

	"github.com/rekey-dev/rekey/providers"
	"github.com/rekey-dev/rekey/providers/internal/httpcheck"
	"github.com/rekey-dev/rekey/secret"
)

// Options configure a Checker from a key's provider fields.
type Options struct {
	URL         string // verify_url: absolute http or https URL
	Header      string // header: name of the header that carries the key
	ValidStatus int    // valid_status: 0 means 200

	// HTTPClient sends the request (a copy that follows no redirect is
	// used); nil means a client with a 30s timeout.
	HTTPClient *nethttp.Client
	// Logger gets debug lines naming the key by fingerprint; nil discards.
	Logger *slog.Logger
	// MaxRetries bounds retries after a 429: 0 means 3, negative means none.
	MaxRetries int
}

// Checker checks keys against one verify URL.
type Checker struct {
	probe httpcheck.Probe
	valid int
	who   string
}

var _ providers.Checker = (*Checker)(nil)

// New returns a Checker, or an error naming the option that cannot work.
func New(opts Options) (*Checker, error) {
	u, err := url.Parse(opts.URL)
	switch {
	case opts.URL == "":
		return nil, fmt.Errorf("http provider: verify_url is required")
	case err != nil:
		return nil, fmt.Errorf("http provider: verify_url %q is not a URL", opts.URL)
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("http provider: verify_url %q: want an http or https URL", opts.URL)
	case u.Host == "":
		return nil, fmt.Errorf("http provider: verify_url %q has no host", opts.URL)
	case u.User != nil:
		return nil, fmt.Errorf("http provider: verify_url must not hold user information")
	}
	if !validHeaderName(opts.Header) {
		return nil, fmt.Errorf("http provider: header %q is not a header name", opts.Header)
	}
	valid := opts.ValidStatus
	if valid == 0 {
		valid = nethttp.StatusOK
	}
	switch {
	case valid < 100 || valid > 599:
		return nil, fmt.Errorf("http provider: valid_status %d is not an HTTP status", valid)
	case valid == nethttp.StatusUnauthorized || valid == nethttp.StatusForbidden || valid == nethttp.StatusTooManyRequests:
		return nil, fmt.Errorf("http provider: valid_status %d cannot mean a working key", valid)
	}
	c := &Checker{valid: valid, who: u.Host}
	c.probe = httpcheck.Probe{
		Client:     httpcheck.Client(opts.HTTPClient),
		Logger:     httpcheck.Logger(opts.Logger),
		MaxRetries: httpcheck.Retries(opts.MaxRetries),
		Provider:   "http",
		Who:        u.Host,
		URL:        opts.URL,
		Header:     opts.Header,
		Judge:      c.judge,
	}
	return c, nil
}

// Check asks the verify URL about key.
func (c *Checker) Check(ctx context.Context, key secret.Key) providers.Result {
	if key.IsZero() {
		return providers.Result{Validity: providers.Invalid, Reason: "the key is empty"}
	}
	return c.probe.Run(ctx, key)
}

func (c *Checker) judge(resp *nethttp.Response) providers.Result {
	code := resp.StatusCode
	var v providers.Validity
	var why string
	switch {
	case code == c.valid:
		v, why = providers.Valid, fmt.Sprintf("%s answered %d to the verify request", c.who, code)
	case code == nethttp.StatusUnauthorized || code == nethttp.StatusForbidden:
		v, why = providers.Invalid, fmt.Sprintf("%s refused the key (%d)", c.who, code)
	case code >= 500:
		v, why = providers.Unknown, fmt.Sprintf("%s answered %d (server error)", c.who, code)
	case code == nethttp.StatusRequestTimeout:
		v, why = providers.Unknown, fmt.Sprintf("%s answered 408 (request timeout)", c.who)
	case code >= 300 && code < 400:
		v, why = providers.Unknown, fmt.Sprintf("%s answered %d (a redirect, not followed)", c.who, code)
	default:
		v, why = providers.Unknown, fmt.Sprintf("%s answered %d, expected %d", c.who, code, c.valid)
	}
	return providers.Result{Validity: v, Reason: why}
}

// validHeaderName reports whether s is an RFC 9110 token.
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r > 0x7e || r <= ' ' || strings.ContainsRune(`"(),/:;<=>?@[\]{}`, r) {
			return false
		}
	}
	return true
}
