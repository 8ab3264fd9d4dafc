// Package actionnetwork checks an Action Network API key (OSDI API v2).
//
// Action Network's entry point (GET /api/v2/) answers 200 to any key, even
// a bad one, so it proves nothing. A key is valid only when an
// authenticated read succeeds: GET <base>tags?per_page=1 answering 200
// with an OSDI collection. 401 and 403 mean the key is invalid. 429, 5xx,
// timeouts, network errors and any other answer mean unknown, never
// invalid: only a refusal proves a key dead.
//
// Action Network's error bodies echo the key ({"error":"API Key … invalid"}),
// so no body is ever read into a Reason or a log line; a 200 body is parsed
// only for the two fields that mark a collection.
//
// Action Network allows 4 requests a second per key. Checks stay under that
// with a Limiter keyed by the key's fingerprint and shared by every Checker
// in the process, and honour Retry-After on 429 within ctx.
//
// # Identity: the wrong-group guard
//
// Each person and each group in Action Network has its own key, and a valid
// key of the wrong group passes every check. A key's identity is the set
// of Action Network identifiers ("action_network:<uuid>") of the tags on
// the first page of GET <base>tags. Checker.Identity reads it, under the
// same rules as Check (same Limiter, Retry-After, no redirects, no body in
// a reason), and says one of:
//
//   - IdentityKnown: Identity.Tags holds the identifiers;
//   - IdentityEmpty: the key works but its group has no tags;
//   - IdentityUnknown: 429, 5xx, timeout, network error, redirect, or an
//     answer that is not a tags page;
//   - IdentityInvalid: 401 or 403.
//
// Records keep an identity hashed, never the identifiers: HashIdentity(salt,
// id) gives per-identifier HMACs under a salt kept with the record, and
// CompareIdentities(recorded, current) says SameGroup (a tag in common),
// OtherGroup (both have tags, none in common) or GroupUnknown (either has
// none). The guard this is for:
//
//	// preflight, while the current key still works:
//	id := checker.Identity(ctx, current)          // record HashIdentity(salt, id) with the rotation
//	// once the new key is read, before anything is written:
//	newID := checker.Identity(ctx, newKey)
//	h, _ := actionnetwork.HashIdentity(salt, newID)  // the recorded salt
//	switch actionnetwork.CompareIdentities(recorded, h) {
//	case actionnetwork.OtherGroup:   // refuse: the key belongs to another group or list
//	case actionnetwork.GroupUnknown: // say so (id.Reason, newID.Reason) and go on
//	}
//
// An IdentityInvalid new key is refused by Check in any case.
package actionnetwork

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"

	"golang.org/x/time/rate"

	"github.com/rekey-dev/rekey/providers"
	"github.com/rekey-dev/rekey/providers/internal/httpcheck"
	"github.com/rekey-dev/rekey/secret"
)

const (
	// DefaultBaseURL is Action Network's API v2.
	DefaultBaseURL = "https://actionnetwork.org/api/v2/"
	// Header carries the key.
	Header = "OSDI-API-Token"
	// DefaultRate is the pace of requests per key: under Action Network's
	// 4 a second with room for jitter on the way.
	DefaultRate = rate.Limit(3.5)

	who         = "Action Network"
	maxBodyRead = 1 << 20
)

// KeyForm is what an Action Network API key looks like: 32 lowercase hex
// digits (16 random bytes), as the API & Sync page shows it after REVOKE &
// GENERATE NEW KEY. Action Network does not document the format; this is
// what its keys are today, and what internal/ansim mints. The preflight
// asks each integration that cannot hold every key whether it would take
// keys of this form, before the owner is told to click.
var KeyForm = secret.Form{Alphabet: "0123456789abcdef", MinLen: 32, MaxLen: 32}

// Limiter paces requests per key fingerprint; see NewLimiter.
type Limiter = httpcheck.Limiter

// NewLimiter allows r requests a second per key, in bursts of burst.
func NewLimiter(r rate.Limit, burst int) *Limiter { return httpcheck.NewLimiter(r, burst) }

var shared = NewLimiter(DefaultRate, 1)

// SharedLimiter is the process-wide Limiter that a Checker uses when its
// Options give none.
func SharedLimiter() *Limiter { return shared }

