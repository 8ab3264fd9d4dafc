package rotation

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/integrations"
	"github.com/rekey-dev/rekey/providers"
	"github.com/rekey-dev/rekey/secret"
	"github.com/rekey-dev/rekey/state"
	"github.com/rekey-dev/rekey/store"
)

// Preflight is what a rotation of one key found out before changing
// anything: what `rekey check` reports, and what rotate and leak check
// before the owner is told to click.
type Preflight struct {
	Key            string           `json:"key"`
	Vault          string           `json:"vault"`
	VaultOK        bool             `json:"vault_ok"`
	CurrentVersion int              `json:"current_version,omitempty"`
	Fingerprint    string           `json:"fingerprint,omitempty"`
	Locked         string           `json:"locked,omitempty"`
	Provider       providers.Result `json:"provider"`
	Integrations   []Reachable      `json:"integrations"`
	// Writes is every place the rotation writes, and what the store's
	// credentials lack there; WritesErr says why that could not be asked.
	Writes    []store.Write   `json:"writes"`
	WritesErr string          `json:"writes_error,omitempty"`
	Settings  *store.Settings `json:"settings,omitempty"`
	// SettingsErr says why the store's settings could not be read.
	SettingsErr string `json:"settings_error,omitempty"`
	// Current is the key's current version (the zero version when it has
	// none yet): the leaked key, for `rekey leak`.
	Current store.KeyVersion `json:"-"`
}

// Reachable is what the preflight found of one integration.
type Reachable struct {
	ID     string `json:"id"`
	Type   string `json:"type"`
	Host   string `json:"host,omitempty"` // the other host it is on, if any
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
	// Untrusted: its host's key is not the one rekey trusts (the caller,
	// who knows the SSH errors, says so from Err). A rotation does not
	// start until that is fixed.
	Untrusted bool `json:"untrusted_host,omitempty"`
	// Proof is how the integration's state will be proven (exact,
	// timestamp, probe, person, or none: never shown current).
	Proof state.Proof `json:"proof"`
	// Err is why it is not OK, as the integration said it.
	Err error `json:"-"`
}

// Ready reports whether nothing found stands in the way of a rotation.
func (p *Preflight) Ready() bool {
	if !p.VaultOK || p.WriteProblem() != nil || p.Locked != "" || p.Provider.Validity == providers.Unknown {
		return false
	}
	return p.IntegrationsReady()
}

// IntegrationsReady reports whether every integration passed.
func (p *Preflight) IntegrationsReady() bool {
	for _, in := range p.Integrations {
		if !in.OK {
			return false
		}
	}
	return true
}

