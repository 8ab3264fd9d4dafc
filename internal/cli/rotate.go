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
	"github.com/rekey-dev/rekey/internal/liveview"
	"github.com/rekey-dev/rekey/internal/tty"
	"github.com/rekey-dev/rekey/notifiers"
	"github.com/rekey-dev/rekey/records"
	"github.com/rekey-dev/rekey/rotation"
	"github.com/rekey-dev/rekey/secret"
	"github.com/rekey-dev/rekey/state"
	"github.com/rekey-dev/rekey/vaultstore"
)

// RotateOptions are `rekey rotate`'s flags and arguments.
type RotateOptions struct {
	Key             string
	Reason          string
	Yes             bool
	DryRun          bool
	NewKeyFile      string
	AllowUnverified bool
}

// NewCmdRotate builds `rekey rotate KEY`.
func NewCmdRotate(g *GlobalOptions, s Streams) *cobra.Command {
	o := &RotateOptions{}
	cmd := &cobra.Command{
		Use:   "rotate KEY",
		Short: "Replace a key: tell the owner what to click, store the new key, update every integration",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Key = args[0]
			if o.Reason != "scheduled" && o.Reason != "manual" {
				return exit(ExitUsage, fmt.Errorf("--reason must be scheduled or manual, not %q", o.Reason), "a leaked key is `rekey leak KEY`")
			}
			a, err := load(g, s)
			if err != nil {
				return err
			}
			return rotateRun(cmd.Context(), a, o)
		},
	}
	cmd.Flags().StringVar(&o.Reason, "reason", "manual", "why: scheduled or manual")
	addKeyFlags(cmd, &o.Yes, &o.DryRun, &o.NewKeyFile, &o.AllowUnverified)
	return cmd
}

func addKeyFlags(cmd *cobra.Command, yes, dryRun *bool, file *string, allow *bool) {
	cmd.Flags().BoolVarP(yes, "yes", "y", false, "do not ask for confirmation")
	cmd.Flags().BoolVar(dryRun, "dry-run", false, "run the preflight and print the plan; change nothing")
	cmd.Flags().StringVar(file, "new-key-file", "", "read the new key from this file (else stdin when piped, else a hidden prompt)")
	cmd.Flags().BoolVar(allow, "allow-unverified", false, "store the new key even if the provider cannot be reached to check it")
}

func rotateRun(ctx context.Context, a *app, o *RotateOptions) error {
	k, targets, err := a.open(ctx, o.Key)
	if err != nil {
		return err
	}
	id := rotation.NewID(time.Now())
	pf := a.runPreflight(ctx, k, targets, id)
	human := a.human()
	if a.json() && o.DryRun {
		writeJSON(a.s.Out, map[string]any{"preflight": pf, "ready": pf.ready(), "dry_run": true})
	} else {
		pf.print(human)
	}
	if o.DryRun {
		fmt.Fprintf(human, "\nDry run: nothing was changed. A rotation would store a new version of %s and update %d integrations.\n", k.ID, len(targets))
		if !pf.ready() {
			return silent(ExitStopped)
		}
		return nil
	}
	if err := vaultReady(pf); err != nil {
		return err
	}
	if pf.Locked != "" {
		return exit(ExitStopped, errors.New(pf.Locked), "wait for it to finish; a lock from a process that died is freed when its lease expires")
	}
	if err := pf.stopUntrusted(); err != nil {
		return err
	}
	if !pf.ready() {
		fmt.Fprintf(human, "\nSome checks failed: those integrations will probably fail too, and stay broken once the old key is revoked.\n")
	}
	eng, err := a.confirmedEngine(ctx, o.Yes, o.AllowUnverified, fmt.Sprintf("Rotate %s now? The old key stops working the moment it is revoked.", k.ID))
	if err != nil {
		return err
	}
	job := rotation.Job{Key: *k, Targets: targets, Checker: a.checker(*k), Reason: o.Reason, RotationID: id, Identity: pf.identity}
	a.tellOwner(ctx, eng, job, false)

	key, err := a.readKey(ctx, o.NewKeyFile, k)
	if err != nil {
		return err
	}
	return a.runRotation(ctx, eng, job, key)
}

