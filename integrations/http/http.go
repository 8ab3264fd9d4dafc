// Package http is the `http` integration type: a target reached by one
// HTTP request, such as a WordPress plugin's settings endpoint or a sync
// service's API.
//
//	integrations:
//	  - id: signup-widget
//	    key: actionnetwork-main
//	    type: http
//	    apply:
//	      method: PUT
//	      url: https://greens.example/wp-json/signup/v1/settings
//	      headers: {Authorization: "Bearer ${WP_TOKEN}", Content-Type: application/json}
//	      body: '{"action_network_api_key": "{{key}}"}'
//	    read:
//	      url: https://greens.example/wp-json/signup/v1/settings
//	      headers: {Authorization: "Bearer ${WP_TOKEN}"}
//	      json_pointer: /settings/action_network_api_key
//	    verify:
//	      url: https://greens.example/wp-json/signup/v1/status
//	      headers: {X-Api-Key: "{{key}}"}
//	      expect_status: 200
//
// {{key}} is replaced in the headers and body of apply, read and verify,
// and never in a URL (a configuration error: URLs end up in logs). In
// apply it is the key being applied; in read and verify it is the version
// the integration is expected to hold (the current one, given by
// integrations.Observe, or the one being applied when Apply reads first),
// so that a probe can prove the service accepts it. A probe that needs the
// key and is given none cannot tell (transient). ${VAR} is replaced from
// rekey's environment in URLs and headers; an unset VAR is an error that
// names it. In a body, the key is written the way the body needs it: in a
// JSON body (Content-Type application/json or */*+json, or no Content-Type
// and a body starting with { or [) {{key}} inside a string gets the key
// escaped for a JSON string and {{key}} standing as a value gets a quoted
// JSON string, and Content-Type defaults to application/json; in an
// application/x-www-form-urlencoded body it is percent-encoded; otherwise
// it is written as it is.
//
// Methods default to POST for apply and GET for read and verify. read
// without json_pointer takes the whole answer, trimmed, as the key.
// verify without expect_status accepts any 2xx.
//
// The integration is a Reader only when read is configured and a Verifier
// only when verify is. With read, Apply first reads the target and sends
// nothing when it already holds the key.
//
// Preflight proves, sending nothing that could write, that apply's host
// is reached (DNS, TCP, TLS) and runs read and verify; a key a header of
// apply cannot carry is refused before the click (Accepts) and by Apply.
//
// Redirects are followed only to the same host and scheme with the same
// method; others are refused, so credentials never go elsewhere. Response
// bodies never reach errors or logs: read parses only the value at
// json_pointer, and errors name the request as configured (with ${VAR}
// unexpanded), never a value from the environment.
package http

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/rekey-dev/rekey/config"
	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/integrations"
	"github.com/rekey-dev/rekey/integrations/internal/httpx"
	"github.com/rekey-dev/rekey/secret"
)

// Type is the name of this integration type in the configuration.
const Type = "http"

// maxAnswer bounds what read takes from an answer.
const maxAnswer = 1 << 20

type applyFields struct {
	Method  string            `mapstructure:"method"`
	URL     string            `mapstructure:"url"`
	Headers map[string]string `mapstructure:"headers"`
	Body    string            `mapstructure:"body"`
}

type readFields struct {
	Method      string            `mapstructure:"method"`
	URL         string            `mapstructure:"url"`
	Headers     map[string]string `mapstructure:"headers"`
	Body        string            `mapstructure:"body"`
	JSONPointer string            `mapstructure:"json_pointer"`
}

type verifyFields struct {
	Method       string            `mapstructure:"method"`
	URL          string            `mapstructure:"url"`
	Headers      map[string]string `mapstructure:"headers"`
	Body         string            `mapstructure:"body"`
	ExpectStatus int               `mapstructure:"expect_status"`
}

type fields struct {
	Apply  *applyFields  `mapstructure:"apply"`
	Read   *readFields   `mapstructure:"read"`
	Verify *verifyFields `mapstructure:"verify"`
}

// call is one configured request.
type call struct {
	name    string // apply, read, verify
	method  string
	url     template
	headers []header
	body    template
	mode    bodyMode
	pointer *pointer
	expect  int
}

type header struct {
	name  string
	value template
}

