//go:build aix || darwin || dragonfly || freebsd || linux || netbsd || openbsd || solaris || zos

package tty

import (
	"context"
	"errors"
	"os"

	"golang.org/x/sys/unix"
	"golang.org/x/term"
)

// pollEvery is how often a read waiting for input looks at its context.
const pollEvery = 100 // milliseconds

// ReadLine reads from f up to the first newline or the end of the input,
// and returns the line without the newline. More than max bytes before a
// newline is ErrTooLong. When ctx ends first, it returns ctx.Err(). With
// hide and f a terminal, what is typed is not echoed (the terminal still
// reads whole lines and turns Ctrl-C into SIGINT), and the terminal is
// restored before ReadLine returns, whatever ends the read.
func ReadLine(ctx context.Context, f *os.File, max int, hide bool) ([]byte, error) {
	fd := int(f.Fd())
	if hide && term.IsTerminal(fd) {
		old, err := term.GetState(fd)
		if err != nil {
			return nil, err
		}
		tio, err := unix.IoctlGetTermios(fd, ioctlReadTermios)
		if err != nil {
			return nil, err
		}
		tio.Lflag &^= unix.ECHO
		tio.Lflag |= unix.ICANON | unix.ISIG
		tio.Iflag |= unix.ICRNL
		if err := unix.IoctlSetTermios(fd, ioctlWriteTermios, tio); err != nil {
			return nil, err
		}
		defer term.Restore(fd, old)
	}

	var line []byte
	buf := make([]byte, 512)
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, pollEvery)
		if errors.Is(err, unix.EINTR) || err == nil && n == 0 {
			continue
		}
		if err != nil {
			return nil, err
		}
		n, err = unix.Read(fd, buf)
		if errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n == 0 { // the end of the input
			return line, nil
		}
		line = append(line, buf[:n]...)
		if l, ok := cut(line); ok {
			if len(l) > max {
				return nil, ErrTooLong
			}
			return l, nil
		}
		if len(line) > max {
			return nil, ErrTooLong
		}
	}
}
