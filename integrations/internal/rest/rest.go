// Package rest is what the hosted-platform integration types (heroku,
// render, netlify, vercel, gitlab, kubernetes) share: a JSON client for one
// platform's REST API that takes its token from the environment, classifies
// every failure once from status and headers (never from a response body,
// which may echo the key), turns a rate limit into the wait the platform
// asks for, and retries a write that lost a race on a fresh read.
package rest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/integrations/internal/httpx"
)

// MaxAnswer bounds what is read of an answer.
const MaxAnswer = 4 << 20

// MaxWait caps a wait a platform asks for; the engine decides whether to
// wait that long (rotation.max_retry_wait).
const MaxWait = 10 * time.Minute

// ConflictAttempts is how many times a write that lost a race (409, 412)
// is tried in all, each on a fresh read.
const ConflictAttempts = 4

// Client sends JSON requests to one platform's API.
type Client struct {
	// Base is the API's base URL, ending in "/"; request paths are
	// relative to it.
	Base *url.URL
	// HTTP sends the requests (see httpx.Client: no redirect to another host).
	HTTP *http.Client
	// TokenEnv names the variable holding the token; Getenv reads it.
	TokenEnv string
	Getenv   func(string) string
	// Credential, when set, gives the token instead of TokenEnv (a
	// kubeconfig's); it may be empty when Auth needs none (client
	// certificates). Who names those credentials in errors.
	Credential func() (string, error)
	Who        string
	// Auth puts the token on a request; nil means "Authorization: Bearer".
	Auth func(h http.Header, token string)
	// Header is sent with every request (Accept, an API version).
	Header http.Header
	// RateLimited reports whether a failed answer is a rate limit; nil
	// means status 429.
	RateLimited func(resp *http.Response) bool
	// DefaultWait is the wait for a rate limit whose answer says nothing
	// usable about when to come back.
	DefaultWait time.Duration
	// Explain may classify a failed answer by what its body says (a
	// platform that answers 400 to a lost race): it returns the class and
	// a few words of rekey's own for the error, or nil to classify by
	// status alone. The body itself never reaches an error.
	Explain func(code int, body []byte) (class error, words string)
	// Now is the clock rate-limit resets are read against; nil: time.Now.
	Now func() time.Time
}

// Request is one call.
type Request struct {
	Method string
	// Path is relative to Base and may carry a query ("apps/x/config-vars").
	Path string
	// Body is sent as JSON when not nil.
	Body any
	// ContentType overrides application/json (a Kubernetes patch type).
	ContentType string
	// What names the call in errors: "heroku: set FOO on app web".
	What string
	// Target names the object for a 404 ("app web").
	Target string
}

// Do sends r and returns the answer when its status is 2xx (the caller
// closes its body); otherwise a classified error built from the status and
// headers only.
func (c *Client) Do(ctx context.Context, r Request) (*http.Response, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", r.What, err)
	}
	token, err := c.Token()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", r.What, err)
	}
	ref, err := url.Parse(r.Path)
	if err != nil {
		return nil, fmt.Errorf("%s: bad path: %w", r.What, failure.ErrInvalid)
	}
	var body io.Reader
	if r.Body != nil {
		b, err := json.Marshal(r.Body)
		if err != nil {
			return nil, fmt.Errorf("%s: encode request: %w", r.What, failure.ErrInvalid)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, r.Method, c.Base.ResolveReference(ref).String(), body)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", r.What, failure.ErrInvalid)
	}
	for name, vs := range c.Header {
		req.Header[name] = vs
	}
	if req.Header.Get("Accept") == "" {
		req.Header.Set("Accept", "application/json")
	}
	req.Header.Set("User-Agent", "rekey")
	if r.Body != nil {
		ct := r.ContentType
		if ct == "" {
			ct = "application/json"
		}
		req.Header.Set("Content-Type", ct)
	}
	if c.Auth != nil {
		c.Auth(req.Header, token)
	} else {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, httpx.TransportError(ctx, r.What, err)
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return resp, nil
	}
	defer Drain(resp)
	if c.Explain != nil {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if class, words := c.Explain(resp.StatusCode, b); class != nil {
			return nil, fmt.Errorf("%s: status %d: %s: %w", r.What, resp.StatusCode, words, class)
		}
	}
	return nil, c.Failure(resp, r)
}

// Token reads the token from the environment (or Credential).
func (c *Client) Token() (string, error) {
	if c.Credential != nil {
		return c.Credential()
	}
	t := ""
	if c.Getenv != nil {
		t = c.Getenv(c.TokenEnv)
	}
	if strings.TrimSpace(t) == "" {
		return "", fmt.Errorf("$%s is empty or not set: %w", c.TokenEnv, failure.ErrUnauthorized)
	}
	return strings.TrimSpace(t), nil
}

