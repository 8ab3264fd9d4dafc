package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/rekey-dev/rekey/config"
	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/integrations"
	"github.com/rekey-dev/rekey/providers"
	"github.com/rekey-dev/rekey/rotation"
	"github.com/rekey-dev/rekey/state"
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
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
	// Proof is how the integration's state will be proven (exact,
	// timestamp, probe, person, or none: never shown current).
	Proof state.Proof `json:"proof"`
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
	switch in := t.Integration.(type) {
	case integrations.Manual:
		owner, _ := in.Person()
		r.Detail = "updated by a person: " + owner
		r.Proof = integrations.ProofClass(t.Integration)
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
	r.Proof = integrations.ProofClass(t.Integration) // after Preflight: what it found at the target
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
		proof := "proven by " + string(in.Proof)
		if in.Proof == state.NoProof {
			proof = "not provable: never shown current; add a verify probe"
		}
		fmt.Fprintf(w, "  %s %-9s %s (%s): %s [%s]\n", mark(in.OK), "integ.", in.ID, in.Type, in.Detail, proof)
	}
}
