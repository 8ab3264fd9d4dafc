package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/rekey-dev/rekey/config"
	"github.com/rekey-dev/rekey/internal/sshpool"
	"github.com/rekey-dev/rekey/providers"
	"github.com/rekey-dev/rekey/rotation"
	"github.com/rekey-dev/rekey/state"
)

// preflight is what rekey found out before changing anything: the
// engine's preflight, and the wrong-group guard's reference.
type preflight struct {
	*rotation.Preflight
	// Identity is the wrong-group guard's reference: the current key's
	// Action Network group (identity.go).
	Identity *identityOK `json:"identity,omitempty"`
	identity *rotation.IdentityCheck
}

// preflight runs the engine's preflight of a rotation of k (rotationID
// names its records): what `rekey check` reports, and what rotate and
// leak check before the owner is told to click. It marks the
// integrations whose host's key is not trusted, takes the current key's
// group for the wrong-group guard, and says how each hand-off code will
// be delivered.
func (a *app) preflight(ctx context.Context, k *config.Key, targets []rotation.Target, rotationID string) *preflight {
	p := &preflight{Preflight: a.engine(nil).Preflight(ctx, rotation.Job{Key: *k, Targets: targets, Checker: a.checker(*k)}, rotationID)}
	for i := range p.Integrations {
		var hk *sshpool.HostKeyError
		p.Integrations[i].Untrusted = errors.As(p.Integrations[i].Err, &hk)
	}
	if p.VaultOK {
		a.takeIdentity(ctx, k, p.Current.Key, p)
	}
	a.preflightHandoffs(ctx, targets, p)
	a.trace("preflight")
	return p
}

// untrusted lists the integrations whose host's key rekey does not
// trust: a rotation stops before the owner is told to click, since
// nothing can be sent there until a person has checked that host.
func (p *preflight) untrusted() []rotation.Reachable {
	var out []rotation.Reachable
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

func printPreflight(w io.Writer, p *preflight) {
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
		printWrites(w, p.Preflight, mark)
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
func printWrites(w io.Writer, p *rotation.Preflight, mark func(bool) string) {
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
