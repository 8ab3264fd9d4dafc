package cli

import (
	"context"
	"errors"
	"fmt"
)

// Signals. Main cancels the command's context at the first SIGINT or
// SIGTERM (Ctrl-C, a service manager, a cancelled CI job). Whatever is in
// flight stops promptly: a read of the new key (the terminal put back as
// it was), a provider check, a Vault request, an integration's command
// (its process group is killed). The engine then records where every
// integration got to, writes the journal and releases the lock, as it
// does when a rotation ends, and the command exits as SPEC.md says: 1
// when the new key was not stored (nothing changed), 3 once it is in
// Vault (`rekey resume` finishes the job). A second signal ends the
// process at once; the records written so far are what `rekey resume`
// works from, as after a crash.

// errInterrupted marks the errors that already say a signal stopped the
// command.
var errInterrupted = errors.New("interrupted")

// interruptedBeforeStore is the end of a command that a signal stopped
// before the new key was stored. started says the rotation had begun
// (the plan may be on record, marked aborted).
func interruptedBeforeStore(started bool) error {
	if started {
		return exit(ExitStopped, fmt.Errorf("%w before the new key was stored; nothing was changed", errInterrupted), "")
	}
	return exit(ExitStopped, fmt.Errorf("%w; nothing was changed", errInterrupted), "")
}

// interruptedAfterStore adds to err, the end of a command that reached
// the point where the key is stored, that a signal cut it short, when it
// did and not every integration is current.
func interruptedAfterStore(ctx context.Context, err error, keyID string) error {
	var ee *exitError
	if ctx.Err() == nil || !errors.As(err, &ee) || ee.code == ExitOK {
		return err
	}
	msg := fmt.Errorf("%w: the integrations not current are on record", errInterrupted)
	if ee.err != nil {
		msg = fmt.Errorf("%w: %w", errInterrupted, ee.err)
	}
	return exit(ee.code, msg, "run `rekey resume "+keyID+"` to finish, once any integration that failed is fixed")
}

// saySignalled makes the error a command ended with say that a signal
// stopped it, when one did (ctx is cancelled only by a signal until Main
// returns) and the error does not say so already: a Vault read cut short
// in the preflight is "interrupted: vault …: context canceled", not a
// Vault problem.
func saySignalled(ctx context.Context, err error) error {
	if err == nil || ctx.Err() == nil || errors.Is(err, errInterrupted) {
		return err
	}
	return fmt.Errorf("%w: %w", errInterrupted, err)
}
