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
	// Writes is every path the rotation writes, and what the token lacks
	// there; WritesErr says why that could not be asked.
	Writes    []vaultstore.Write   `json:"writes"`
	WritesErr string               `json:"writes_error,omitempty"`
	Settings  *vaultstore.Settings `json:"settings,omitempty"`
	// SettingsErr says why the mount's settings could not be read.
	SettingsErr string `json:"settings_error,omitempty"`
	// Identity is the wrong-group guard's reference: the current key's
	// Action Network group (identity.go).
	Identity *identityOK `json:"identity,omitempty"`
	current  vaultstore.KeyVersion
	identity *rotation.IdentityCheck
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
	// Proof is how the integration's state will be proven (exact,
	// timestamp, probe, person, or none: never shown current).
	Proof state.Proof `json:"proof"`
}

// ready reports whether nothing found stands in the way of a rotation.
func (p *preflight) ready() bool {
	if !p.VaultOK || p.writeProblem() != nil || p.Locked != "" || p.Provider.Validity == providers.Unknown {
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

// writeProblem says which writes of the rotation this token cannot make,
// or nil.
func (p *preflight) writeProblem() error {
	if p.WritesErr != "" {
		return errors.New(p.WritesErr)
	}
	var bad []string
	for _, w := range p.Writes {
		if !w.OK() {
			bad = append(bad, fmt.Sprintf("%s (%s): token lacks %s", w.Path, w.What, strings.Join(w.Lacks, ", ")))
		}
	}
	if len(bad) == 0 {
		return nil
	}
	return fmt.Errorf("this Vault token cannot make every write a rotation makes: %s", strings.Join(bad, "; "))
}

// runPreflight checks, without writing anything, that Vault holds the
// key, this token may make every write the rotation rotationID will make
// (the key, its metadata, each of rekey's records), nobody is rotating
// it, the provider answers, and every integration is reachable and
// writable as far as its type can tell.
func (a *app) runPreflight(ctx context.Context, k *config.Key, targets []rotation.Target, rotationID string) *preflight {
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
	if p.VaultOK {
		// Proven by what Vault says of this token and of the mount, not
		// by writing: the preflight changes nothing.
		p.Writes = append(a.store.RotationWrites(k.ID, k.VaultPath, rotationID, p.CurrentVersion > 0), a.handoffWrites(targets)...)
		if err := a.store.CheckWrites(ctx, p.Writes); err != nil {
			p.WritesErr = err.Error()
		}
		if st, err := a.store.Settings(ctx, k.VaultPath); err != nil {
			p.SettingsErr = err.Error()
		} else {
			p.Settings = &st
		}
	}
	if l, err := a.store.ReadLock(ctx, k.ID); err == nil && l.Held && !vaultstore.Abandoned(l, time.Now()) {
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
	if p.VaultOK {
		a.takeIdentity(ctx, k, cur.Key, p)
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
	a.preflightHandoffs(ctx, targets, p)
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
	if r.Host != "" && r.OK {
		r.Detail = "on " + r.Host + ": " + r.Detail
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
	if p.VaultOK {
		p.printWrites(w, mark)
	}
	if p.Locked != "" {
		fmt.Fprintf(w, "  FAIL lock      %s\n", p.Locked)
	} else {
		fmt.Fprintf(w, "  ok   lock      free\n")
	}
	fmt.Fprintf(w, "  %s provider  current key %s: %s\n", mark(p.Provider.Validity != providers.Unknown), p.Provider.Validity, p.Provider.Reason)
	p.Identity.print(w)
	for _, in := range p.Integrations {
		proof := "proven by " + string(in.Proof)
		if in.Proof == state.NoProof {
			proof = "not provable: never shown current; add a verify probe"
		}
		fmt.Fprintf(w, "  %s %-9s %s (%s): %s [%s]\n", mark(in.OK), "integ.", in.ID, in.Type, in.Detail, proof)
	}
}

// printWrites prints the writes the token cannot make, or that it can make
// them all, and the mount's check-and-set and retention settings.
func (p *preflight) printWrites(w io.Writer, mark func(bool) string) {
	if p.WritesErr != "" {
		fmt.Fprintf(w, "  FAIL writes    could not ask Vault what this token may do: %s\n", p.WritesErr)
	}
	ok := 0
	for _, wr := range p.Writes {
		if wr.OK() {
			ok++
			continue
		}
		fmt.Fprintf(w, "  FAIL write     %s (%s): token lacks %s\n", wr.Path, wr.What, strings.Join(wr.Lacks, ", "))
	}
	if p.WritesErr == "" && ok == len(p.Writes) {
		fmt.Fprintf(w, "  ok   writes    token may make all %d writes of a rotation: the key, its metadata, and rekey's lock, state, history, rotation record and journal\n", ok)
	}
	st := p.Settings
	if st == nil {
		fmt.Fprintf(w, "  ok   cas       mount settings not read (%s): rekey writes everything with check-and-set, so cas_required does not matter\n", p.SettingsErr)
		return
	}
	var mode []string
	switch {
	case st.CASRequired:
		mode = append(mode, "cas_required on the mount")
	case st.KeyCASRequired:
		mode = append(mode, "cas_required on the key")
	default:
		mode = append(mode, "cas_required off")
	}
	mode = append(mode, fmt.Sprintf("Vault keeps %d versions of the key", st.Kept()))
	fmt.Fprintf(w, "  %s cas       %s: every write rekey makes is check-and-set, and rekey keeps its own history of every version\n", mark(true), strings.Join(mode, "; "))
}