// WriteProblem says which writes of the rotation the store's credentials
// cannot make, or nil.
func (p *Preflight) WriteProblem() error {
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

// Preflight checks, without writing anything, that the store holds the
// key, that its credentials may make every write the rotation rotationID
// will make (the key, its metadata, each of rekey's records: the store
// knows its layout; with hand-offs, their wrapping and records too),
// nobody is rotating the key, the provider answers
// for the current key (job.Checker), and every integration is reachable
// and writable as far as its type can tell, at most Concurrency at once,
// each within Timeout. What can be asked at once is.
func (e *Engine) Preflight(ctx context.Context, job Job, rotationID string) *Preflight {
	e.defaults()
	k := job.Key
	p := &Preflight{Key: k.ID, Vault: e.Store.Location(k.VaultPath)}
	var wg sync.WaitGroup
	// The integrations, while the store is asked.
	p.Integrations = make([]Reachable, len(job.Targets))
	form, hasForm := keyForm(job.Checker)
	wg.Go(func() {
		each(ctx, e.Concurrency, len(job.Targets), func(i int) {
			ictx, cancel := context.WithTimeout(ctx, e.Timeout)
			defer cancel()
			p.Integrations[i] = reachable(ictx, job.Targets[i], form, hasForm)
		}, func(i int) {
			t := job.Targets[i]
			p.Integrations[i] = Reachable{ID: t.Config.ID, Type: t.Config.Type, Detail: "not checked: " + ctx.Err().Error(), Proof: integrations.ProofClass(t.Integration)}
		})
	})
	wg.Go(func() {
		if l, err := e.Store.ReadLock(ctx, k.ID); err == nil && l.Held && !store.Abandoned(l, time.Now()) {
			p.Locked = (&store.LockedError{KeyID: k.ID, Holder: l}).Error()
		}
	})
	cur, err := e.Store.ReadKey(ctx, k.VaultPath)
	switch {
	case err == nil:
		p.VaultOK, p.CurrentVersion, p.Fingerprint, p.Current = true, cur.Version, cur.Fingerprint(), cur
	case errors.Is(err, failure.ErrNotFound):
		p.VaultOK = true // the first rotation stores version 1
	default:
		p.Vault += ": " + e.redact(err.Error())
	}
	if p.VaultOK {
		// Proven by what the store says of its credentials and of itself,
		// not by writing: the preflight changes nothing.
		wg.Go(func() {
			p.Writes = e.Store.RotationWrites(k.ID, k.VaultPath, rotationID, p.CurrentVersion > 0)
			if hw, ok := e.Store.(store.HandoffWriter); ok && HasHandoff(job.Targets) {
				p.Writes = append(p.Writes, hw.HandoffWrites()...)
			}
			if err := e.Store.CheckWrites(ctx, p.Writes); err != nil {
				p.WritesErr = e.redact(err.Error())
			}
		})
		wg.Go(func() {
			if st, err := e.Store.Settings(ctx, k.VaultPath); err != nil {
				p.SettingsErr = e.redact(err.Error())
			} else {
				p.Settings = &st
			}
		})
	}
	switch {
	case !cur.Key.IsZero() && job.Checker != nil:
		p.Provider = job.Checker.Check(ctx, cur.Key)
	case !cur.Key.IsZero():
		p.Provider = providers.Result{Validity: providers.Valid, Reason: "no provider check"}
	case p.VaultOK:
		p.Provider = providers.Result{Validity: providers.Valid, Reason: "no current key in Vault to check"}
	default:
		p.Provider = providers.Result{Validity: providers.Unknown, Reason: "no current key in Vault to check"}
	}
	wg.Wait()
	return p
}

// keyForm is what the provider says its keys look like, when it says.
func keyForm(c providers.Checker) (secret.Form, bool) {
	if f, ok := c.(providers.Former); ok && f.KeyForm().Valid() {
		return f.KeyForm(), true
	}
	return secret.Form{}, false
}

// reachable checks one integration as far as its type can tell, changing
// nothing. With the provider's key form, an integration whose target
// could not take some key of that form fails here, before the click,
// rather than after it with the new key in hand.
func reachable(ctx context.Context, t Target, form secret.Form, hasForm bool) Reachable {
	r := Reachable{ID: t.Config.ID, Type: t.Config.Type, OK: true}
	var err error
	if hasForm {
		if err := integrations.CheckAccepts(t.Integration, form); err != nil {
			r.OK, r.Detail, r.Err = false, err.Error(), err
			r.Proof = integrations.ProofClass(t.Integration)
			return r
		}
	}
	if rm, ok := t.Integration.(integrations.Remote); ok && rm.Host() != "" {
		// The host first: reachable, its key trusted, rekey let in.
		r.Host = rm.Host()
		if err := rm.CheckHost(ctx); err != nil {
			r.OK, r.Detail, r.Err = false, err.Error(), err
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
		r.OK, r.Detail, r.Err = false, err.Error(), err
	}
	if r.Host != "" && r.OK {
		r.Detail = "on " + r.Host + ": " + r.Detail
	}
	r.Proof = integrations.ProofClass(t.Integration) // after Preflight: what it found at the target
	return r
}