// HTTP is an integration that applies the key with one request. New
// returns it wrapped so that it is also a Reader or a Verifier exactly
// when read or verify is configured.
type HTTP struct {
	id     string
	apply  call
	read   *call
	verify *call
	getenv func(string) string
	client *http.Client
	log    *slog.Logger
}

type withRead struct{ *HTTP }
type withVerify struct{ *HTTP }
type withReadVerify struct{ *HTTP }

// Read implements integrations.Reader.
func (w withRead) Read(ctx context.Context) (secret.Key, error) { return w.readKey(ctx) }

// Verify implements integrations.Verifier.
func (w withVerify) Verify(ctx context.Context) error { return w.probe(ctx) }

// Read implements integrations.Reader.
func (w withReadVerify) Read(ctx context.Context) (secret.Key, error) { return w.readKey(ctx) }

// Verify implements integrations.Verifier.
func (w withReadVerify) Verify(ctx context.Context) error { return w.probe(ctx) }

var (
	_ integrations.Integration = (*HTTP)(nil)
	_ integrations.Preflighter = (*HTTP)(nil)
	_ integrations.Acceptor    = (*HTTP)(nil)
	_ integrations.Reader      = withRead{}
	_ integrations.Verifier    = withVerify{}
	_ integrations.Reader      = withReadVerify{}
	_ integrations.Verifier    = withReadVerify{}
	_ integrations.Factory     = New
)

// New builds an http integration from its configuration item.
func New(h integrations.Host, in config.Integration) (integrations.Integration, error) {
	var f fields
	if err := h.Config.DecodeSettings(in, &f); err != nil {
		return nil, err
	}
	if f.Apply == nil {
		return nil, h.Config.Required(in, "apply", "({method, url, headers, body})")
	}
	x := &HTTP{id: in.ID, getenv: h.Getenv, log: h.Logger, client: httpx.Client(h.HTTPClient)}
	if x.getenv == nil {
		x.getenv = func(string) string { return "" }
	}
	if x.log == nil {
		x.log = slog.New(slog.DiscardHandler)
	}
	bad := func(field string, err error) error { return h.Config.Invalid(in, field, "%v", err) }

	a := f.Apply
	c, field, err := newCall("apply", a.Method, http.MethodPost, a.URL, a.Headers)
	if err != nil {
		return nil, bad(field, err)
	}
	if field, err := c.withBody("apply", a.Body); err != nil {
		return nil, bad(field, err)
	}
	if !c.usesKey() {
		return nil, h.Config.Invalid(in, "apply", "sends no key: put {{key}} in the body or a header")
	}
	x.apply = c

	if r := f.Read; r != nil {
		c, field, err := newCall("read", r.Method, http.MethodGet, r.URL, r.Headers)
		if err != nil {
			return nil, bad(field, err)
		}
		if field, err := c.withBody("read", r.Body); err != nil {
			return nil, bad(field, err)
		}
		if r.JSONPointer != "" {
			p, err := parsePointer(r.JSONPointer)
			if err != nil {
				return nil, bad("read.json_pointer", err)
			}
			c.pointer = &p
		}
		x.read = &c
	}
	if v := f.Verify; v != nil {
		c, field, err := newVerifyCall("verify", v)
		if err != nil {
			return nil, bad(field, err)
		}
		x.verify = &c
	}

	switch {
	case x.read != nil && x.verify != nil:
		return withReadVerify{x}, nil
	case x.read != nil:
		return withRead{x}, nil
	case x.verify != nil:
		return withVerify{x}, nil
	}
	return x, nil
}

// newVerifyCall checks a verify request; name prefixes its fields.
func newVerifyCall(name string, v *verifyFields) (call, string, error) {
	c, field, err := newCall(name, v.Method, http.MethodGet, v.URL, v.Headers)
	if err != nil {
		return c, field, err
	}
	if field, err := c.withBody(name, v.Body); err != nil {
		return c, field, err
	}
	if v.ExpectStatus != 0 && (v.ExpectStatus < 100 || v.ExpectStatus > 599) {
		return c, name + ".expect_status", fmt.Errorf("%d is not an HTTP status", v.ExpectStatus)
	}
	c.expect = v.ExpectStatus
	return c, "", nil
}

// Probe is a verify request on its own, for types that borrow the http
// type's probe (a manual integration's verify.http).
type Probe struct{ x *HTTP }

var _ integrations.Verifier = Probe{}

