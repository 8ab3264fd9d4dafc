// Package cli is rekey's command line: one file per command, each with an
// Options struct, a NewCmdX and an xRun that does the work.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/rekey-dev/rekey/secret"
	"github.com/rekey-dev/rekey/store"
)

// Exit codes, as SPEC.md fixes them.
const (
	ExitOK       = 0
	ExitStopped  = 1 // stopped before Vault was written, or not ready
	ExitUsage    = 2 // usage or configuration
	ExitDegraded = 3 // stored, but some integration is not current
)

// Streams are a command's standard files.
type Streams struct {
	In  *os.File
	Out io.Writer
	Err io.Writer

	// guard hides arguments that look like a key from Out and Err (Main
	// sets it up); nil hides nothing.
	guard *argGuard
}

// exitError carries an exit code with an optional message and hint.
type exitError struct {
	code int
	err  error
	hint string
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

func exit(code int, err error, hint string) error {
	return &exitError{code: code, err: err, hint: hint}
}

// silent exits with code without printing an error (the outcome is printed).
func silent(code int) error { return &exitError{code: code} }

// GlobalOptions are the flags every command takes.
type GlobalOptions struct {
	ConfigPath string
	Output     string
	Verbose    bool

	// redact knows every secret of this run; what the CLI prints, logs,
	// posts and records passes it.
	redact *secret.Redactor
	// tracer marks the steps of the run ($REKEY_TRACE).
	tracer *tracer
	// store is used instead of Vault when set (the CLI's logic tests run
	// on the in-memory store).
	store store.Store
}

// newRootCmd builds the rekey command tree on streams that already pass
// red (run sets them up, with the argument guard and net/http's log).
func newRootCmd(s Streams, red *secret.Redactor, st store.Store) *cobra.Command {
	g := &GlobalOptions{redact: red, tracer: newTracer(os.Getenv), store: st}
	g.tracer.mark("started")
	root := &cobra.Command{
		Use:   "rekey",
		Short: "Rotate third-party API keys and respond when one leaks",
		Long: `rekey rotates API keys that only a person can regenerate (Action Network's
REVOKE & GENERATE NEW KEY): it stores the new key in Vault, pushes it to every
integration at once, proves each works, and tells the team what is still broken.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       versionInfo(debug.ReadBuildInfo).String(),
	}
	root.SetVersionTemplate("{{.Version}}\n")
	root.SetIn(s.In)
	root.SetOut(s.Out)
	root.SetErr(s.Err)
	root.PersistentFlags().StringVar(&g.ConfigPath, "config", "", "configuration file (default $REKEY_CONFIG, else ./rekey.yaml)")
	root.PersistentFlags().StringVarP(&g.Output, "output", "o", "text", "output format: text or json")
	root.PersistentFlags().BoolVarP(&g.Verbose, "verbose", "v", false, "log what rekey does to stderr")
	root.AddCommand(
		NewCmdCheck(g, s),
		NewCmdRotate(g, s),
		NewCmdResume(g, s),
		NewCmdConfirm(g, s),
		NewCmdStatus(g, s),
		NewCmdLeak(g, s),
		NewCmdAudit(g, s),
		NewCmdScan(g, s),
		NewCmdServe(g, s),
		NewCmdReveal(g, s),
		NewCmdVersion(g, s),
	)
	return root
}

// Main runs rekey with args and returns the process's exit code.
func Main(args []string, s Streams) int { return run(args, s, nil) }

// run is Main, with the store to use instead of Vault (nil: Vault).
func run(args []string, s Streams, st store.Store) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// The first signal cancels the command (see signal.go); a second one
	// ends the process at once, as it would without this handler.
	context.AfterFunc(ctx, stop)
	red := secret.NewRedactor()
	// A key typed in the wrong place is never echoed: every argument that
	// looks like one is redacted from all output.
	s.guard = newArgGuard(args, red)
	s = redactStreams(s, red)
	if s.Err != nil {
		defer redactStdlibLog(s.Err)()
	}
	root := newRootCmd(s, red, st)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	// The error may quote an argument (no key "…"): compare the arguments
	// with the keys' versions first, where Vault can be reached.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	s.guard.settle(sctx)
	cancel()
	var ee *exitError
	if errors.As(err, &ee) {
		ee.err = saySignalled(ctx, ee.err)
		if ee.err != nil {
			fmt.Fprintf(s.Err, "rekey: error: %v\n", ee.err)
		}
		if ee.hint != "" {
			fmt.Fprintf(s.Err, "rekey: hint: %s\n", ee.hint)
		}
		return ee.code
	}
	// cobra's own errors: unknown command, bad flag, wrong arguments.
	fmt.Fprintf(s.Err, "rekey: error: %v\n", err)
	fmt.Fprintf(s.Err, "rekey: hint: run 'rekey --help'\n")
	return ExitUsage
}
