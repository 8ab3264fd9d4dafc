//go:build !(aix || darwin || dragonfly || freebsd || linux || netbsd || openbsd || solaris || zos)

package tty

import (
	"bufio"
	"context"
	"io"
	"os"

	"golang.org/x/term"
)

// ReadLine reads from f up to the first newline or the end of the input
// (see the Unix version). Here the read runs in a goroutine that is left
// behind when ctx ends first; the process is about to exit then.
func ReadLine(ctx context.Context, f *os.File, max int, hide bool) ([]byte, error) {
	type result struct {
		line []byte
		err  error
	}
	done := make(chan result, 1)
	go func() {
		if hide && term.IsTerminal(int(f.Fd())) {
			b, err := term.ReadPassword(int(f.Fd()))
			done <- result{b, err}
			return
		}
		r := bufio.NewReader(io.LimitReader(f, int64(max)+1))
		b, err := r.ReadBytes('\n')
		if err == io.EOF {
			err = nil
		}
		done <- result{b, err}
	}()
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case r := <-done:
		if r.err != nil {
			return nil, r.err
		}
		l, ok := cut(r.line)
		if len(l) > max || !ok && len(r.line) > max {
			return nil, ErrTooLong
		}
		return l, nil
	}
}