// NewProbe builds a Probe from settings shaped like an http integration's
// verify field ({method, url, headers, expect_status}). field is where
// the settings sit in the item ("verify.http"), for errors.
func NewProbe(h integrations.Host, in config.Integration, field string, settings map[string]any) (Probe, error) {
	var v verifyFields
	sub := in
	sub.Settings = settings
	if err := h.Config.DecodeSettings(sub, &v); err != nil {
		var ce *config.Error
		if errors.As(err, &ce) {
			ce.Field = strings.TrimSuffix(field+"."+ce.Field, ".")
		}
		return Probe{}, err
	}
	c, f, err := newVerifyCall(field, &v)
	if err != nil {
		return Probe{}, h.Config.Invalid(in, f, "%v", err)
	}
	x := &HTTP{id: in.ID, verify: &c, getenv: h.Getenv, log: h.Logger, client: httpx.Client(h.HTTPClient)}
	if x.getenv == nil {
		x.getenv = func(string) string { return "" }
	}
	return Probe{x}, nil
}

// Verify sends the request and checks its status.
func (p Probe) Verify(ctx context.Context) error { return p.x.probe(ctx) }

var methods = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}

// newCall checks the fields every request has. It returns the field an
// error is about.
func newCall(name, method, defMethod, rawURL string, headers map[string]string) (call, string, error) {
	c := call{name: name, method: strings.ToUpper(method)}
	if c.method == "" {
		c.method = defMethod
	}
	if !slices.Contains(methods, c.method) {
		return c, name + ".method", fmt.Errorf("%q is not one of %s", method, strings.Join(methods, ", "))
	}
	if rawURL == "" {
		return c, name + ".url", errors.New("required")
	}
	var err error
	if c.url, err = parseTemplate(rawURL, true, false); err != nil {
		return c, name + ".url", err
	}
	// Check the URL's shape with each ${VAR} standing for a word; one
	// that starts with ${VAR} may hold the scheme and host itself.
	if !strings.HasPrefix(rawURL, "${") {
		shape, _ := c.url.expand(func(string) string { return "x" }, secret.Key{}, raw)
		u, err := url.Parse(shape)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return c, name + ".url", fmt.Errorf("%q is not an http(s) URL", rawURL)
		}
	}
	for _, n := range slices.Sorted(maps.Keys(headers)) {
		if !validHeaderName(n) {
			return c, name + ".headers", fmt.Errorf("%q is not a header name", n)
		}
		v, err := parseTemplate(headers[n], true, true)
		if err != nil {
			return c, name + ".headers." + n, err
		}
		c.headers = append(c.headers, header{name: n, value: v})
	}
	return c, "", nil
}

// withBody parses body (prefix names the call's fields in errors) and
// works out how the key is written into it; a JSON body gets a JSON
// Content-Type unless one is configured.
func (c *call) withBody(prefix, body string) (string, error) {
	var err error
	if c.body, err = parseTemplate(body, false, true); err != nil {
		return prefix + ".body", err
	}
	if c.mode, err = detectBody(c.body, c.header("Content-Type")); err != nil {
		return prefix + ".body", err
	}
	if body != "" && (c.mode == bodyJSONString || c.mode == bodyJSONValue) && c.header("Content-Type") == "" {
		ct, _ := parseTemplate("application/json", true, false)
		c.headers = append(c.headers, header{name: "Content-Type", value: ct})
	}
	return "", nil
}

// usesKey reports whether the request sends the key, in its body or a header.
func (c *call) usesKey() bool {
	return c.body.hasKey() || slices.ContainsFunc(c.headers, func(h header) bool { return h.value.hasKey() })
}

// header returns the configured (unexpanded) value of a header.
func (c *call) header(name string) string {
	for _, h := range c.headers {
		if strings.EqualFold(h.name, name) {
			return h.value.src
		}
	}
	return ""
}

// what names the request in errors, as it is configured.
func (c *call) what() string { return fmt.Sprintf("http: %s %s %s", c.name, c.method, c.url.src) }

// ID implements integrations.Integration.
func (x *HTTP) ID() string { return x.id }

