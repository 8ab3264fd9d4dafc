package cli

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/rekey-dev/rekey/internal/liveview"
	"github.com/rekey-dev/rekey/rotation"
)

// ResumeOptions are `rekey resume`'s arguments.
type ResumeOptions struct {
	Key string
}

// NewCmdResume builds `rekey resume KEY`.
func NewCmdResume(g *GlobalOptions, s Streams) *cobra.Command {
	o := &ResumeOptions{}
	return &cobra.Command{
		Use:   "resume KEY",
		Short: "Apply and verify again every integration of the latest rotation that is not current",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Key = args[0]
			a, err := load(g, s)
			if err != nil {
				return err
			}
			return resumeRun(cmd.Context(), a, o)
		},
	}
}

func resumeRun(ctx context.Context, a *app, o *ResumeOptions) error {
	k, targets, err := a.open(ctx, o.Key)
	if err != nil {
		return err
	}
	n, err := a.notifier()
	if err != nil {
		return exit(ExitUsage, err, "")
	}
	eng := a.engine(n)
	ids := make([]string, len(targets))
	for i, t := range targets {
		ids[i] = t.Config.ID
	}
	view := liveview.New(a.s.Err, a.liveTerminal(), ids)
	eng.Progress = view.Set
	out, err := eng.Resume(ctx, rotation.Job{Key: *k, Targets: targets, Checker: a.checker(*k), Reason: "resume"})
	view.Close()
	a.printHandoffs()
	return interruptedAfterStore(ctx, a.report(out, err), k.ID)
}
