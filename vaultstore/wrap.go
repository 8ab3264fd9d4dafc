package vaultstore

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	vault "github.com/hashicorp/vault/api"

	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/records"
	"github.com/rekey-dev/rekey/store"
)

// Hand-off codes are Vault response-wrapping tokens: Wrap stores a value
// in a single-use token's cubbyhole for a TTL (sys/wrapping/wrap), and
// only that token opens it, once (sys/wrapping/unwrap), with no other
// token. rekey keeps no code: its records (handoffs/<hash>, below) hold
// the token's accessor and a keyed hash of it.

// wrapGone is what Vault says of a wrapping token that was used, expired,
// revoked or never issued; it says the same of each.
const wrapGone = "wrapping token is not valid or does not exist"

// Wrap has Vault response-wrap data for ttl (sys/wrapping/wrap with
// X-Vault-Wrap-TTL) and returns the wrapping token, its accessor and when
// it was made. The token needs update on sys/wrapping/wrap.
func (s *Store) Wrap(ctx context.Context, data map[string]string, ttl time.Duration) (token, accessor string, created time.Time, err error) {
	const where = "vault: wrap (sys/wrapping/wrap)"
	if ttl < time.Second {
		return "", "", time.Time{}, fmt.Errorf("%s: ttl %s is under a second: %w", where, ttl, failure.ErrInvalid)
	}
	// A client of its own: the wrap TTL is the client's, for every
	// request it makes.
	c, err := NewOpener(s.c).client(s.c.Token())
	if err != nil {
		return "", "", time.Time{}, err
	}
	wrapTTL := strconv.FormatInt(int64(ttl/time.Second), 10) + "s"
	c.SetWrappingLookupFunc(func(string, string) string { return wrapTTL })
	body := make(map[string]any, len(data))
	for k, v := range data {
		body[k] = v
	}
	sec, err := c.Logical().WriteWithContext(ctx, "sys/wrapping/wrap", body)
	if err != nil {
		return "", "", time.Time{}, classify(ctx, where, err)
	}
	if sec == nil || sec.WrapInfo == nil || sec.WrapInfo.Token == "" {
		return "", "", time.Time{}, fmt.Errorf("%s: Vault's answer holds no wrapping token: %w", where, failure.ErrTransient)
	}
	wi := sec.WrapInfo
	return wi.Token, wi.Accessor, wi.CreationTime.UTC(), nil
}

// Unwrap opens a wrapping token once (sys/wrapping/unwrap) with a client
// of its own that carries no token but that one: see Opener.Unwrap.
func (s *Store) Unwrap(ctx context.Context, token string) (map[string]string, error) {
	return NewOpener(s.c).Unwrap(ctx, token)
}

// LookupToken says, without opening it, when a wrapping token was made
// and for how long: see Opener.LookupToken.
func (s *Store) LookupToken(ctx context.Context, token string) (time.Time, time.Duration, error) {
	return NewOpener(s.c).LookupToken(ctx, token)
}

// LookupAccessor looks a wrapping token up by its accessor, without the
// token (auth/token/lookup-accessor, which needs update there), and says
// when it expires. A token that was used, expired or revoked is
// failure.ErrNotFound; a token that may not look it up gets
// failure.ErrUnauthorized.
func (s *Store) LookupAccessor(ctx context.Context, accessor string) (time.Time, error) {
	const where = "vault: look up a hand-off code by its accessor (auth/token/lookup-accessor)"
	sec, err := s.c.Auth().Token().LookupAccessorWithContext(ctx, accessor)
	if err != nil {
		var re *vault.ResponseError
		if errors.As(err, &re) && re.StatusCode == http.StatusBadRequest && saysAny(re, "invalid accessor") {
			return time.Time{}, fmt.Errorf("%s: gone (used, expired or revoked): %w", where, failure.ErrNotFound)
		}
		return time.Time{}, classify(ctx, where, err)
	}
	if sec == nil || sec.Data == nil {
		return time.Time{}, fmt.Errorf("%s: no answer: %w", where, failure.ErrTransient)
	}
	exp, _ := sec.Data["expire_time"].(string)
	t, err := time.Parse(time.RFC3339Nano, exp)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s: no expiry time in Vault's answer: %w", where, failure.ErrTransient)
	}
	return t.UTC(), nil
}

// Opener opens hand-off codes. Its client carries no Vault token: a
// code is its own authority, so `rekey reveal` needs none.
type Opener struct {
	c *vault.Client
}

// NewOpener returns an Opener talking to base's Vault (its address, TLS
// settings, timeout and namespace); base's token is never sent.
func NewOpener(base *vault.Client) *Opener {
	return &Opener{c: base}
}

