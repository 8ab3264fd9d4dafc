//go:build unix

package secret

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A FIFO (or a device) given as the key file is refused at once: opening
// a FIFO for reading would wait for a writer that may never come.
func TestInputFileRefusesAFIFO(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "key")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{fifo, "/dev/null", t.TempDir()} {
		done := make(chan error, 1)
		go func() { _, err := (Input{File: path}).Read(); done <- err }()
		select {
		case err := <-done:
			if !errors.Is(err, ErrNotRegular) {
				t.Errorf("%s: error %v, want ErrNotRegular", path, err)
			}
			if err != nil && strings.Contains(err.Error(), path) {
				t.Errorf("error %q names the path", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: still reading after 10s", path)
		}
	}
}

// While rekey waits for the key on a pipe that never delivers it, ending
// the context (a signal) ends the read at once.
func TestInputPipeHonoursContext(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	defer r.Close()
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	_, err = Input{Stdin: r}.ReadContext(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want cancelled", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v to notice", d)
	}
}
