package cli

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/rekey-dev/rekey/rotation"
	"github.com/rekey-dev/rekey/state"
	"github.com/rekey-dev/rekey/vaultstore"
)

// ConfirmOptions are `rekey confirm`'s flags and arguments.
type ConfirmOptions struct {
	Key         string
	Integration string
	Note        string
}

// NewCmdConfirm builds `rekey confirm KEY INTEGRATION`.
func NewCmdConfirm(g *GlobalOptions, s Streams) *cobra.Command {
	o := &ConfirmOptions{}
	cmd := &cobra.Command{
		Use:   "confirm KEY INTEGRATION",
		Short: "Record that a person updated a manual integration, and run its probe",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Key, o.Integration = args[0], args[1]
			a, err := load(g, s)
			if err != nil {
				return err
			}
			return confirmRun(cmd.Context(), a, o)
		},
	}
	cmd.Flags().StringVar(&o.Note, "note", "", "what was done (recorded with the confirmation)")
	return cmd
}

func confirmRun(ctx context.Context, a *app, o *ConfirmOptions) error {
	k, targets, err := a.open(ctx, o.Key)
	if err != nil {
		return err
	}
	// A note is stored with the confirmation in Vault: never a key.
	a.s.guard.learn(ctx)
	if o.Note != "" && a.s.guard.holdsKey(o.Note) {
		return exit(ExitUsage, errors.New("--note holds what looks like a key; the note is stored in Vault with the confirmation, so nothing was recorded"),
			"write the note without the key; if it is a key of this list, treat it as leaked: `rekey leak "+k.ID+"`")
	}
	var target *rotation.Target
	for i := range targets {
		if targets[i].Config.ID == o.Integration {
			target = &targets[i]
		}
	}
	if target == nil {
		return exit(ExitUsage, fmt.Errorf("key %s has no integration %q in %s", k.ID, o.Integration, a.cfg.File), "")
	}
	n, err := a.notifier()
	if err != nil {
		return exit(ExitUsage, err, "")
	}
	res, err := a.engine(n).Confirm(ctx, rotation.Job{Key: *k, Targets: targets}, *target, o.Note)
	var nm *rotation.NotManualError
	var locked *vaultstore.LockedError
	switch {
	case errors.As(err, &nm):
		return exit(ExitUsage, err, "")
	case errors.As(err, &locked):
		return exit(ExitStopped, err, "wait for the rotation to finish, then confirm")
	case err != nil:
		return exit(ExitStopped, err, "")
	}
	code := ExitOK
	if res.State != state.Current {
		code = ExitStopped
	}
	if a.json() {
		writeJSON(a.s.Out, map[string]any{"key": k.ID, "integration": res, "recorded": true, "exit_code": code})
	} else {
		fmt.Fprintf(a.s.Out, "Recorded: %s of %s confirmed. State: %s (%s).\n", res.ID, k.ID, res.State, res.Reason)
	}
	return silent(code)
}
