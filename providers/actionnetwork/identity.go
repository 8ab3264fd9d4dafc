package actionnetwork

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"

	"github.com/rekey-dev/rekey/providers"
	"github.com/rekey-dev/rekey/secret"
)

// IdentityState says what reading a key's identity found.
type IdentityState string

const (
	// IdentityKnown: the key read its tags; Identity.Tags holds them.
	IdentityKnown IdentityState = "known"
	// IdentityEmpty: the key works, but its group or list has no tags, so
	// there is nothing to compare. Treat as unknown.
	IdentityEmpty IdentityState = "empty"
	// IdentityUnknown: 429, 5xx, a timeout, a network error, a redirect, or
	// an answer that is not a tags page. Never taken as invalid.
	IdentityUnknown IdentityState = "unknown"
	// IdentityInvalid: Action Network refused the key (401 or 403).
	IdentityInvalid IdentityState = "invalid"
)

// TagPrefix starts every identifier Action Network gives a tag.
const TagPrefix = "action_network:"

// Identity is which Action Network group or list a key belongs to: the
// identifiers of the tags on the first page of GET <base>tags.
type Identity struct {
	State IdentityState
	// Tags holds the tags' Action Network identifiers
	// ("action_network:<uuid>"), sorted and each once; only when State is
	// IdentityKnown. Identifiers that other systems gave a tag are left
	// out: two groups may share those.
	Tags []string
	// Reason says why, for a person; it never holds a key or a response body.
	Reason string
}

// Identity reads key's identity: GET <base>tags (the first page, as Action
// Network pages it), with the key in OSDI-API-Token, paced by the same
// per-key Limiter as Check and honouring Retry-After in the same way.
func (c *Checker) Identity(ctx context.Context, key secret.Key) Identity {
	if c.err != nil {
		return Identity{State: IdentityUnknown, Reason: c.err.Error()}
	}
	if key.IsZero() {
		return Identity{State: IdentityInvalid, Reason: "the key is empty"}
	}
	var tags []string
	p := c.probe
	p.URL = c.tagsURL
	p.Judge = func(resp *http.Response) providers.Result {
		if resp.StatusCode != http.StatusOK {
			return judge(resp)
		}
		var ok bool
		if tags, ok = readTags(resp.Body); !ok {
			return unknown("authenticated read of tags returned 200 but not a page of tags with Action Network identifiers")
		}
		return providers.Result{Validity: providers.Valid}
	}
	r := p.Run(ctx, key)
	switch {
	case r.Validity == providers.Invalid:
		return Identity{State: IdentityInvalid, Reason: r.Reason}
	case r.Validity != providers.Valid:
		return Identity{State: IdentityUnknown, Reason: r.Reason}
	case len(tags) == 0:
		return Identity{State: IdentityEmpty, Reason: "the key reads no tags: its group or list has none to compare"}
	}
	return Identity{State: IdentityKnown, Tags: tags, Reason: fmt.Sprintf("the key reads %d tags", len(tags))}
}

// readTags parses a page of tags: their Action Network identifiers,
// sorted, each once. ok is false when the body is not a page of tags, or
// lists tags none of which has an Action Network identifier. The body and
// any decoding error are dropped: neither may reach a reason.
func readTags(body io.Reader) (tags []string, ok bool) {
	var page struct {
		TotalRecords *int `json:"total_records"`
		Embedded     *struct {
			Tags *[]struct {
				Identifiers []string `json:"identifiers"`
			} `json:"osdi:tags"`
		} `json:"_embedded"`
	}
	if err := json.NewDecoder(io.LimitReader(body, maxBodyRead)).Decode(&page); err != nil {
		return nil, false
	}
	if page.Embedded == nil || page.Embedded.Tags == nil {
		// An empty collection may leave its list out.
		return nil, page.TotalRecords != nil && *page.TotalRecords == 0
	}
	for _, t := range *page.Embedded.Tags {
		for _, id := range t.Identifiers {
			if strings.HasPrefix(id, TagPrefix) && len(id) > len(TagPrefix) {
				tags = append(tags, id)
			}
		}
	}
	if len(tags) == 0 && len(*page.Embedded.Tags) > 0 {
		return nil, false
	}
	slices.Sort(tags)
	return slices.Compact(tags), true
}

// MinIdentitySalt is the shortest salt HashIdentity takes.
const MinIdentitySalt = 16

// HashedIdentity is an identity as rekey's records keep it: for each tag
// identifier, hex of the first 16 bytes of HMAC-SHA-256(salt, identifier),
// sorted. Two identities hashed under one salt share an element exactly
// when they share a tag; the identifiers themselves are not kept.
type HashedIdentity []string

// HashIdentity hashes a known identity's tags under salt: random bytes
// kept with the record (MinIdentitySalt or more; 32 is good), which must
// be used again to hash any identity compared with it. An identity that is
// not known hashes to nil.
func HashIdentity(salt []byte, id Identity) (HashedIdentity, error) {
	if len(salt) < MinIdentitySalt {
		return nil, fmt.Errorf("actionnetwork: identity salt of %d bytes is too short (at least %d)", len(salt), MinIdentitySalt)
	}
	if id.State != IdentityKnown {
		return nil, nil
	}
	mac := hmac.New(sha256.New, salt)
	out := make(HashedIdentity, 0, len(id.Tags))
	for _, t := range id.Tags {
		mac.Reset()
		mac.Write([]byte(t))
		out = append(out, hex.EncodeToString(mac.Sum(nil)[:16]))
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// GroupMatch is what comparing two identities says.
type GroupMatch string

const (
	// SameGroup: the identities share at least one tag.
	SameGroup GroupMatch = "same"
	// OtherGroup: both have tags and share none: the keys belong to
	// different groups or lists.
	OtherGroup GroupMatch = "different"
	// GroupUnknown: one of them has no tags (it was empty or could not be
	// read), so nothing can be said.
	GroupUnknown GroupMatch = "unknown"
)

// CompareIdentities compares the identity recorded with an earlier
// rotation with the one a new key reads, both hashed under the same salt.
func CompareIdentities(recorded, current HashedIdentity) GroupMatch {
	if len(recorded) == 0 || len(current) == 0 {
		return GroupUnknown
	}
	for _, h := range current {
		if slices.Contains(recorded, h) {
			return SameGroup
		}
	}
	return OtherGroup
}
