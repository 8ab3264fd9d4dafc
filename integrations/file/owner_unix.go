//go:build unix

package file

import (
	"io/fs"
	"os"
	"syscall"
)

// keepOwner gives tmp the owner and group of orig. Changing to another
// owner needs privilege; failing to is an error, since a service that
// reads the file as its owner could no longer read it.
func keepOwner(tmp *os.File, orig fs.FileInfo) error {
	want, ok := orig.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	got, err := tmp.Stat()
	if err != nil {
		return err
	}
	have, ok := got.Sys().(*syscall.Stat_t)
	if !ok || have.Uid == want.Uid && have.Gid == want.Gid {
		return nil
	}
	return tmp.Chown(int(want.Uid), int(want.Gid))
}
