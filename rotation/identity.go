package rotation

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"slices"

	"github.com/rekey-dev/rekey/records"
	"github.com/rekey-dev/rekey/secret"
)

// The wrong-group guard. Each Action Network group (and each person's
// list) has its own key, and a valid key of the wrong group passes every
// other check: the party's sign-ups would go to another list. A key's
// identity is the set of tags its group has (package actionnetwork); two
// keys of one group share them. The preflight reads the current key's
// identity while the key still works (TakeIdentity); Check refuses a new
// key whose identity shares no tag with it, before anything is written;
// and the rotation records the new key's identity, hashed, in the key's
// state, so that a later rotation can compare even when the current key
// is already dead (a leak revoked before `rekey leak` ran). When either
// side has no tags, or could not be read, the identity is unknown: the
// rotation says so and goes on.

// GroupReader reads which group or list a key belongs to.
type GroupReader interface {
	// Group returns key's identity with each identifier hashed under
	// salt, sorted: nil when it cannot be told (the group has no tags, or
	// the read failed), with the reason. The reason never holds the key
	// or a response body.
	Group(ctx context.Context, key secret.Key, salt []byte) (hashes []string, reason string)
}

// IdentityAlgorithm names how records.Identity hashes a tag identifier.
const IdentityAlgorithm = "hmac-sha256-128"

// IdentityCheck is the wrong-group guard of one rotation: made by
// TakeIdentity in the preflight, used and filled in by Check, recorded by
// the rotation once the new key is stored.
type IdentityCheck struct {
	groups GroupReader
	salt   []byte

	// reference is what the new key is compared with: the current key's
	// identity read in the preflight, else the one recorded with the
	// latest rotation; nil when neither is known.
	reference []string
	// Source says where reference came from; Reason, when it is nil, why.
	Source string
	Reason string

	// Filled in by Check: the new key's identity, and what came of it.
	newHashes []string
	newReason string
	// Matched: the new key shares a tag with the reference.
	Matched bool
	// Warning is set when the new key's group could not be compared.
	Warning string
}

// Known reports whether there is an identity to compare a new key with.
func (ic *IdentityCheck) Known() bool { return ic != nil && len(ic.reference) > 0 }

// Tags is how many tags the reference identity has.
func (ic *IdentityCheck) Tags() int {
	if ic == nil {
		return 0
	}
	return len(ic.reference)
}

// keyStater is the part of Store TakeIdentity reads.
type keyStater interface {
	KeyState(ctx context.Context, keyID string) (*records.KeyState, int, error)
}

// TakeIdentity reads the identity of current, the key's current version,
// while it still works (the preflight), to compare the new key with; when
// it cannot be read, the identity recorded with the key's latest rotation
// stands in. It writes nothing. g nil (a provider with no groups) gives
// nil: no guard.
func TakeIdentity(ctx context.Context, st keyStater, keyID string, g GroupReader, current secret.Key) *IdentityCheck {
	if g == nil {
		return nil
	}
	ic := &IdentityCheck{groups: g}
	var rec *records.Identity
	if s, _, err := st.KeyState(ctx, keyID); err == nil && s != nil {
		rec = s.Identity
	}
	if rec != nil {
		if salt, err := base64.StdEncoding.DecodeString(rec.Salt); err == nil && len(salt) >= 16 && rec.Algorithm == IdentityAlgorithm {
			ic.salt = salt
		} else {
			rec = nil // unusable: start again
		}
	}
	if ic.salt == nil {
		ic.salt = make([]byte, 32)
		rand.Read(ic.salt)
	}
	if !current.IsZero() {
		hashes, reason := g.Group(ctx, current, ic.salt)
		if len(hashes) > 0 {
			ic.reference, ic.Source = hashes, "the current key "+current.Fingerprint()
			return ic
		}
		ic.Reason = "the current key's group could not be read: " + reason
	} else {
		ic.Reason = "there is no current key to read its group with"
	}
	if rec != nil && len(rec.Hashes) > 0 {
		ic.reference = rec.Hashes
		ic.Source = fmt.Sprintf("the group recorded with rotation %s (key %s)", rec.RotationID, rec.Fingerprint)
		ic.Reason = ""
	}
	return ic
}

// checkGroup refuses key when it belongs to another group than the
// reference (nothing is written yet), and otherwise notes whether the
// groups could be compared.
func (e *Engine) checkGroup(ctx context.Context, job Job, key secret.Key) error {
	ic := job.Identity
	if ic == nil || ic.groups == nil {
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, e.checkTimeout())
	ic.newHashes, ic.newReason = ic.groups.Group(cctx, key, ic.salt)
	cancel()
	switch {
	case len(ic.reference) == 0:
		ic.Warning = "the new key's Action Network group was not compared with the current one, which is unknown (" + ic.Reason + ")"
	case len(ic.newHashes) == 0:
		ic.Warning = "the new key's Action Network group is unknown (" + ic.newReason + "), so it was not compared with " + ic.Source + "'s"
	case !shareAny(ic.reference, ic.newHashes):
		return &RefusedError{Reason: fmt.Sprintf("it belongs to a different Action Network group or list: none of its %d tags is one of the %d of %s; paste the key from Details → API & Sync of the group this key is for",
			len(ic.newHashes), len(ic.reference), ic.Source)}
	default:
		ic.Matched = true
	}
	if ic.Warning != "" {
		e.logger().Info("wrong-group guard: identity unknown", "key", job.Key.ID, "why", ic.Warning)
	}
	return nil
}

func shareAny(a, b []string) bool {
	for _, x := range b {
		if slices.Contains(a, x) {
			return true
		}
	}
	return false
}

// recordIdentity keeps, in the key's state, the identity of the version
// rotation rotationID stored: the new key's when it could be read, else
// the one it was compared with (the group taken as unchanged).
func (e *Engine) recordIdentity(ctx context.Context, job Job, rotationID string, newKey secret.Key) {
	ic := job.Identity
	if ic == nil || ic.groups == nil {
		return
	}
	id := &records.Identity{
		Salt: base64.StdEncoding.EncodeToString(ic.salt), Algorithm: IdentityAlgorithm,
		Fingerprint: newKey.Fingerprint(), At: e.now(), RotationID: rotationID,
	}
	switch {
	case len(ic.newHashes) > 0:
		id.Hashes, id.Reason = ic.newHashes, "read with the new key"
	case len(ic.reference) > 0:
		id.Hashes, id.Inherited = ic.reference, true
		id.Reason = "the new key's group could not be read (" + ic.newReason + "); kept from " + ic.Source
	default:
		id.Reason = "unknown: " + ic.newReason
	}
	if err := e.Store.UpdateKeyState(context.WithoutCancel(ctx), job.Key.ID, func(st *records.KeyState) { st.Identity = id }); err != nil {
		e.logger().Warn("could not record the new key's group; the next rotation reads the current key's instead", "key", job.Key.ID, "err", e.redact(err.Error()))
	}
}