// Wrap makes no code: an Opener holds no token to make one with
// (failure.ErrUnauthorized).
func (o *Opener) Wrap(context.Context, map[string]string, time.Duration) (string, string, time.Time, error) {
	return "", "", time.Time{}, fmt.Errorf("vault: wrap: no Vault token: %w", failure.ErrUnauthorized)
}

// LookupAccessor needs a token: an Opener has none
// (failure.ErrUnauthorized).
func (o *Opener) LookupAccessor(context.Context, string) (time.Time, error) {
	return time.Time{}, fmt.Errorf("vault: look up a hand-off code by its accessor: no Vault token: %w", failure.ErrUnauthorized)
}

// client is a new client like o.c with token as its only token.
func (o *Opener) client(token string) (*vault.Client, error) {
	cfg := o.c.CloneConfig()
	cfg.MaxRetries = 0
	c, err := vault.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("vault: client for %s: %w", cfg.Address, err)
	}
	c.ClearToken() // NewClient takes $VAULT_TOKEN
	if ns := o.c.Namespace(); ns != "" {
		c.SetNamespace(ns)
	}
	if token != "" {
		c.SetToken(token)
	}
	return c, nil
}

// Unwrap opens a wrapping token once (sys/wrapping/unwrap, with the token
// as the request's only token) and returns its string fields. A token
// that was used, expired or never issued is failure.ErrNotFound: Vault
// says the same of each.
func (o *Opener) Unwrap(ctx context.Context, token string) (map[string]string, error) {
	const where = "vault: open a hand-off code (sys/wrapping/unwrap)"
	if token = strings.TrimSpace(token); token == "" || !printable(token) {
		return nil, fmt.Errorf("%s: not a hand-off code: %w", where, failure.ErrNotFound)
	}
	c, err := o.client(token)
	if err != nil {
		return nil, err
	}
	sec, err := c.Logical().UnwrapWithContext(ctx, token)
	if err != nil {
		return nil, wrapError(ctx, where, err)
	}
	if sec == nil || sec.Data == nil {
		return nil, fmt.Errorf("%s: %s: %w", where, wrapGone, failure.ErrNotFound)
	}
	out := make(map[string]string, len(sec.Data))
	for k, v := range sec.Data {
		if s, ok := v.(string); ok {
			out[k] = s
		}
	}
	return out, nil
}

// LookupToken says, without opening it, when a wrapping token was made and
// for how long (sys/wrapping/lookup, which takes no token of its own), and
// checks that sys/wrapping/wrap made it. Gone is failure.ErrNotFound, as
// for Unwrap.
func (o *Opener) LookupToken(ctx context.Context, token string) (time.Time, time.Duration, error) {
	const where = "vault: look up a hand-off code (sys/wrapping/lookup)"
	if token = strings.TrimSpace(token); token == "" || !printable(token) {
		return time.Time{}, 0, fmt.Errorf("%s: not a hand-off code: %w", where, failure.ErrNotFound)
	}
	c, err := o.client("")
	if err != nil {
		return time.Time{}, 0, err
	}
	sec, err := c.Logical().WriteWithContext(ctx, "sys/wrapping/lookup", map[string]any{"token": token})
	if err != nil {
		return time.Time{}, 0, wrapError(ctx, where, err)
	}
	if sec == nil || sec.Data == nil {
		return time.Time{}, 0, fmt.Errorf("%s: no answer: %w", where, failure.ErrTransient)
	}
	if p, _ := sec.Data["creation_path"].(string); p != "sys/wrapping/wrap" {
		return time.Time{}, 0, fmt.Errorf("%s: the token wraps something other than a hand-off: %w", where, failure.ErrNotFound)
	}
	created, err := time.Parse(time.RFC3339Nano, fmt.Sprint(sec.Data["creation_time"]))
	if err != nil {
		return time.Time{}, 0, fmt.Errorf("%s: no creation time in Vault's answer: %w", where, failure.ErrTransient)
	}
	ttl := jsonInt(sec.Data["creation_ttl"])
	return created.UTC(), time.Duration(ttl) * time.Second, nil
}

// wrapError classifies an error of sys/wrapping/*: Vault's answer that
// the token is not valid (400; 403 for a token that is no wrapping token)
// is failure.ErrNotFound, said in rekey's words.
func wrapError(ctx context.Context, where string, err error) error {
	var re *vault.ResponseError
	if errors.As(err, &re) && (re.StatusCode == http.StatusBadRequest || re.StatusCode == http.StatusForbidden) {
		return fmt.Errorf("%s: the code is not valid (used, expired or never issued): %w", where, failure.ErrNotFound)
	}
	return classify(ctx, where, err)
}

