package cli

import (
	"context"
	"time"

	"github.com/spf13/cobra"

	"github.com/rekey-dev/rekey/rotation"
	"github.com/rekey-dev/rekey/serve"
	"github.com/rekey-dev/rekey/vaultstore"
)

// serveSSHIdle is how long rekey serve keeps an SSH connection no audit uses.
const serveSSHIdle = 2 * time.Minute

// ServeOptions are `rekey serve`'s flags.
type ServeOptions struct {
	Listen string
}

// NewCmdServe builds `rekey serve [--listen ADDR]`.
func NewCmdServe(g *GlobalOptions, s Streams) *cobra.Command {
	o := &ServeOptions{}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Daemon: scheduled audits, Slack reminders when a key is due, alerts on state changes, /metrics and /healthz",
		Long: `rekey serve audits every key's integrations each serve.audit_interval,
reminds a key's owner before it is due (serve.remind_before) and daily once it
is overdue, and alerts when an integration's state changes. Several instances
may share one Vault: only the holder of the lease does the scheduled work.
Logs are JSON on stderr. SIGTERM stops it and releases the lease.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			a, err := serveApp(g, s)
			if err != nil {
				return err
			}
			return serveRun(cmd.Context(), a, o)
		},
	}
	cmd.Flags().StringVar(&o.Listen, "listen", "", "address for /metrics and /healthz (default serve.listen, 127.0.0.1:9464)")
	return cmd
}

// serveApp loads the configuration as serve runs: JSON logs from Info up,
// and an SSH pool that holds no connection between audits, both given to
// the integrations as they are built.
func serveApp(g *GlobalOptions, s Streams) (*app, error) {
	return loadWith(g, s, loadOptions{daemon: true})
}

func serveRun(ctx context.Context, a *app, o *ServeOptions) error {
	sc := a.cfg.Serve
	if o.Listen != "" {
		sc.Listen = o.Listen
	}
	var jobs []rotation.Job
	for _, k := range a.cfg.Keys {
		targets, err := a.targets(k.ID)
		if err != nil {
			return err
		}
		jobs = append(jobs, rotation.Job{Key: k, Targets: targets, Checker: a.checker(k)})
	}
	n, err := a.notifier()
	if err != nil {
		return exit(ExitUsage, err, "")
	}
	if n == nil {
		a.log.Warn("no notifier configured: reminders and alerts are only logged", "config", a.cfg.File)
	}
	if err := a.connectVault(ctx); err != nil {
		return err
	}
	if a.vault != nil {
		go vaultstore.KeepLoggedIn(ctx, a.vault.Client(), a.cfg.Vault, a.getenv, a.log)
	}
	srv, err := serve.New(serve.Options{
		Serve:    sc,
		Store:    a.store,
		Engine:   a.engine(n),
		Jobs:     jobs,
		Notifier: n,
		Logger:   a.log,
	})
	if err != nil {
		return exit(ExitUsage, err, "")
	}
	if err := srv.Run(ctx); err != nil {
		return exit(ExitStopped, err, "")
	}
	return nil
}
