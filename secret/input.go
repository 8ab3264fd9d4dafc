package secret

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/rekey-dev/rekey/internal/tty"
)

// MaxKeyBytes bounds what is read as a key, so a wrong file cannot fill memory.
const MaxKeyBytes = 4096

// ErrEmpty means the key read was empty after trimming white space.
var ErrEmpty = errors.New("the new key is empty")

// ErrNotRegular means the key file is not a regular file (a FIFO, a
// device, a directory): it is refused at once rather than read from, since
// a FIFO nobody writes would block rekey for good. A pipe is meant for
// stdin.
var ErrNotRegular = errors.New("not a regular file")

// Input says where a new key comes from, in the order SPEC.md gives:
// a file, else stdin when it is not a terminal, else a hidden prompt.
type Input struct {
	File   string    // --new-key-file
	Stdin  *os.File  // nil means os.Stdin
	Prompt io.Writer // where the prompt is written (the terminal's stderr)
	Label  string    // what the prompt asks for
}

// Read reads one key; see ReadContext.
func (in Input) Read() (Key, error) { return in.ReadContext(context.Background()) }

// ReadContext reads one key. Surrounding white space is trimmed; an empty
// key is ErrEmpty. When ctx ends while rekey waits on stdin or on the
// prompt, it returns ctx.Err() at once (and the terminal is as it was).
// Errors never contain what was read.
func (in Input) ReadContext(ctx context.Context) (Key, error) {
	if in.File != "" {
		f, err := openKeyFile(in.File)
		if err != nil {
			// Not the path: a key passed by mistake as the path would be
			// printed.
			var pe *os.PathError
			if errors.As(err, &pe) {
				err = pe.Err
			}
			return Key{}, fmt.Errorf("new key file: cannot open it: %w", err)
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return Key{}, fmt.Errorf("new key file: %w", err)
		}
		if !fi.Mode().IsRegular() {
			return Key{}, fmt.Errorf("new key file: %w (%s)", ErrNotRegular, kind(fi.Mode()))
		}
		return readLine(ctx, f, "the new key file", false)
	}
	stdin := in.Stdin
	if stdin == nil {
		stdin = os.Stdin
	}
	if !tty.IsTerminal(stdin) {
		return readLine(ctx, stdin, "stdin", false)
	}
	label := in.Label
	if label == "" {
		label = "New key"
	}
	if in.Prompt != nil {
		fmt.Fprintf(in.Prompt, "%s (input hidden): ", label)
	}
	k, err := readLine(ctx, stdin, "the terminal", true)
	if in.Prompt != nil {
		fmt.Fprintln(in.Prompt)
	}
	return k, err
}

// kind names a file type that is not a regular file.
func kind(m fs.FileMode) string {
	switch t := m.Type(); {
	case t&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case t&fs.ModeCharDevice != 0:
		return "a character device"
	case t&fs.ModeDevice != 0:
		return "a block device"
	case t&fs.ModeSocket != 0:
		return "a socket"
	case t&fs.ModeDir != 0:
		return "a directory"
	}
	return "not a regular file"
}

func readLine(ctx context.Context, f *os.File, from string, hide bool) (Key, error) {
	line, err := tty.ReadLine(ctx, f, MaxKeyBytes, hide)
	switch {
	case errors.Is(err, tty.ErrTooLong):
		return Key{}, fmt.Errorf("read key from %s: longer than %d bytes", from, MaxKeyBytes)
	case err != nil && ctx.Err() != nil:
		return Key{}, fmt.Errorf("read key from %s: %w", from, ctx.Err())
	case err != nil:
		return Key{}, fmt.Errorf("read key from %s: %w", from, err)
	}
	return parse(string(line))
}

func parse(s string) (Key, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Key{}, ErrEmpty
	}
	if strings.ContainsAny(s, "\r\n\x00") {
		return Key{}, errors.New("the new key spans several lines or holds a NUL byte")
	}
	return New(s), nil
}