func saysAny(re *vault.ResponseError, s string) bool {
	for _, e := range re.Errors {
		if strings.Contains(e, s) {
			return true
		}
	}
	return false
}

// printable reports whether s may go in an HTTP header (a code pasted
// with a control character in it is no code).
func printable(s string) bool {
	for _, r := range s {
		if r < 0x21 || r > 0x7e {
			return false
		}
	}
	return true
}

// Hand-off records live under handoffs/: the salt of the codes' keyed
// hash, and one record per code named by that hash.
const handoffSaltPath = "handoffs/salt"

func handoffPath(hash string) string { return "handoffs/" + hash }

// HandoffSalt returns the HMAC key of hand-off codes' hashes, making it
// (32 random bytes, with check-and-set) the first time.
func (s *Store) HandoffSalt(ctx context.Context) ([]byte, error) {
	var salt []byte
	err := store.RetryConflicts(ctx, func() error {
		var hs records.HandoffSalt
		v, err := s.GetRecord(ctx, handoffSaltPath, &hs)
		if err == nil {
			if salt, err = hs.Bytes(); err != nil {
				return fmt.Errorf("vault: record %s/%s: %w", s.mount, s.RecordPath(handoffSaltPath), err)
			}
			return nil
		}
		if !errors.Is(err, failure.ErrNotFound) {
			return err
		}
		if salt, hs, err = records.NewHandoffSalt(); err != nil {
			return err
		}
		_, err = s.PutRecord(ctx, handoffSaltPath, &hs, v) // a conflict: another process made it first; read theirs
		return err
	})
	if err != nil {
		return nil, err
	}
	return salt, nil
}

// Handoff reads the record of the code whose hash is hash;
// failure.ErrNotFound when there is none.
func (s *Store) Handoff(ctx context.Context, hash string) (*records.Handoff, error) {
	if !isHex(hash) {
		return nil, fmt.Errorf("vault: hand-off record %q: not a code hash: %w", hash, failure.ErrNotFound)
	}
	var h records.Handoff
	if _, err := s.GetRecord(ctx, handoffPath(hash), &h); err != nil {
		return nil, err
	}
	return &h, nil
}

// CreateHandoff writes a new code's record (check-and-set 0: it must not
// exist).
func (s *Store) CreateHandoff(ctx context.Context, h *records.Handoff) error {
	if !isHex(h.CodeHash) {
		return fmt.Errorf("vault: hand-off record: %q is not a code hash: %w", h.CodeHash, failure.ErrInvalid)
	}
	_, err := s.PutRecord(ctx, handoffPath(h.CodeHash), h, 0)
	return err
}

// UpdateHandoff applies change to the record of hash with check-and-set,
// retrying on conflict (`rekey reveal`, the hand-off page and a rotation
// may write it at once), and returns it as written. Nothing is written
// when change reports no change. No record is failure.ErrNotFound.
func (s *Store) UpdateHandoff(ctx context.Context, hash string, change func(*records.Handoff) bool) (*records.Handoff, error) {
	if !isHex(hash) {
		return nil, fmt.Errorf("vault: hand-off record %q: not a code hash: %w", hash, failure.ErrNotFound)
	}
	var h *records.Handoff
	err := store.RetryConflicts(ctx, func() error {
		h = &records.Handoff{}
		v, err := s.GetRecord(ctx, handoffPath(hash), h)
		if err != nil || !change(h) {
			return err
		}
		_, err = s.PutRecord(ctx, handoffPath(hash), h, v)
		return err
	})
	if err != nil {
		return nil, err
	}
	return h, nil
}

func isHex(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// HandoffWrites lists what a rotation of a key with hand-offs writes
// besides RotationWrites: the wrapping of each code (sys/wrapping/wrap),
// the codes' salt and their records. The record path is an example of
// the form: the token's capabilities are the same on every one.
func (s *Store) HandoffWrites() []Write {
	data := s.mount + "/data/"
	rec := []string{"read", "create", "update"}
	return []Write{
		{Path: "sys/wrapping/wrap", What: "hand-off codes (Vault response wrapping)", Needs: []string{"update"}},
		{Path: data + s.RecordPath(handoffSaltPath), What: "the hand-off codes' salt", Needs: rec},
		{Path: data + s.RecordPath(handoffPath(strings.Repeat("0", 64))), What: "the hand-off records", Needs: rec},
	}
}