// vaultReady stops a rotation (exit 1, nothing changed, nobody told) when
// Vault cannot be used or this token cannot make every write it makes.
func vaultReady(pf *preflight) error {
	if !pf.VaultOK {
		return exit(ExitStopped, fmt.Errorf("vault is not usable: %s", pf.Vault), "")
	}
	if err := pf.writeProblem(); err != nil {
		return exit(ExitStopped, fmt.Errorf("%w; nothing was changed and nobody was told", err),
			"grant the token what configs/vault-policy.hcl grants, then run `rekey check`")
	}
	return nil
}

// confirmedEngine asks before going on (unless yes), then builds the
// engine that stores a new key, with the configured notifiers.
func (a *app) confirmedEngine(ctx context.Context, yes, allowUnverified bool, question string) (*rotation.Engine, error) {
	if err := a.confirm(ctx, yes, question); err != nil {
		return nil, err
	}
	n, err := a.notifier()
	if err != nil {
		return nil, exit(ExitUsage, err, "")
	}
	eng := a.engine(n)
	eng.AllowUnverified = allowUnverified
	return eng, nil
}

// human is where text meant for a person goes: stdout, or stderr when
// stdout carries JSON.
func (a *app) human() io.Writer {
	if a.json() {
		return a.s.Err
	}
	return a.s.Out
}

// confirm asks on the terminal unless --yes. Without a terminal to ask on,
// it is a usage error: scripts say --yes.
func (a *app) confirm(ctx context.Context, yes bool, question string) error {
	if yes {
		return nil
	}
	if !tty.IsTerminal(a.s.In) {
		return exit(ExitUsage, errors.New("confirmation needed and stdin is not a terminal"), "pass --yes to proceed without asking")
	}
	fmt.Fprintf(a.s.Err, "%s [y/N] ", question)
	line, _ := tty.ReadLine(ctx, a.s.In, 256, false)
	if ctx.Err() != nil {
		fmt.Fprintln(a.s.Err)
		return interruptedBeforeStore(false)
	}
	if ans := strings.ToLower(strings.TrimSpace(string(line))); ans != "y" && ans != "yes" {
		return exit(ExitStopped, errors.New("not confirmed; nothing was changed"), "")
	}
	return nil
}

// tellOwner says on the terminal and in Slack what the owner must click,
// and what breaks until rekey has the new key.
func (a *app) tellOwner(ctx context.Context, eng *rotation.Engine, job rotation.Job, urgent bool) {
	k := job.Key
	instructions := instructionsFor(k)
	ids, evIntegrations := waiting(job.Targets, "")
	w := a.human()
	fmt.Fprintf(w, "\nRotation %s of %s (%s).\n", job.RotationID, k.ID, job.Reason)
	if k.Owner != "" {
		fmt.Fprintf(w, "Owner: %s\n", k.Owner)
	}
	fmt.Fprintf(w, "Now: %s\n", instructions)
	fmt.Fprintf(w, "Until rekey has the new key, these integrations are broken: %s\n", strings.Join(ids, ", "))
	if eng.Notifier != nil {
		ev := notifiers.Event{
			Kind: notifiers.RotationStarted, At: time.Now().UTC(), Urgent: urgent, KeyID: k.ID, RotationID: job.RotationID,
			Reason: job.Reason, Owner: k.Owner, Instructions: instructions,
			Title:        fmt.Sprintf("Rotating %s (%s): %s, please %s", k.ID, job.Reason, orSomeone(k.Owner), instructions),
			Text:         fmt.Sprintf("%d integrations break when the old key is revoked and are updated as soon as the new key is in: %s", len(ids), someIDs(ids)),
			Integrations: evIntegrations,
		}
		if err := eng.Notifier.Notify(ctx, ev); err != nil {
			a.log.Warn("notification not delivered; carrying on", "err", err)
		}
	}
}