// Failure classifies a failed answer to r: a rate limit is a
// *failure.RetryAfterError with the platform's wait; 401 and 403 say
// whose token was refused; 404 names the target; the rest as
// failure.StatusError does.
func (c *Client) Failure(resp *http.Response, r Request) error {
	code := resp.StatusCode
	limited := code == http.StatusTooManyRequests
	if c.RateLimited != nil {
		limited = c.RateLimited(resp)
	}
	if limited {
		wait := WaitFrom(resp.Header, c.now())
		if wait <= 0 {
			wait = c.DefaultWait
		}
		if wait <= 0 {
			wait = time.Second
		}
		return &failure.RetryAfterError{After: wait, Err: fmt.Errorf("%s: status %d: rate limited", r.What, code)}
	}
	who := c.Who
	if who == "" {
		who = "the token in $" + c.TokenEnv
	}
	switch code {
	case http.StatusUnauthorized:
		return fmt.Errorf("%s: status 401: %s was refused: %w", r.What, who, failure.ErrUnauthorized)
	case http.StatusForbidden:
		return fmt.Errorf("%s: status 403: %s is not allowed to: %w", r.What, who, failure.ErrUnauthorized)
	case http.StatusNotFound:
		target := r.Target
		if target == "" {
			target = "the target"
		}
		return fmt.Errorf("%s: status 404: %s does not exist or is not visible to %s: %w", r.What, target, who, failure.ErrNotFound)
	}
	return failure.StatusError(r.What, resp)
}

func (c *Client) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// WaitFrom reads how long a rate-limited answer asks the client to wait:
// Retry-After (seconds or an HTTP date), else a reset header
// (RateLimit-Reset, X-RateLimit-Reset: seconds from now, or a Unix time in
// seconds or milliseconds). It returns 0 when none says, and caps the wait
// at MaxWait.
func WaitFrom(h http.Header, now time.Time) time.Duration {
	if d := failure.ParseRetryAfter(h.Get("Retry-After"), now); d > 0 {
		return min(d, MaxWait)
	}
	for _, name := range []string{"RateLimit-Reset", "X-RateLimit-Reset"} {
		v := strings.TrimSpace(h.Get(name))
		if v == "" {
			continue
		}
		n, err := strconv.ParseFloat(v, 64)
		if err != nil || n < 0 {
			continue
		}
		var d time.Duration
		switch {
		case n > 1e12: // Unix milliseconds
			d = time.UnixMilli(int64(n)).Sub(now)
		case n > 1e9: // Unix seconds
			d = time.Unix(int64(n), 0).Sub(now)
		default: // seconds from now
			d = time.Duration(n * float64(time.Second))
		}
		if d <= 0 {
			d = time.Second // the window turned while the answer travelled
		}
		return min(d, MaxWait)
	}
	return 0
}

// Decode reads a JSON answer into v and closes it. An answer that does
// not decode is reported by its size only.
func Decode(resp *http.Response, v any, what string) error {
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxAnswer+1))
	if err != nil {
		return fmt.Errorf("%s: read answer: %w", what, failure.ErrTransient)
	}
	if len(b) > MaxAnswer {
		return fmt.Errorf("%s: answer is larger than %d bytes: %w", what, MaxAnswer, failure.ErrInvalid)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: answer (%d bytes) is not the JSON expected: %w", what, len(b), failure.ErrInvalid)
	}
	return nil
}

// Drain reads a little of an unwanted answer, so the connection can be
// reused, and closes it.
func Drain(resp *http.Response) {
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
}

// RetryConflicts runs attempt until it does not fail with
// failure.ErrConflict, at most ConflictAttempts times. attempt must read
// the target afresh each time: a write that lost a race is never forced.
func RetryConflicts[T any](ctx context.Context, attempt func() (T, error)) (T, error) {
	var out T
	var err error
	for i := range ConflictAttempts {
		out, err = attempt()
		if err == nil || !errors.Is(err, failure.ErrConflict) || ctx.Err() != nil {
			return out, err
		}
		if i < ConflictAttempts-1 {
			select {
			case <-ctx.Done():
				return out, err
			case <-time.After(time.Duration(i+1) * 50 * time.Millisecond):
			}
		}
	}
	return out, fmt.Errorf("%w (after %d attempts, each on a fresh read)", err, ConflictAttempts)
}

// ParseBase checks an api_url (or the default) and returns it ending in "/".
// One that holds credentials (user:password@) is refused without being
// quoted: the error would show them.
func ParseBase(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err == nil && u.User != nil {
		return nil, errors.New("the URL holds credentials (user:password@); give the token through token_env instead")
	}
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("%q is not an http(s) URL without query or credentials", raw)
	}
	if !strings.HasSuffix(u.Path, "/") {
		u.Path += "/"
		u.RawPath = ""
	}
	return u, nil
}

// EnvVarName matches a portable environment variable name.
var EnvVarName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
