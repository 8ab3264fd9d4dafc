//go:build unix

package secret

import (
	"os"
	"syscall"
)

// openKeyFile opens the key file without blocking: opening a FIFO for
// reading waits for a writer, and one may never come.
func openKeyFile(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
}
