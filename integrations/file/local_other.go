//go:build !unix

package file

import (
	"context"
	"fmt"

	"github.com/rekey-dev/rekey/failure"
)

// On a system without openat and O_NOFOLLOW rekey cannot rewrite a file
// with the guarantees of local_unix.go, so it does not rewrite one.

type fileStat struct{}

func (fileStat) perm() uint32 { return 0 }

type local struct {
	content []byte
	st      fileStat
}

func (f *File) open(context.Context, bool) (*local, error) {
	return nil, fmt.Errorf("file: %s: file integrations need a Unix system: %w", f.path, failure.ErrInvalid)
}

func (*local) close() {}

func (*local) replace([]byte, uint32, fileStat) (fileStat, error) { return fileStat{}, nil }

func (*local) probe(uint32) error { return nil }