// instructionsFor is what the key's owner must do at the provider.
func instructionsFor(k config.Key) string {
	if k.Instructions == "" && k.Provider == "actionnetwork" {
		return "Action Network → Details → API & Sync → REVOKE & GENERATE NEW KEY"
	}
	return k.Instructions
}

// waiting lists the ids of targets, and each as an event's integration
// waiting for the new key, with reason.
func waiting(targets []rotation.Target, reason string) ([]string, []notifiers.Integration) {
	ids := make([]string, len(targets))
	evs := make([]notifiers.Integration, len(targets))
	for i, t := range targets {
		ids[i] = t.Config.ID
		evs[i] = notifiers.Integration{ID: t.Config.ID, Type: t.Config.Type, State: state.Waiting, Reason: reason, Owner: t.Config.Owner}
	}
	return ids, evs
}

// someIDs names the first integrations of ids for a message, and says how
// many more there are (the message lists them all below).
func someIDs(ids []string) string {
	const first = 20
	if len(ids) <= first {
		return strings.Join(ids, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(ids[:first], ", "), len(ids)-first)
}

func orSomeone(owner string) string {
	if owner == "" {
		return "key owner"
	}
	return owner
}

// readKey reads the new key from --new-key-file, piped stdin or a hidden
// prompt. An empty key stops the command with nothing changed.
func (a *app) readKey(ctx context.Context, file string, k *config.Key) (secret.Key, error) {
	key, err := secret.Input{File: file, Stdin: a.s.In, Prompt: a.s.Err, Label: "Paste the new key for " + k.ID}.ReadContext(ctx)
	a.g.redact.AddKey(key)
	if err != nil && ctx.Err() != nil {
		return key, interruptedBeforeStore(false)
	}
	if errors.Is(err, secret.ErrNotRegular) {
		return key, exit(ExitStopped, fmt.Errorf("%w; nothing was changed", err),
			"--new-key-file takes a regular file; to pass the key through a pipe, pipe it on stdin instead")
	}
	if errors.Is(err, secret.ErrEmpty) {
		return key, exit(ExitStopped, fmt.Errorf("new key refused: it is empty; nothing was changed"), "")
	}
	if err != nil {
		return key, exit(ExitStopped, fmt.Errorf("%w; nothing was changed", err), "")
	}
	return key, nil
}

// runRotation runs the engine with a live view and reports the outcome.
func (a *app) runRotation(ctx context.Context, eng *rotation.Engine, job rotation.Job, key secret.Key) error {
	out, err := a.applyRotation(ctx, eng, job, key)
	if err != nil && ctx.Err() != nil {
		return interruptedBeforeStore(true)
	}
	return interruptedAfterStore(ctx, a.report(out, err), job.Key.ID)
}

// applyRotation runs the engine with a live view on stderr.
func (a *app) applyRotation(ctx context.Context, eng *rotation.Engine, job rotation.Job, key secret.Key) (*rotation.Outcome, error) {
	ids, _ := waiting(job.Targets, "")
	view := liveview.New(a.s.Err, a.liveTerminal(), ids)
	eng.Progress = view.Set
	out, err := eng.Rotate(ctx, job, key)
	view.Close()
	if ic := job.Identity; ic != nil && ic.Warning != "" {
		fmt.Fprintf(a.s.Err, "rekey: warning: %s\n", ic.Warning)
	}
	a.printHandoffs()
	return out, err
}

// report prints an outcome and maps it to an exit code: 0 all current,
// 3 stored but not all current, 1 stopped before Vault was written.
func (a *app) report(out *rotation.Outcome, err error) error {
	if err != nil {
		return rotationError(err)
	}
	code := ExitOK
	if !out.AllCurrent() {
		code = ExitDegraded
	}
	if a.json() {
		writeJSON(a.s.Out, outcomeJSON(out, code))
	} else {
		printOutcome(a.s.Out, out)
	}
	if out.RecordErr != nil {
		return exit(code, fmt.Errorf("the outcome above could not be recorded in Vault: %w", out.RecordErr),
			"run `rekey resume "+out.Rotation.KeyID+"` once Vault answers, so the records catch up")
	}
	return silent(code)
}

// rotationError maps an error from the engine, which stored nothing, to
// exit 1 with a hint.
func rotationError(err error) error {
	var refused *rotation.RefusedError
	var notStored *rotation.NotStoredError
	var locked *vaultstore.LockedError
	switch {
	case errors.As(err, &refused):
		return exit(ExitStopped, fmt.Errorf("%v; nothing was changed", refused), "")
	case errors.As(err, &notStored):
		return exit(ExitStopped, notStored, "check the Vault token's policy (configs/vault-policy.hcl)")
	case errors.As(err, &locked):
		return exit(ExitStopped, locked, "wait for it to finish; a lock from a process that died is freed when its lease expires")
	case errors.Is(err, rotation.ErrNothingToResume):
		return exit(ExitStopped, err, "")
	}
	return exit(ExitStopped, err, "")
}

type outcomeDoc struct {
	RotationID     string            `json:"rotation_id"`
	Key            string            `json:"key"`
	Reason         string            `json:"reason"`
	Phase          records.Phase     `json:"phase"`
	OldVersion     int               `json:"old_version"`
	OldFingerprint string            `json:"old_fingerprint"`
	NewVersion     int               `json:"new_version"`
	NewFingerprint string            `json:"new_fingerprint"`
	Started        time.Time         `json:"started"`
	Finished       time.Time         `json:"finished"`
	Integrations   []rotation.Result `json:"integrations"`
	Timeline       []records.Mark    `json:"timeline,omitempty"`
	// RecordError says the outcome could not be written to Vault.
	RecordError string `json:"record_error,omitempty"`
	ExitCode    int    `json:"exit_code"`
}

func outcomeJSON(out *rotation.Outcome, code int) outcomeDoc {
	r := out.Rotation
	doc := outcomeDoc{
		RotationID: r.ID, Key: r.KeyID, Reason: r.Reason, Phase: r.Phase,
		OldVersion: r.OldVersion, OldFingerprint: r.OldFingerprint,
		NewVersion: r.NewVersion, NewFingerprint: r.NewFingerprint,
		Started: r.Started, Finished: r.Finished, Integrations: out.Results, Timeline: r.Timeline, ExitCode: code,
	}
	if out.RecordErr != nil {
		doc.RecordError = out.RecordErr.Error()
	}
	return doc
}

func printOutcome(w io.Writer, out *rotation.Outcome) {
	r := out.Rotation
	fmt.Fprintf(w, "\nRotation %s of %s (%s): version %d (%s) is in Vault", r.ID, r.KeyID, r.Reason, r.NewVersion, r.NewFingerprint)
	if r.OldVersion > 0 {
		fmt.Fprintf(w, ", replacing version %d (%s)", r.OldVersion, r.OldFingerprint)
	}
	fmt.Fprintln(w, ".")
	current := 0
	for _, res := range out.Results {
		if res.State == "current" {
			current++
		}
		fmt.Fprintf(w, "  %-11s %-16s %-7s %s\n", res.State, res.ID, res.Type, res.Reason)
	}
	fmt.Fprintf(w, "%d of %d integrations current.\n", current, len(out.Results))
	if current == len(out.Results) {
		return
	}
	fmt.Fprintln(w, "Still to do:")
	for _, res := range out.Results {
		switch res.State {
		case "current":
		case "pending":
			fmt.Fprintf(w, "  %s: %s updates it by hand, then: rekey confirm %s %s\n", res.ID, orSomeone(res.Owner), r.KeyID, res.ID)
		default:
			fmt.Fprintf(w, "  %s: %s — fix it, then: rekey resume %s\n", res.ID, res.Reason, r.KeyID)
		}
	}
}