// Apply implements integrations.Integration.
func (x *HTTP) Apply(ctx context.Context, req integrations.ApplyRequest) (integrations.ApplyResult, error) {
	if err := ctx.Err(); err != nil {
		return integrations.ApplyResult{}, fmt.Errorf("%s: %w", x.apply.what(), err)
	}
	if req.Key.IsZero() {
		return integrations.ApplyResult{}, fmt.Errorf("%s: empty key: %w", x.apply.what(), failure.ErrInvalid)
	}
	if err := x.Accepts(req.Key); err != nil {
		return integrations.ApplyResult{}, err
	}
	if x.read != nil {
		held, err := x.readWith(ctx, req.Key)
		switch {
		case err == nil && held.Equal(req.Key):
			x.log.DebugContext(ctx, "http: target already holds the key", "integration", x.id, "fingerprint", req.Key.Fingerprint())
			return integrations.ApplyResult{Changed: false, At: time.Now()}, nil
		case ctx.Err() != nil:
			return integrations.ApplyResult{}, err
		case err != nil:
			x.log.DebugContext(ctx, "http: read before apply failed; applying", "integration", x.id, "err", err)
		}
	}
	resp, err := x.send(ctx, &x.apply, req.Key)
	if err != nil {
		return integrations.ApplyResult{}, err
	}
	drain(resp)
	if err := failure.StatusError(x.apply.what(), resp); err != nil {
		return integrations.ApplyResult{}, err
	}
	if resp.StatusCode >= 300 {
		return integrations.ApplyResult{}, fmt.Errorf("%s: status %d: %w", x.apply.what(), resp.StatusCode, failure.ErrInvalid)
	}
	x.log.InfoContext(ctx, "http: key applied", "integration", x.id, "status", resp.StatusCode, "fingerprint", req.Key.Fingerprint())
	return integrations.ApplyResult{Changed: true, At: time.Now()}, nil
}

// Accepts implements integrations.Acceptor: a key that goes into a
// header of apply ({{key}} there) cannot hold a line break, a NUL or
// another control character but tab (no HTTP header can carry one); in a
// URL it never goes, and a body takes any key (escaped as the body needs
// it). Apply refuses such a key in the same words before sending.
func (x *HTTP) Accepts(key secret.Key) error {
	for _, h := range x.apply.headers {
		if h.value.hasKey() && !headerSafe(key.Reveal()) { // compared only
			return fmt.Errorf("%s: header %s: the key holds a line break or another control character, which no HTTP header can carry: %w", x.apply.what(), h.name, failure.ErrInvalid)
		}
	}
	return nil
}

// headerSafe reports whether v can be (part of) a header value: no
// control character but tab, no DEL.
func headerSafe(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// Preflight implements integrations.Preflighter. It sends no request
// that could write:
//
//   - apply's ${VAR}s (URL, headers, body) are set in rekey's environment,
//     and its URL is an http(s) URL once filled;
//   - apply's host resolves and accepts a connection on its port (TCP,
//     and for https the TLS handshake, with the certificate checked as a
//     request would check it), through the proxy the client would use
//     (HTTP_PROXY, HTTPS_PROXY) when there is one: a connection is
//     opened and closed, and nothing is sent on it; when a read or verify
//     this preflight sends goes to apply's scheme, host and port, that
//     request proves it, on the same client, and no connection of its own
//     is opened;
//   - read, when configured, is sent (a target that holds no key yet is
//     fine), and verify, when configured: both are requests the
//     configuration says only read. One that puts the key in its request
//     ({{key}}) is sent only when ctx carries a probe key
//     (integrations.WithProbeKey), and skipped otherwise.
//
// Errors name the request as configured, with ${VAR} unexpanded.
func (x *HTTP) Preflight(ctx context.Context) error {
	c := &x.apply
	what := c.what()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	u, err := c.url.expand(x.getenv, secret.Key{}, raw)
	if err != nil {
		return fmt.Errorf("%s: url: %w", what, err)
	}
	pu, err := url.Parse(u)
	if err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
		return fmt.Errorf("%s: url is not an http(s) URL once ${VAR}s are filled: %w", what, failure.ErrInvalid)
	}
	for _, h := range c.headers {
		if err := envSet(h.value, x.getenv); err != nil {
			return fmt.Errorf("%s: header %s: %w", what, h.name, err)
		}
	}
	key, haveKey := integrations.ProbeKey(ctx)
	sendRead := x.read != nil && (haveKey || !x.read.usesKey())
	sendVerify := x.verify != nil && (haveKey || !x.verify.usesKey())
	if !(sendRead && x.sameOrigin(x.read, pu)) && !(sendVerify && x.sameOrigin(x.verify, pu)) {
		if err := x.reach(ctx, what, pu); err != nil {
			return err
		}
	}
	if sendRead {
		if _, err := x.readWith(ctx, key); err != nil && !errors.Is(err, failure.ErrNotFound) {
			return err
		}
	}
	if sendVerify {
		if err := x.probe(ctx); err != nil {
			return err
		}
	}
	return nil
}

