package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/rekey-dev/rekey/config"
	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/integrations"
	"github.com/rekey-dev/rekey/internal/sshpool"
	"github.com/rekey-dev/rekey/providers"
	"github.com/rekey-dev/rekey/rotation"
	"github.com/rekey-dev/rekey/vaultstore"
)

// preflight is what rekey found out before changing anything.
type preflight struct {
	Key            string           `json:"key"`
	Vault          string           `json:"vault"`
	VaultOK        bool             `json:"vault_ok"`
	CurrentVersion int              `json:"current_version,omitempty"`
	Fingerprint    string           `json:"fingerprint,omitempty"`
	Locked         string           `json:"locked,omitempty"`
	Provider       providers.Result `json:"provider"`
	Integrations   []integrationOK  `json:"integrations"`
	current        vaultstore.KeyVersion
}

type integrationOK struct {
	ID     string `json:"id"`
	Type   string `json:"type"`
	Host   string `json:"host,omitempty"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
	// Untrusted: its host's key is not the one known_hosts holds, or is
	// not there. A rotation does not start until that is fixed.
	Untrusted bool `json:"untrusted_host,omitempty"`
}

// ready reports whether nothing found stands in the way of a rotation.
func (p *preflight) ready() bool {
	if !p.VaultOK || p.Locked != "" || p.Provider.Validity == providers.Unknown {
		return false
	}
	for _, in := range p.Integrations {
		if !in.OK {
			return false
		}
	}
	return true
}

// untrusted lists the integrations whose host's key rekey does not
// trust: a rotation stops before the owner is told to click, since
// nothing can be sent there until a person has checked that host.
func (p *preflight) untrusted() []integrationOK {
	var out []integrationOK
	for _, in := range p.Integrations {
		if in.Untrusted {
			out = append(out, in)
		}
	}
	return out
}

// stopUntrusted is the error that stops a rotation when some host's key
// is not trusted, or nil.
func (p *preflight) stopUntrusted() error {
	bad := p.untrusted()
	if len(bad) == 0 {
		return nil
	}
	var lines []string
	for _, in := range bad {
		lines = append(lines, in.ID+": "+in.Detail)
	}
	return exit(ExitStopped, fmt.Errorf("not starting: the host key of %s is not trusted; nothing was changed\n  %s", plural(len(bad), "integration", "integrations"), strings.Join(lines, "\n  ")),
		"check the fingerprint with the host's administrator and fix known_hosts (ssh.known_hosts), then run `rekey check`")
}

// runPreflight checks, without writing anything, that Vault holds the
// key, nobody is rotating it, the provider answers, and every integration
// is reachable and writable as far as its type can tell.
func (a *app) runPreflight(ctx context.Context, k *config.Key, targets []rotation.Target) *preflight {
	p := &preflight{Key: k.ID, Vault: a.store.Mount() + "/" + k.VaultPath}
	cur, err := a.store.ReadKey(ctx, k.VaultPath)
	switch {
	case err == nil:
		p.VaultOK, p.CurrentVersion, p.Fingerprint, p.current = true, cur.Version, cur.Fingerprint(), cur
	case errors.Is(err, failure.ErrNotFound):
		p.VaultOK = true // the first rotation stores version 1
	default:
		p.Vault += ": " + err.Error()
	}
	if l, err := a.store.ReadLock(ctx, k.ID); err == nil && l.Held && time.Now().Before(l.Expires) {
		p.Locked = (&vaultstore.LockedError{KeyID: k.ID, Holder: l}).Error()
	}
	if !cur.Key.IsZero() {
		p.Provider = a.checker(*k).Check(ctx, cur.Key)
	} else {
		p.Provider = providers.Result{Validity: providers.Unknown, Reason: "no current key in Vault to check"}
		if err == nil || errors.Is(err, failure.ErrNotFound) {
			p.Provider.Validity = providers.Valid
		}
	}
	p.Integrations = make([]integrationOK, len(targets))
	var wg sync.WaitGroup
	sem := make(chan struct{}, a.cfg.Rotation.Concurrency)
	for i, t := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			ictx, cancel := context.WithTimeout(ctx, a.cfg.Rotation.Timeout.D())
			defer cancel()
			p.Integrations[i] = preflightOne(ictx, t)
		}()
	}
	wg.Wait()
	return p
}

func preflightOne(ctx context.Context, t rotation.Target) integrationOK {
	r := integrationOK{ID: t.Config.ID, Type: t.Config.Type, OK: true}
	var err error
	if rm, ok := t.Integration.(integrations.Remote); ok && rm.Host() != "" {
		// The host first: reachable, its key trusted, rekey let in.
		r.Host = rm.Host()
		if err := rm.CheckHost(ctx); err != nil {
			var hk *sshpool.HostKeyError
			r.OK, r.Detail, r.Untrusted = false, err.Error(), errors.As(err, &hk)
			return r
		}
	}
	switch in := t.Integration.(type) {
	case integrations.Manual:
		owner, _ := in.Person()
		r.Detail = "updated by a person: " + owner
		return r
	case integrations.Preflighter:
		err = in.Preflight(ctx)
		r.Detail = "reachable and writable"
	case integrations.Reader:
		_, err = in.Read(ctx)
		r.Detail = "reachable (read back)"
	case integrations.Timestamper:
		_, err = in.UpdatedAt(ctx)
		r.Detail = "reachable"
	default:
		r.Detail = "no way to check before writing"
	}
	if err != nil {
		r.OK, r.Detail = false, err.Error()
	}
	if r.Host != "" && r.OK {
		r.Detail = "on " + r.Host + ": " + r.Detail
	}
	return r
}

func (p *preflight) print(w io.Writer) {
	cur := "no version yet"
	if p.CurrentVersion > 0 {
		cur = fmt.Sprintf("version %d, %s", p.CurrentVersion, p.Fingerprint)
	}
	mark := func(ok bool) string {
		if ok {
			return "ok  "
		}
		return "FAIL"
	}
	fmt.Fprintf(w, "Preflight for %s:\n", p.Key)
	fmt.Fprintf(w, "  %s vault     %s (%s)\n", mark(p.VaultOK), p.Vault, cur)
	if p.Locked != "" {
		fmt.Fprintf(w, "  FAIL lock      %s\n", p.Locked)
	} else {
		fmt.Fprintf(w, "  ok   lock      free\n")
	}
	fmt.Fprintf(w, "  %s provider  current key %s: %s\n", mark(p.Provider.Validity != providers.Unknown), p.Provider.Validity, p.Provider.Reason)
	for _, in := range p.Integrations {
		fmt.Fprintf(w, "  %s %-9s %s (%s): %s\n", mark(in.OK), "integ.", in.ID, in.Type, in.Detail)
	}
}
