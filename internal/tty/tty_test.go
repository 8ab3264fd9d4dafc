//go:build linux

package tty

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func pipe(t *testing.T) (r, w *os.File) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	return r, w
}

func TestReadLine(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		close    bool
		err      error
	}{
		{in: "abc\nrest", want: "abc"},
		{in: "abc", close: true, want: "abc"},
		{in: "", close: true, want: ""},
		{in: strings.Repeat("x", 11) + "\n", err: ErrTooLong},
		{in: strings.Repeat("x", 11), err: ErrTooLong},
		{in: strings.Repeat("x", 10) + "\n", want: strings.Repeat("x", 10)},
	} {
		r, w := pipe(t)
		w.WriteString(tc.in)
		if tc.close {
			w.Close()
		}
		got, err := ReadLine(context.Background(), r, 10, false)
		if !errors.Is(err, tc.err) || string(got) != tc.want {
			t.Errorf("%q: got %q, %v; want %q, %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func TestReadLineEndsWithTheContext(t *testing.T) {
	r, _ := pipe(t) // a writer that never writes
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	_, err := ReadLine(ctx, r, 10, false)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want cancelled", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %v", d)
	}
}

// openPTY opens a new pseudo-terminal pair.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return m, s
}

// drain keeps what the terminal shows.
func drain(m *os.File) func() string {
	var mu sync.Mutex
	var out bytes.Buffer
	go func() {
		buf := make([]byte, 256)
		for {
			n, err := m.Read(buf)
			mu.Lock()
			out.Write(buf[:n])
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	return func() string { mu.Lock(); defer mu.Unlock(); return out.String() }
}

func lflag(t *testing.T, f *os.File) uint32 {
	t.Helper()
	tio, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	return uint32(tio.Lflag)
}

// Hidden input on a terminal: not echoed, read to the newline, and the
// terminal put back as it was, whether the line came or the context ended.
func TestReadLineHiddenOnATerminal(t *testing.T) {
	m, s := openPTY(t)
	shown := drain(m)
	before := lflag(t, s)
	if before&unix.ECHO == 0 {
		t.Fatal("a new pty does not echo")
	}
	done := make(chan string, 1)
	go func() {
		b, err := ReadLine(context.Background(), s, 100, true)
		if err != nil {
			done <- "error: " + err.Error()
			return
		}
		done <- string(b)
	}()
	time.Sleep(200 * time.Millisecond) // let echo be turned off
	m.WriteString("hidden-value\r")
	select {
	case got := <-done:
		if got != "hidden-value" {
			t.Errorf("read %q", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no line read")
	}
	time.Sleep(100 * time.Millisecond)
	if strings.Contains(shown(), "hidden-value") {
		t.Errorf("the terminal echoed the hidden input: %q", shown())
	}
	if got := lflag(t, s); got != before {
		t.Errorf("lflag %#o after the read, was %#o", got, before)
	}

	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	if _, err := ReadLine(ctx, s, 100, true); !errors.Is(err, context.Canceled) {
		t.Errorf("error %v, want cancelled", err)
	}
	if got := lflag(t, s); got != before {
		t.Errorf("lflag %#o after a cancelled read, was %#o", got, before)
	}
}