// sameOrigin reports whether c, once its ${VAR}s are filled, goes to u's
// scheme, host and port.
func (x *HTTP) sameOrigin(c *call, u *url.URL) bool {
	s, err := c.url.expand(x.getenv, secret.Key{}, raw)
	if err != nil {
		return false
	}
	cu, err := url.Parse(s)
	return err == nil && cu.Scheme == u.Scheme && strings.EqualFold(hostPort(cu), hostPort(u))
}

// hostPort is u's host and port, the scheme's default port when u has none.
func hostPort(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	return net.JoinHostPort(u.Hostname(), port)
}

// envSet checks that every ${VAR} of t is set, without filling {{key}}.
func envSet(t template, getenv func(string) string) error {
	for _, p := range t.parts {
		if p.env != "" && getenv(p.env) == "" {
			return fmt.Errorf("environment variable %s is not set: %w", p.env, failure.ErrInvalid)
		}
	}
	return nil
}

// reach resolves u's host and opens (and closes) a connection to it, as
// the client's transport would: through its proxy, with its dialer and
// its TLS settings. Nothing is sent.
func (x *HTTP) reach(ctx context.Context, what string, u *url.URL) error {
	tr, _ := x.client.Transport.(*http.Transport)
	if x.client.Transport == nil {
		tr, _ = http.DefaultTransport.(*http.Transport)
	}
	if tr == nil {
		return nil // a transport rekey cannot look into: the request will say
	}
	addr := hostPort(u)
	proxied := false
	if tr.Proxy != nil {
		req := &http.Request{Method: http.MethodGet, URL: u, Header: http.Header{}}
		if p, err := tr.Proxy(req); err != nil {
			return fmt.Errorf("%s: the proxy setting does not parse: %w", what, failure.ErrInvalid)
		} else if p != nil {
			addr, proxied = hostPort(p), true
			what += " (through its proxy)"
		}
	}
	dial := tr.DialContext
	if dial == nil {
		dial = (&net.Dialer{Timeout: 30 * time.Second}).DialContext
	}
	conn, err := dial(ctx, "tcp", addr)
	if err != nil {
		return httpx.TransportError(ctx, what+": connect", err)
	}
	defer conn.Close()
	if u.Scheme != "https" || proxied {
		return nil
	}
	var cfg *tls.Config
	if tr.TLSClientConfig != nil {
		cfg = tr.TLSClientConfig.Clone()
	} else {
		cfg = &tls.Config{}
	}
	if cfg.ServerName == "" {
		cfg.ServerName = u.Hostname()
	}
	tc := tls.Client(conn, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		return httpx.TransportError(ctx, what+": TLS handshake", err)
	}
	return tc.Close()
}

// readKey sends read, with the key ctx carries for {{key}}, and takes the
// key from the answer.
func (x *HTTP) readKey(ctx context.Context) (secret.Key, error) {
	k, _ := integrations.ProbeKey(ctx)
	return x.readWith(ctx, k)
}

