package cli

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/rekey-dev/rekey/config"
	"github.com/rekey-dev/rekey/providers"
	"github.com/rekey-dev/rekey/providers/actionnetwork"
	"github.com/rekey-dev/rekey/rotation"
	"github.com/rekey-dev/rekey/secret"
)

// anGroups reads an Action Network key's group for the wrong-group guard
// (rotation.GroupReader), hashed as package actionnetwork hashes it, each
// read within timeout (a rate limit's wait that would pass it is not
// started: the group is then unknown).
type anGroups struct {
	c       *actionnetwork.Checker
	timeout time.Duration
}

// Group implements rotation.GroupReader.
func (g anGroups) Group(ctx context.Context, key secret.Key, salt []byte) ([]string, string) {
	ctx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	id := g.c.Identity(ctx, key)
	if id.State != actionnetwork.IdentityKnown {
		return nil, id.Reason
	}
	h, err := actionnetwork.HashIdentity(salt, id)
	if err != nil {
		return nil, err.Error()
	}
	return h, id.Reason
}

// groups is the GroupReader of key k's provider, or nil when its
// provider has no groups.
func (a *app) groups(k config.Key) rotation.GroupReader {
	if c, ok := a.checker(k).(*actionnetwork.Checker); ok {
		return anGroups{c: c, timeout: a.cfg.Rotation.Timeout.D()}
	}
	return nil
}

// notNow is a GroupReader that does not read the group of one key, which
// the preflight found does not work now (dead, or Action Network
// throttling it): asking again would only wait.
type notNow struct {
	rotation.GroupReader
	fingerprint, reason string
}

func (n notNow) Group(ctx context.Context, key secret.Key, salt []byte) ([]string, string) {
	if key.Fingerprint() == n.fingerprint {
		return nil, n.reason
	}
	return n.GroupReader.Group(ctx, key, salt)
}

// identityOK is the guard's reference as the preflight shows it.
type identityOK struct {
	Known  bool   `json:"known"`
	Tags   int    `json:"tags,omitempty"`
	Source string `json:"source,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// takeIdentity reads, while it still works, which group the current key
// belongs to, for the rotation to refuse a new key of another one.
func (a *app) takeIdentity(ctx context.Context, k *config.Key, current secret.Key, p *preflight) {
	g := a.groups(*k)
	if g == nil {
		return
	}
	if !current.IsZero() && p.Provider.Validity != providers.Valid {
		g = notNow{GroupReader: g, fingerprint: current.Fingerprint(), reason: "the current key does not work now: " + p.Provider.Reason}
	}
	p.identity = rotation.TakeIdentity(ctx, a.store, k.ID, g, current)
	p.Identity = &identityOK{Known: p.identity.Known(), Tags: p.identity.Tags(), Source: p.identity.Source, Reason: p.identity.Reason}
}

func (id *identityOK) print(w io.Writer) {
	switch {
	case id == nil:
	case id.Known:
		fmt.Fprintf(w, "  ok   group     %s has %d tags: a new key of another Action Network group or list is refused\n", id.Source, id.Tags)
	default:
		fmt.Fprintf(w, "  ok   group     unknown (%s): the new key's group cannot be compared, and is not refused for it\n", id.Reason)
	}
}
