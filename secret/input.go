package secret

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/term"
)

// MaxKeyBytes bounds what is read as a key, so a wrong file cannot fill memory.
const MaxKeyBytes = 4096

// ErrEmpty means the key read was empty after trimming white space.
var ErrEmpty = errors.New("the new key is empty")

// Input says where a new key comes from, in the order SPEC.md gives:
// a file, else stdin when it is not a terminal, else a hidden prompt.
type Input struct {
	File   string    // --new-key-file
	Stdin  *os.File  // nil means os.Stdin
	Prompt io.Writer // where the prompt is written (the terminal's stderr)
	Label  string    // what the prompt asks for
}

// Read reads one key. Surrounding white space is trimmed; an empty key is
// ErrEmpty. Errors never contain what was read.
func (in Input) Read() (Key, error) {
	if in.File != "" {
		f, err := os.Open(in.File)
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
		return readLine(f, "the new key file")
	}
	stdin := in.Stdin
	if stdin == nil {
		stdin = os.Stdin
	}
	if !term.IsTerminal(int(stdin.Fd())) {
		return readLine(stdin, "stdin")
	}
	label := in.Label
	if label == "" {
		label = "New key"
	}
	if in.Prompt != nil {
		fmt.Fprintf(in.Prompt, "%s (input hidden): ", label)
	}
	b, err := term.ReadPassword(int(stdin.Fd()))
	if in.Prompt != nil {
		fmt.Fprintln(in.Prompt)
	}
	if err != nil {
		return Key{}, fmt.Errorf("read key from terminal: %w", err)
	}
	return parse(string(b))
}

func readLine(r io.Reader, from string) (Key, error) {
	br := bufio.NewReader(io.LimitReader(r, MaxKeyBytes+1))
	line, err := br.ReadString('\n')
	if err != nil && err != io.EOF {
		return Key{}, fmt.Errorf("read key from %s: %w", from, err)
	}
	if len(line) > MaxKeyBytes {
		return Key{}, fmt.Errorf("read key from %s: longer than %d bytes", from, MaxKeyBytes)
	}
	return parse(line)
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