// readWith sends read with key for {{key}} and takes the key from the answer.
func (x *HTTP) readWith(ctx context.Context, key secret.Key) (secret.Key, error) {
	c := x.read
	resp, err := x.send(ctx, c, key)
	if err != nil {
		return secret.Key{}, err
	}
	defer resp.Body.Close()
	if err := failure.StatusError(c.what(), resp); err != nil {
		drain(resp)
		return secret.Key{}, err
	}
	if resp.StatusCode >= 300 {
		drain(resp)
		return secret.Key{}, fmt.Errorf("%s: status %d: %w", c.what(), resp.StatusCode, failure.ErrInvalid)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
	if err != nil {
		return secret.Key{}, httpx.TransportError(ctx, c.what()+": read answer", err)
	}
	if len(b) > maxAnswer {
		return secret.Key{}, fmt.Errorf("%s: answer is larger than %d bytes: %w", c.what(), maxAnswer, failure.ErrInvalid)
	}
	if c.pointer == nil {
		k := strings.TrimSpace(string(b))
		if k == "" {
			return secret.Key{}, fmt.Errorf("%s: answer is empty: %w", c.what(), failure.ErrNotFound)
		}
		return secret.New(k), nil
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		// encoding/json's message may quote part of the answer.
		return secret.Key{}, fmt.Errorf("%s: answer (%d bytes) is not JSON: %w", c.what(), len(b), failure.ErrInvalid)
	}
	v, err := c.pointer.resolve(doc)
	if err != nil {
		return secret.Key{}, fmt.Errorf("%s: json_pointer %s: %w: %w", c.what(), c.pointer.src, err, failure.ErrNotFound)
	}
	switch s := v.(type) {
	case string:
		if s == "" {
			return secret.Key{}, fmt.Errorf("%s: json_pointer %s: empty string: %w", c.what(), c.pointer.src, failure.ErrNotFound)
		}
		return secret.New(s), nil
	case nil:
		return secret.Key{}, fmt.Errorf("%s: json_pointer %s: null: %w", c.what(), c.pointer.src, failure.ErrNotFound)
	}
	return secret.Key{}, fmt.Errorf("%s: json_pointer %s: a %s, not a string: %w", c.what(), c.pointer.src, jsonKind(v), failure.ErrInvalid)
}

// probe sends verify, with the key ctx carries for {{key}}, and checks
// its status.
func (x *HTTP) probe(ctx context.Context) error {
	c := x.verify
	key, _ := integrations.ProbeKey(ctx)
	resp, err := x.send(ctx, c, key)
	if err != nil {
		return err
	}
	drain(resp)
	switch {
	case c.expect == 0 && resp.StatusCode >= 200 && resp.StatusCode < 300:
		return nil
	case c.expect == resp.StatusCode:
		return nil
	case resp.StatusCode >= 400:
		return failure.StatusError(c.what(), resp)
	}
	want := "2xx"
	if c.expect != 0 {
		want = fmt.Sprint(c.expect)
	}
	return fmt.Errorf("%s: status %d, want %s: %w", c.what(), resp.StatusCode, want, failure.ErrInvalid)
}

// send builds and sends one request, with key for {{key}}. The caller
// closes the body.
func (x *HTTP) send(ctx context.Context, c *call, key secret.Key) (*http.Response, error) {
	what := c.what()
	if key.IsZero() && c.usesKey() {
		return nil, fmt.Errorf("%s: no key to put in {{key}}: rekey does not know which version it should hold: %w", what, failure.ErrTransient)
	}
	u, err := c.url.expand(x.getenv, key, raw)
	if err != nil {
		return nil, fmt.Errorf("%s: url: %w", what, err)
	}
	if pu, err := url.Parse(u); err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
		return nil, fmt.Errorf("%s: url is not an http(s) URL once ${VAR}s are filled: %w", what, failure.ErrInvalid)
	}
	var body io.Reader
	if c.body.src != "" {
		b, err := c.body.expand(x.getenv, key, c.mode.escape)
		if err != nil {
			return nil, fmt.Errorf("%s: body: %w", what, err)
		}
		body = strings.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, c.method, u, body)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, failure.ErrInvalid)
	}
	for _, h := range c.headers {
		v, err := h.value.expand(x.getenv, key, raw)
		if err != nil {
			return nil, fmt.Errorf("%s: header %s: %w", what, h.name, err)
		}
		if strings.ContainsAny(v, "\r\n\x00") {
			return nil, fmt.Errorf("%s: header %s: the value holds a line break or NUL once filled: %w", what, h.name, failure.ErrInvalid)
		}
		if strings.EqualFold(h.name, "Host") {
			req.Host = v
			continue
		}
		req.Header.Set(h.name, v)
	}
	if req.Header.Get("User-Agent") == "" {
		req.Header.Set("User-Agent", "rekey")
	}
	client := x.client
	if c.name != "apply" && c.name != "read" {
		// A probe answers for itself: a redirect (to a login page that
		// answers 200, say) is not a pass.
		noFollow := *client
		noFollow.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		client = &noFollow
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, httpx.TransportError(ctx, what, err)
	}
	return resp, nil
}

// drain reads a little of an unwanted answer, so the connection can be
// reused, and closes it.
func drain(resp *http.Response) {
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
}

func validHeaderName(n string) bool {
	if n == "" {
		return false
	}
	for _, c := range []byte(n) {
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}
