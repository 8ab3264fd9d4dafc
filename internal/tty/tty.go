// Package tty reads a line of what a person types, or of what a pipe
// gives, so that the command's context can stop the read: a signal
// (SIGINT, SIGTERM) cancels the context, and the read ends at once instead
// of waiting for a line that may never come. When the input is hidden
// (a key typed at a prompt), the terminal is put back as it was however
// the read ends.
package tty

import (
	"errors"
	"os"

	"golang.org/x/term"
)

// ErrTooLong means more than the allowed bytes came before a newline.
var ErrTooLong = errors.New("line too long")

// IsTerminal reports whether f is a terminal.
func IsTerminal(f *os.File) bool { return f != nil && term.IsTerminal(int(f.Fd())) }

// cut returns line up to its first newline (excluded) and whether there
// was one.
func cut(line []byte) ([]byte, bool) {
	for i, c := range line {
		if c == '\n' {
			return line[:i], true
		}
	}
	return line, false
}
