//go:build unix

package scan

import (
	"errors"
	"os"
	"syscall"
)

// openRegular opens path for reading without following a symlink and
// without blocking on a pipe that has replaced the file since the walk saw
// it, and returns its size. Anything but a regular file is errNotRegular.
func openRegular(path string) (*os.File, int64, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return nil, 0, errNotRegular // a symlink now
		}
		return nil, 0, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, 0, errNotRegular
	}
	return f, fi.Size(), nil
}
