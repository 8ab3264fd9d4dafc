package file

import (
	"context"
	"fmt"
	"sync"
)

// fileID names one file the way the system does: the device and inode of
// the directory that holds it, and its name there. It stays the same when
// the file is replaced by a rename, and two paths that reach one file
// (through a symbolic link, a bind mount, "a/../b") give one fileID.
type fileID struct {
	dev, ino uint64
	name     string
}

// writeLocks serialises the writes of this process to one file. Two
// integrations that hold two values of one .env (or one value twice) are
// applied at once by the engine; each reads the file, rewrites its value
// and renames its copy over the file, so without the lock the second
// rename would lose the first one's value, or find the file changed and
// fail. Holding the lock from the read to the end of the reload (and the
// putting back when the reload fails) makes the two writes one after the
// other, each on the other's result. Between processes, the flock(2)
// locks of local_unix.go (openFile) do the same; this lock comes first,
// so the integrations of one process queue here, not on a file lock.
var writeLocks = struct {
	mu sync.Mutex
	m  map[fileID]*writeLock
}{m: map[fileID]*writeLock{}}

type writeLock struct {
	ch   chan struct{} // holds a token while the lock is taken
	refs int           // holders and waiters
}

// lockWrite takes the write lock of id, waiting for it as long as ctx
// allows, and returns the func that releases it.
func lockWrite(ctx context.Context, id fileID, path string) (func(), error) {
	writeLocks.mu.Lock()
	l := writeLocks.m[id]
	if l == nil {
		l = &writeLock{ch: make(chan struct{}, 1)}
		writeLocks.m[id] = l
	}
	l.refs++
	writeLocks.mu.Unlock()

	drop := func() {
		writeLocks.mu.Lock()
		if l.refs--; l.refs == 0 {
			delete(writeLocks.m, id)
		}
		writeLocks.mu.Unlock()
	}
	select {
	case l.ch <- struct{}{}:
	case <-ctx.Done():
		drop()
		return nil, fmt.Errorf("file: %s: waiting for another integration's write to this file: %w", path, ctxErr(ctx))
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			<-l.ch
			drop()
		})
	}, nil
}