// Options configure a Checker. The zero Options check against the real
// Action Network with a default client and the shared Limiter.
type Options struct {
	// BaseURL is the API root, such as a key's provider_url; default
	// DefaultBaseURL. A missing trailing slash is added.
	BaseURL string
	// HTTPClient sends the requests (a copy that follows no redirect is
	// used); nil means a client with a 30s timeout.
	HTTPClient *http.Client
	// Logger gets debug lines naming the key by fingerprint; nil discards.
	Logger *slog.Logger
	// Limiter paces requests per key; nil means SharedLimiter().
	Limiter *Limiter
	// MaxRetries bounds retries after a 429: 0 means 3, negative means none.
	MaxRetries int
}

// Checker checks Action Network keys.
type Checker struct {
	probe   httpcheck.Probe
	tagsURL string // the first page of tags, for Identity
	err     error  // a BaseURL that cannot be used
}

var (
	_ providers.Checker = (*Checker)(nil)
	_ providers.Former  = (*Checker)(nil)
)

// KeyForm implements providers.Former: see the package variable KeyForm.
func (c *Checker) KeyForm() secret.Form { return KeyForm }

// New returns a Checker. A BaseURL that ValidateBaseURL refuses makes every
// Check answer unknown with a reason saying so; validate first to report it
// as a configuration error.
func New(opts Options) *Checker {
	base := opts.BaseURL
	if base == "" {
		base = DefaultBaseURL
	}
	c := &Checker{err: ValidateBaseURL(base), tagsURL: strings.TrimSuffix(base, "/") + "/tags"}
	lim := opts.Limiter
	if lim == nil {
		lim = shared
	}
	c.probe = httpcheck.Probe{
		Client:     httpcheck.Client(opts.HTTPClient),
		Logger:     httpcheck.Logger(opts.Logger),
		Limiter:    lim,
		MaxRetries: httpcheck.Retries(opts.MaxRetries),
		Provider:   "actionnetwork",
		Who:        who,
		URL:        strings.TrimSuffix(base, "/") + "/tags?per_page=1",
		Header:     Header,
		Judge:      judge,
	}
	return c
}

// ValidateBaseURL reports whether s can be an API root: an absolute http or
// https URL with a host and no query or fragment.
func ValidateBaseURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("actionnetwork: provider_url %q is not a URL", s)
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return fmt.Errorf("actionnetwork: provider_url %q: want an http or https URL", s)
	}
	if u.Host == "" {
		return fmt.Errorf("actionnetwork: provider_url %q has no host", s)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return errors.New("actionnetwork: provider_url must not hold a query, a fragment or user information")
	}
	return nil
}

// Check proves key with an authenticated read of one tag.
func (c *Checker) Check(ctx context.Context, key secret.Key) providers.Result {
	if c.err != nil {
		return providers.Result{Validity: providers.Unknown, Reason: c.err.Error()}
	}
	if key.IsZero() {
		return providers.Result{Validity: providers.Invalid, Reason: "the key is empty"}
	}
	return c.probe.Run(ctx, key)
}

func judge(resp *http.Response) providers.Result {
	code := resp.StatusCode
	switch {
	case code == http.StatusOK:
		if isCollection(resp.Body) {
			return providers.Result{Validity: providers.Valid, Reason: "authenticated read of tags returned 200"}
		}
		return unknown("authenticated read of tags returned 200 but not an OSDI collection")
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		return providers.Result{Validity: providers.Invalid, Reason: fmt.Sprintf("%s refused the key (%d)", who, code)}
	case code >= 500:
		return unknown(fmt.Sprintf("%s answered %d (server error)", who, code))
	case code >= 300 && code < 400:
		return unknown(fmt.Sprintf("%s answered %d (a redirect, not followed)", who, code))
	}
	return unknown(fmt.Sprintf("%s answered %d to an authenticated read of tags", who, code))
}

func unknown(reason string) providers.Result {
	return providers.Result{Validity: providers.Unknown, Reason: reason}
}

// isCollection reports whether body is an OSDI collection. The body and
// any decoding error are dropped: neither may reach a reason.
func isCollection(body io.Reader) bool {
	var c struct {
		TotalRecords *int                       `json:"total_records"`
		Embedded     map[string]json.RawMessage `json:"_embedded"`
	}
	if err := json.NewDecoder(io.LimitReader(body, maxBodyRead)).Decode(&c); err != nil {
		return false
	}
	return c.TotalRecords != nil || c.Embedded != nil
}
