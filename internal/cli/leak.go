package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/rekey-dev/rekey/config"
	"github.com/rekey-dev/rekey/integrations"
	"github.com/rekey-dev/rekey/records"
	"github.com/rekey-dev/rekey/rotation"
	"github.com/rekey-dev/rekey/store"
)

// DefaultRecheckFor is how long `rekey leak` keeps checking, once the new
// key is stored, whether the leaked key still works. Action Network kills
// a key the moment REVOKE & GENERATE is clicked, but the owner may paste
// the new key into rekey before the click has gone through elsewhere.
const DefaultRecheckFor = 30 * time.Second

// LeakOptions are `rekey leak`'s flags and arguments.
type LeakOptions struct {
	Key             string
	Yes             bool
	DryRun          bool
	NewKeyFile      string
	AllowUnverified bool
	// RecheckFor bounds how long the leaked key is checked again after
	// the new key is stored, until the provider refuses it.
	RecheckFor time.Duration
}

// NewCmdLeak builds `rekey leak KEY`.
func NewCmdLeak(g *GlobalOptions, s Streams) *cobra.Command {
	o := &LeakOptions{}
	cmd := &cobra.Command{
		Use:   "leak KEY",
		Short: "Respond to a leaked key: alert, replace it everywhere, prove it dead, find its copies",
		Long: `leak is rotate with reason leak, plus containment. It checks whether the
leaked key (Vault's current version) still works, posts an urgent alert naming
every integration that breaks and the owner who must click REVOKE & GENERATE,
reads the new key (--new-key-file, piped stdin, or a hidden prompt), stores it,
updates every integration, and marks the leaked version compromised. Then it
checks the leaked key again, for up to --recheck-for, until the provider
refuses it; while it still works rekey says so loudly, here and in Slack. It
scans the key's scan_paths for copies of the leaked key, and records the
incident timeline and the time to contain in Vault.

Exit codes: 0 every integration current and the leaked key confirmed dead;
3 the new key is stored but some integration is not current, or the leaked key
still works or could not be checked; 1 stopped before Vault was written
(nothing changed); 2 usage or config. Copies found by the scan are reported
but do not change the exit code: the leaked key is dead by then, or exit is 3.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Key = args[0]
			if o.RecheckFor < 0 {
				return exit(ExitUsage, errors.New("--recheck-for must not be negative"), "")
			}
			a, err := load(g, s)
			if err != nil {
				return err
			}
			return leakRun(cmd.Context(), a, o)
		},
	}
	addKeyFlags(cmd, &o.Yes, &o.DryRun, &o.NewKeyFile, &o.AllowUnverified)
	cmd.Flags().DurationVar(&o.RecheckFor, "recheck-for", DefaultRecheckFor, "after storing the new key, keep checking this long whether the leaked key still works")
	return cmd
}

// Leaked-key states, as leak reports them (the engine's words).
const (
	leakWorks     = rotation.LeakWorks
	leakDead      = rotation.LeakDead
	leakUnknown   = rotation.LeakUnknown
	leakUnchecked = rotation.LeakUnchecked
)

// leakCheck is one verdict on the leaked key.
type leakCheck = rotation.LeakCheck

type leakedDoc struct {
	Version     int        `json:"version"`
	Fingerprint string     `json:"fingerprint"`
	Before      leakCheck  `json:"before"`
	After       *leakCheck `json:"after,omitempty"`
}

type leakDoc struct {
	outcomeDoc
	Leaked      leakedDoc             `json:"leaked"`
	Copies      *scanReport           `json:"copies"`
	Containment *rotation.Containment `json:"containment,omitempty"`
}

func leakRun(ctx context.Context, a *app, o *LeakOptions) error {
	declared := time.Now().UTC()
	k, targets, err := a.open(ctx, o.Key)
	if err != nil {
		return err
	}
	// The preflight checks the current version, the leaked key, with the
	// provider: that is the "does it still work" check.
	id := rotation.NewID(declared)
	pf := a.preflight(ctx, k, targets, id)
	human := a.human()
	if !pf.VaultOK {
		return exit(ExitStopped, fmt.Errorf("vault is not usable: %s", pf.Vault), "")
	}
	if pf.CurrentVersion == 0 {
		return exit(ExitStopped, fmt.Errorf("%s has no version in Vault (%s): there is no leaked key on record to replace", k.ID, pf.Vault),
			fmt.Sprintf("store the current key first with `rekey rotate %s`, or rotate with the key you have", k.ID))
	}
	leaked := pf.Current
	before := rotation.Verdict(*k, pf.Provider, time.Now().UTC())
	printLeakHeader(human, k, leaked, before, declared)

	if o.DryRun {
		return a.leakDryRun(ctx, k, leaked, before, pf, len(targets))
	}
	printPreflight(human, pf)
	if err := vaultReady(pf); err != nil {
		return err
	}
	if pf.Locked != "" {
		return exit(ExitStopped, errors.New(pf.Locked), "wait for it to finish; a lock from a process that died is freed when its lease expires")
	}
	if err := pf.stopUntrusted(); err != nil {
		return err
	}
	if !pf.IntegrationsReady() {
		fmt.Fprintf(human, "\nSome checks failed: those integrations will probably stay broken once the leaked key is revoked.\n")
	}
	eng, err := a.confirmedEngine(ctx, o.Yes, o.AllowUnverified, fmt.Sprintf("Respond to the leak of %s now? Every integration breaks when the leaked key is revoked, until it gets the new one.", k.ID))
	if err != nil {
		return err
	}
	job := rotation.Job{
		Key: *k, Targets: targets, Checker: a.checker(*k), Reason: "leak", Leak: true,
		RotationID: id, Identity: pf.identity, Timeline: rotation.LeakTimeline(declared, before),
	}
	a.alertLeak(ctx, eng, job, leaked, before)

	key, err := a.readKey(ctx, o.NewKeyFile, k)
	if err != nil {
		return err
	}
	out, err := a.applyRotation(ctx, eng, job, key)
	if err != nil && ctx.Err() != nil {
		return interruptedBeforeStore(true)
	}
	if err != nil {
		return rotationError(err)
	}

	// The new key is stored: the leaked one must be dead by now.
	after := eng.RecheckLeaked(ctx, job, leaked.Key, o.RecheckFor, func() {
		fmt.Fprintf(a.s.Err, "rekey: the leaked key still works; checking again for up to %s\n", o.RecheckFor)
	})
	switch after.State {
	case leakWorks:
		a.stillWorks(ctx, eng, job, leaked, after)
	case leakUnknown:
		fmt.Fprintf(a.s.Err, "rekey: warning: whether the leaked key %s is dead could not be checked (%s): check that it is revoked\n", leaked.Fingerprint(), after.Reason)
	}
	copies := a.scanLeaked(ctx, k, leaked)

	var marks []records.Mark
	if copies != nil && copies.Error == "" {
		marks = append(marks, records.Mark{At: time.Now().UTC(), What: fmt.Sprintf("scan_paths scanned: %s of the leaked key found", plural(len(copies.Copies), "copy", "copies"))})
	}
	rec, err := eng.RecordContainment(ctx, out.Rotation, after, marks...)
	if err != nil {
		fmt.Fprintf(a.s.Err, "rekey: warning: the incident timeline was not recorded in Vault: %v\n", err)
	}
	out.Rotation = rec
	cont, _ := rotation.ContainmentOf(rec)

	code := ExitOK
	if !out.AllCurrent() || (after.State != leakDead && after.State != leakUnchecked) {
		code = ExitDegraded
	}
	doc := leakDoc{
		outcomeDoc:  outcomeJSON(out, code),
		Leaked:      leakedDoc{Version: leaked.Version, Fingerprint: leaked.Fingerprint(), Before: before, After: &after},
		Copies:      copies,
		Containment: &cont,
	}
	if a.json() {
		writeJSON(a.s.Out, doc)
	} else {
		printOutcome(a.s.Out, out)
		printContainment(a.s.Out, k, doc)
	}
	if after.State == leakWorks {
		return interruptedAfterStore(ctx, exit(code, fmt.Errorf("the leaked key %s still works: it has not been revoked, or the key pasted was not the one generated by revoking it", leaked.Fingerprint()),
			fmt.Sprintf("%s must revoke it: %s; if that generates another key, store it with `rekey rotate %s --reason manual`", orSomeone(k.Owner), rotation.Instructions(*k), k.ID)), k.ID)
	}
	return interruptedAfterStore(ctx, silent(code), k.ID)
}

func printLeakHeader(w io.Writer, k *config.Key, leaked store.KeyVersion, before leakCheck, declared time.Time) {
	fmt.Fprintf(w, "LEAK of %s declared at %s: version %d (%s) is the leaked key.\n", k.ID, declared.Format(time.RFC3339), leaked.Version, leaked.Fingerprint())
	switch before.State {
	case leakWorks:
		fmt.Fprintf(w, "The leaked key STILL WORKS (%s). It must be revoked now.\n", before.Reason)
	case leakDead:
		fmt.Fprintf(w, "The leaked key no longer works (%s): it has been revoked already.\n", before.Reason)
	case leakUnknown:
		fmt.Fprintf(w, "Whether the leaked key still works could not be checked: %s.\n", before.Reason)
	default:
		fmt.Fprintf(w, "%s.\n", before.Reason)
	}
}

// leakDryRun prints the plan and the copies a scan finds, and changes
// nothing and tells nobody.
func (a *app) leakDryRun(ctx context.Context, k *config.Key, leaked store.KeyVersion, before leakCheck, pf *preflight, integrations int) error {
	copies := a.scanLeaked(ctx, k, leaked)
	human := a.human()
	if a.json() {
		writeJSON(a.s.Out, map[string]any{"preflight": pf, "leaked": leakedDoc{Version: leaked.Version, Fingerprint: leaked.Fingerprint(), Before: before}, "copies": copies, "dry_run": true})
	} else {
		printPreflight(human, pf)
		printCopiesSection(human, k, copies)
	}
	fmt.Fprintf(human, "\nDry run: nothing was changed and nobody was told. A leak response would alert the owner, store a new version of %s, update %d integrations and mark version %d compromised.\n", k.ID, integrations, leaked.Version)
	if pf.Locked != "" || !pf.IntegrationsReady() || pf.WriteProblem() != nil {
		return silent(ExitStopped)
	}
	return nil
}

// alertLeak says on the terminal and in an urgent Slack alert that the key
// leaked, whether it still works, what breaks and who must click.
func (a *app) alertLeak(ctx context.Context, eng *rotation.Engine, job rotation.Job, leaked store.KeyVersion, before leakCheck) {
	k := job.Key
	instructions := rotation.Instructions(k)
	w := a.human()
	fmt.Fprintf(w, "\nRotation %s of %s (leak).\n", job.RotationID, k.ID)
	if before.State == leakDead {
		fmt.Fprintf(w, "%s: the leaked key is revoked already; paste the key generated with it (%s)\n", orSomeone(k.Owner), instructions)
	} else {
		fmt.Fprintf(w, "%s: revoke it now: %s\n", orSomeone(k.Owner), instructions)
	}
	fmt.Fprintf(w, "Until rekey has the new key, these integrations are broken: %s\n", strings.Join(targetIDs(job.Targets), ", "))
	if eng.Notifier == nil {
		return
	}
	if err := eng.AlertLeak(ctx, job, leaked, before); err != nil {
		a.log.Warn("leak alert not delivered; carrying on", "err", err)
		fmt.Fprintf(a.s.Err, "rekey: warning: the leak alert was not posted (%v): tell %s yourself\n", err, orSomeone(k.Owner))
	}
}

// stillWorks says loudly, on stderr and in Slack, that the leaked key
// still works after the new one was stored.
func (a *app) stillWorks(ctx context.Context, eng *rotation.Engine, job rotation.Job, leaked store.KeyVersion, after leakCheck) {
	k := job.Key
	bar := strings.Repeat("!", 72)
	fmt.Fprintf(a.s.Err, "\n%s\n", bar)
	fmt.Fprintf(a.s.Err, "!! THE LEAKED KEY STILL WORKS: %s version %d (%s)\n", k.ID, leaked.Version, leaked.Fingerprint())
	fmt.Fprintf(a.s.Err, "!! Checked %d times since the new key was stored; the last check, at %s: %s\n", after.Checks, after.At.Format(time.RFC3339), after.Reason)
	fmt.Fprintf(a.s.Err, "!! It has not been revoked, or the key pasted was not the one generated by revoking it.\n")
	fmt.Fprintf(a.s.Err, "!! %s: %s\n", orSomeone(k.Owner), rotation.Instructions(k))
	fmt.Fprintf(a.s.Err, "%s\n\n", bar)
	if err := eng.AlertStillWorks(ctx, job, leaked.Fingerprint(), after); err != nil {
		a.log.Warn("leak alert not delivered", "err", err)
	}
}

// scanLeaked looks for copies of the leaked version under the key's
// scan_paths. Nil when there are none to scan.
func (a *app) scanLeaked(ctx context.Context, k *config.Key, leaked store.KeyVersion) *scanReport {
	if len(k.ScanPaths) == 0 {
		return nil
	}
	needles := []needleInfo{{Key: k.ID, Version: leaked.Version, Fingerprint: leaked.Fingerprint(), State: string(integrations.VersionCompromised), value: leaked.Key}}
	// Earlier leaks' keys too, whether Vault still holds them or not.
	all, err := a.keyNeedles(ctx, *k)
	if err != nil {
		a.log.Warn("could not list earlier compromised versions; looking for the leaked key only", "key", k.ID, "err", err)
	}
	for _, n := range all {
		if n.State == string(integrations.VersionCompromised) && n.Fingerprint != leaked.Fingerprint() {
			needles = append(needles, n)
		}
	}
	return a.runScan(ctx, k.ScanPaths, needles)
}

func printCopiesSection(w io.Writer, k *config.Key, copies *scanReport) {
	if copies == nil {
		fmt.Fprintf(w, "\nNo scan_paths configured for %s: copies of the leaked key were not looked for.\n", k.ID)
		return
	}
	fmt.Fprintf(w, "\nCopies of the leaked key under %s:\n", strings.Join(copies.Paths, ", "))
	copies.printCopies(w, "  ", false)
	if copies.Error != "" {
		fmt.Fprintf(w, "  The scan did not finish: %s\n", copies.Error)
	}
	if len(copies.NotLookedFor) > 0 {
		fmt.Fprintf(w, "  Not looked for: %s (%s)\n", strings.Join(copies.NotLookedFor, ", "), copies.NotLookedForWhy)
	}
	if len(copies.Copies) > 0 {
		fmt.Fprintln(w, "  Delete them or replace them with the new key: they hold a compromised key.")
	}
}

func printContainment(w io.Writer, k *config.Key, doc leakDoc) {
	l := doc.Leaked
	fmt.Fprintln(w)
	switch l.After.State {
	case leakDead:
		fmt.Fprintf(w, "Leaked key %s (version %d): confirmed dead at %s (%s).\n", l.Fingerprint, l.Version, l.After.At.Format(time.RFC3339), l.After.Reason)
	case leakWorks:
		fmt.Fprintf(w, "Leaked key %s (version %d): STILL WORKS after %d checks (%s).\n", l.Fingerprint, l.Version, l.After.Checks, l.After.Reason)
	case leakUnknown:
		fmt.Fprintf(w, "Leaked key %s (version %d): could not be confirmed dead: %s.\n", l.Fingerprint, l.Version, l.After.Reason)
	default:
		fmt.Fprintf(w, "Leaked key %s (version %d): %s.\n", l.Fingerprint, l.Version, l.After.Reason)
	}
	fmt.Fprintf(w, "Version %d is marked compromised in rekey's records.\n", l.Version)
	printCopiesSection(w, k, doc.Copies)

	c := doc.Containment
	fmt.Fprintln(w, "\nIncident timeline:")
	for _, m := range doc.Timeline {
		fmt.Fprintf(w, "  %s  +%-8s %s\n", m.At.Format("2006-01-02T15:04:05.000Z07:00"), fmtDuration(m.At.Sub(c.Declared)), m.What)
	}
	if !c.Contained.IsZero() {
		fmt.Fprintf(w, "Time to contain: %s (from leak declared to the leaked key dead and every integration current).\n", fmtDuration(c.TimeToContain))
		return
	}
	open := c.Open
	if l.After.State == leakUnchecked && len(open) > 0 && open[0] == "the leaked key is not confirmed dead" {
		open = open[1:]
		if len(open) == 0 {
			fmt.Fprintf(w, "Every integration current after %s; the leaked key's death cannot be checked (provider none).\n", fmtDuration(c.AllCurrent.Sub(c.Declared)))
			return
		}
	}
	var done []string
	if !c.OldKeyDead.IsZero() {
		done = append(done, "the leaked key was confirmed dead after "+fmtDuration(c.OldKeyDead.Sub(c.Declared)))
	}
	if !c.AllCurrent.IsZero() {
		done = append(done, "every integration was current after "+fmtDuration(c.AllCurrent.Sub(c.Declared)))
	}
	if len(done) > 0 {
		fmt.Fprintf(w, "Not contained yet: %s (%s).\n", strings.Join(open, "; "), strings.Join(done, "; "))
		return
	}
	fmt.Fprintf(w, "Not contained yet: %s.\n", strings.Join(open, "; "))
}

func fmtDuration(d time.Duration) string {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(10 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}
