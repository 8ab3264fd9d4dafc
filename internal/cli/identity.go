package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/rekey-dev/rekey/config"
	"github.com/rekey-dev/rekey/providers/actionnetwork"
	"github.com/rekey-dev/rekey/rotation"
	"github.com/rekey-dev/rekey/secret"
)

// anGroups reads an Action Network key's group for the wrong-group guard
// (rotation.GroupReader), hashed as package actionnetwork hashes it.
type anGroups struct{ c *actionnetwork.Checker }

// Group implements rotation.GroupReader.
func (g anGroups) Group(ctx context.Context, key secret.Key, salt []byte) ([]string, string) {
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
		return anGroups{c}
	}
	return nil
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
