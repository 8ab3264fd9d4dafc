package cli

import (
	"io"
	"os"

	"golang.org/x/term"
)

// isTerminal reports whether w is a terminal, looking through writers
// that wrap another (the redacting streams).
func isTerminal(w io.Writer) bool {
	for {
		u, ok := w.(interface{ Unwrap() io.Writer })
		if !ok {
			break
		}
		w = u.Unwrap()
	}
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// liveTerminal reports whether the live view may redraw lines in place:
// stderr is a terminal, and the console notifier is not printing on it
// at the same time (its messages would be drawn over).
func (a *app) liveTerminal() bool {
	return isTerminal(a.s.Err) && !a.cfg.Notify.Console
}
