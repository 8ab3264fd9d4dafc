package cli

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/rekey-dev/rekey/config"
	"github.com/rekey-dev/rekey/notifiers"
	"github.com/rekey-dev/rekey/rotation"
	"github.com/rekey-dev/rekey/state"
)

// AuditOptions are `rekey audit`'s flags and arguments.
type AuditOptions struct {
	Keys   []string
	Notify bool
}

// NewCmdAudit builds `rekey audit [KEY...] [--notify]`.
func NewCmdAudit(g *GlobalOptions, s Streams) *cobra.Command {
	o := &AuditOptions{}
	cmd := &cobra.Command{
		Use:   "audit [KEY...] [--notify]",
		Short: "The state of every integration: current, stale, compromised, pending, failing or unknown",
		Long: `audit works out what every integration of each key holds, without changing
anything: it reads the key back where the type allows (file, exec, http, vault),
uses updated_at and the fingerprint rekey recorded for GitHub secrets, and a
person's confirmation for manual ones. A check that cannot reach its target
says unknown, with the reason; it never guesses. Keys are audited at once.

Each integration's state is shown with how it was proven: exact (read back
and compared), timestamp (a write-only target's last write against rekey's
record), probe (a verify request or command), person (a confirmation), or
none. A write-only target with neither a timestamp nor a probe is never
current: it is unknown ("written, not provable; add a verify probe").

Each audit is recorded in Vault (under state_path), and the next one says what
changed since. --notify posts the result to Slack when something is not
current. The JSON output is described in docs/audit.md.

Exit codes: 0 every integration current, 3 otherwise (including when Vault
could not be read: every integration is then unknown), 2 usage or config.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Keys = args
			a, err := load(g, s)
			if err != nil {
				return err
			}
			return auditRun(cmd.Context(), a, o)
		},
	}
	cmd.Flags().BoolVar(&o.Notify, "notify", false, "post to Slack when some integration is not current")
	return cmd
}

// keyAuditDoc is one key's audit as printed: the engine's audit and when
// the previous one was.
type keyAuditDoc struct {
	*rotation.KeyAudit
	AllCurrent    bool       `json:"all_current"`
	PreviousAudit *time.Time `json:"previous_audit_at,omitempty"`
	// Handoffs is where each manual integration's hand-off code stands.
	Handoffs []rotation.HandoffStatus `json:"handoffs,omitempty"`
}

type auditDoc struct {
	At         time.Time     `json:"at"`
	Keys       []keyAuditDoc `json:"keys"`
	AllCurrent bool          `json:"all_current"`
	Notified   []string      `json:"notified,omitempty"`
	NotifyErr  string        `json:"notify_error,omitempty"`
	ExitCode   int           `json:"exit_code"`
}

func auditRun(ctx context.Context, a *app, o *AuditOptions) error {
	keys, err := a.selectKeys(o.Keys...)
	if err != nil {
		return err
	}
	var n notifiers.Notifier
	if o.Notify {
		var err error
		if n, err = a.notifier(); err != nil {
			return exit(ExitUsage, err, "")
		}
		if n == nil {
			return exit(ExitUsage, fmt.Errorf("--notify: no notifier is configured in %s", a.cfg.File), "configure notify.slack (or notify.console)")
		}
	}
	doc := auditDoc{At: time.Now().UTC(), Keys: make([]keyAuditDoc, len(keys))}
	if err := a.connectVault(ctx); err != nil {
		// Audit says what it knows: nothing, and why.
		for i, k := range keys {
			doc.Keys[i] = keyAuditDoc{KeyAudit: unreachable(k, a.cfg.IntegrationsOf(k.ID), doc.At, err)}
		}
	} else {
		var wg sync.WaitGroup
		for i, k := range keys {
			wg.Go(func() { doc.Keys[i] = a.auditKey(ctx, k) })
		}
		wg.Wait()
	}
	doc.AllCurrent = true
	for i := range doc.Keys {
		doc.Keys[i].AllCurrent = doc.Keys[i].KeyAudit.AllCurrent()
		doc.AllCurrent = doc.AllCurrent && doc.Keys[i].AllCurrent
	}
	doc.ExitCode = ExitOK
	if !doc.AllCurrent {
		doc.ExitCode = ExitDegraded
	}
	if n != nil {
		for _, ka := range doc.Keys {
			if ka.AllCurrent {
				continue
			}
			k, _ := a.cfg.KeyByID(ka.Key)
			if err := n.Notify(ctx, auditEvent(*k, ka.KeyAudit)); err != nil {
				a.log.Warn("audit report not delivered", "key", ka.Key, "err", err)
				doc.NotifyErr = err.Error()
				continue
			}
			doc.Notified = append(doc.Notified, ka.Key)
		}
	}
	if a.json() {
		writeJSON(a.s.Out, doc)
		return silent(doc.ExitCode)
	}
	printAudit(a.s.Out, doc)
	if doc.NotifyErr != "" {
		fmt.Fprintf(a.s.Err, "rekey: warning: the audit report was not posted: %s\n", doc.NotifyErr)
	}
	return silent(doc.ExitCode)
}

// auditKey audits one key's integrations with an engine of its own (an
// engine is not shared between goroutines).
func (a *app) auditKey(ctx context.Context, k config.Key) keyAuditDoc {
	var doc keyAuditDoc
	targets, err := a.targets(k.ID)
	if err != nil { // load built every integration once already
		doc.KeyAudit = unreachable(k, a.cfg.IntegrationsOf(k.ID), time.Now().UTC(), err)
		return doc
	}
	if st, _, err := a.store.KeyState(ctx, k.ID); err == nil && st.LastAudit != nil {
		at := st.LastAudit.At
		doc.PreviousAudit = &at
	}
	doc.KeyAudit = a.engine(nil).Audit(ctx, rotation.Job{Key: k, Targets: targets})
	doc.Handoffs = a.handoffStatuses(ctx, k)
	return doc
}

// unreachable is the audit of a key whose versions could not be read.
func unreachable(k config.Key, ins []config.Integration, at time.Time, err error) *rotation.KeyAudit {
	ka := &rotation.KeyAudit{Key: k.ID, At: at, Error: err.Error(), Integrations: []rotation.AuditResult{}}
	for _, in := range ins {
		ka.Integrations = append(ka.Integrations, rotation.AuditResult{Result: rotation.Result{
			ID: in.ID, Type: in.Type, Owner: in.Owner, State: state.Unknown, Proof: state.NoProof,
			Reason: "could not read the key's versions from Vault: " + err.Error(),
		}})
	}
	return ka
}

func auditEvent(k config.Key, ka *rotation.KeyAudit) notifiers.Event {
	ev := notifiers.Event{
		Kind: notifiers.AuditReport, At: ka.At, KeyID: ka.Key, Fingerprint: ka.Current, Owner: k.Owner,
	}
	notCurrent := 0
	for _, r := range ka.Integrations {
		if r.State == state.Current {
			continue
		}
		notCurrent++
		ev.Integrations = append(ev.Integrations, notifiers.Integration{
			ID: r.ID, Type: r.Type, State: r.State, Reason: r.Reason, Owner: r.Owner, Previous: r.Previous,
		})
	}
	ev.Title = fmt.Sprintf("Audit of %s: %d of %d integrations not current", ka.Key, notCurrent, len(ka.Integrations))
	var hints []string
	if ka.Error != "" {
		hints = append(hints, "The audit could not read the key from Vault: "+ka.Error)
	}
	has := func(s state.State) bool {
		for _, r := range ka.Integrations {
			if r.State == s {
				return true
			}
		}
		return false
	}
	if has(state.Compromised) {
		hints = append(hints, "Some integration holds a leaked key: give it the current one now, and find out how the leaked one came back.")
	}
	if has(state.Stale) || has(state.Failing) {
		hints = append(hints, "Fix what fails, then `rekey resume "+ka.Key+"`.")
	}
	if has(state.Pending) {
		hints = append(hints, "Manual integrations wait for `rekey confirm "+ka.Key+" INTEGRATION`.")
	}
	ev.Text = strings.Join(hints, "\n")
	return ev
}

func printAudit(w io.Writer, doc auditDoc) {
	total, current := 0, 0
	for i, ka := range doc.Keys {
		if i > 0 {
			fmt.Fprintln(w)
		}
		head := ka.Key
		if ka.Current != "" {
			head += ": current version " + ka.Current
		}
		fmt.Fprintf(w, "%s\n", head)
		if ka.Error != "" {
			fmt.Fprintf(w, "  could not be audited: %s\n", ka.Error)
		} else if ka.PreviousAudit != nil {
			fmt.Fprintf(w, "  audited in %s; changes since the last audit (%s) are marked\n", ka.Duration.Round(time.Millisecond), ka.PreviousAudit.UTC().Format(time.RFC3339))
		} else {
			fmt.Fprintf(w, "  audited in %s; no earlier audit on record\n", ka.Duration.Round(time.Millisecond))
		}
		if len(ka.Integrations) > 0 {
			fmt.Fprintf(w, "  %-10s %-11s %-16s %-7s %s\n", "PROOF", "STATE", "INTEGRATION", "TYPE", "REASON")
		}
		for _, r := range ka.Integrations {
			total++
			if r.State == state.Current {
				current++
			}
			reason := r.Reason
			if ka.Error != "" {
				reason = "not checked: the key's versions could not be read from Vault (above)"
			}
			changed := ""
			if r.Previous != "" {
				changed = fmt.Sprintf("  [changed: was %s]", r.Previous)
			}
			fmt.Fprintf(w, "  %-10s %-11s %-16s %-7s %s%s\n", proofWord(r.Proof), r.State, r.ID, r.Type, reason, changed)
			printHandoff(w, "    ", ka.Handoffs, r.ID)
		}
		if len(ka.Integrations) == 0 {
			fmt.Fprintln(w, "  no integrations configured")
		}
	}
	if doc.AllCurrent {
		fmt.Fprintf(w, "\nAll %d integrations current.\n", total)
		return
	}
	fmt.Fprintf(w, "\n%d of %d integrations current.\n", current, total)
	if len(doc.Notified) > 0 {
		fmt.Fprintf(w, "Notified for %s.\n", strings.Join(doc.Notified, ", "))
	}
}

// proofWord is how a proof class is shown in a column: "-" when the state
// was not observed (a write that failed).
func proofWord(p state.Proof) string {
	if p == "" {
		return "-"
	}
	return string(p)
}
