//go:build unix

package file

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rekey-dev/rekey/failure"
)

// This file reads and replaces a file on this host without trusting the
// path twice. The directory is opened once; the file is found, opened,
// checked and replaced relative to that open directory (openat, fstatat,
// renameat), so what was checked is what is read and what is replaced,
// even while someone else renames things in the directory.
//
//   - The last step of the path is never followed when it is a symbolic
//     link, unless the integration says follow_symlinks: true; even then
//     only a link to a regular file beneath the path's own directory
//     (through real directories, without "..") owned by the directory's
//     owner is followed. Otherwise the owner of the directory (a web user,
//     a deploy user) could point the file at one that only root may write,
//     and rekey, run as root, would rewrite it.
//   - The file is opened with O_NOFOLLOW and O_NONBLOCK and checked after
//     opening (fstat): anything but a regular file (a FIFO, a device, a
//     socket, a directory) is refused at once instead of blocking rekey
//     for good on a FIFO nobody writes.
//   - The temporary copy is created in the file's directory with O_EXCL
//     and O_NOFOLLOW, and renamed over the file within that directory.

// fileStat is what rekey keeps of a stat: enough to know a file again.
type fileStat struct {
	dev, ino uint64
	mode     uint32 // type and permission bits, as st_mode
	uid, gid uint32
	size     int64
	mtime    time.Time
}

func statOf(st *unix.Stat_t) fileStat {
	return fileStat{
		dev: uint64(st.Dev), ino: uint64(st.Ino), mode: uint32(st.Mode),
		uid: st.Uid, gid: st.Gid, size: st.Size,
		mtime: time.Unix(int64(st.Mtim.Sec), int64(st.Mtim.Nsec)),
	}
}

func (s fileStat) regular() bool { return s.mode&unix.S_IFMT == unix.S_IFREG }

func (s fileStat) symlink() bool { return s.mode&unix.S_IFMT == unix.S_IFLNK }

// perm is the permission bits, setuid, setgid and sticky included.
func (s fileStat) perm() uint32 { return s.mode & 0o7777 }

// same reports whether s and t are one file, unchanged.
func (s fileStat) same(t fileStat) bool {
	return s.dev == t.dev && s.ino == t.ino && s.size == t.size && s.mtime.Equal(t.mtime)
}

// kind names a file type that is not a regular file.
func (s fileStat) kind() string {
	switch s.mode & unix.S_IFMT {
	case unix.S_IFIFO:
		return "a FIFO"
	case unix.S_IFCHR:
		return "a character device"
	case unix.S_IFBLK:
		return "a block device"
	case unix.S_IFDIR:
		return "a directory"
	case unix.S_IFSOCK:
		return "a socket"
	case unix.S_IFLNK:
		return "a symbolic link"
	}
	return "not a regular file"
}

func fstat(fd int) (fileStat, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fileStat{}, err
	}
	return statOf(&st), nil
}

func lstatAt(dir int, name string) (fileStat, error) {
	var st unix.Stat_t
	if err := unix.Fstatat(dir, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fileStat{}, err
	}
	return statOf(&st), nil
}

// local is a file of this host opened for a rewrite: its content and what
// it was when read, and the directory and name it is replaced through.
type local struct {
	path    string // as configured, for messages
	top     int    // the configured path's directory
	dir     int    // the directory holding the file (top, or beneath it through a link)
	name    string // the file's name in dir
	linked  bool   // reached through the configured path's symbolic link
	content []byte
	st      fileStat // the file that was read
	unlock  func()   // releases the write lock; nil when not taken
	locked  []int    // descriptors holding flock(2) locks, closed by close
}

// open finds, checks and reads the file. With write, it first takes the
// file's write lock (see writeLocks) for as long as ctx allows; close
// releases it.
func (f *File) open(ctx context.Context, write bool) (*local, error) {
	top, err := unix.Open(filepath.Dir(f.path), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, osError("read", f.path, err)
	}
	l := &local{path: f.path, top: top, dir: top}
	ok := false
	defer func() {
		if !ok {
			l.close()
		}
	}()
	if l.dir, l.name, l.linked, err = f.resolve(top); err != nil {
		return nil, err
	}
	if write {
		ds, err := fstat(l.dir)
		if err != nil {
			return nil, osError("read", f.path, err)
		}
		if l.unlock, err = lockWrite(ctx, fileID{ds.dev, ds.ino, l.name}, f.path); err != nil {
			return nil, err
		}
	}

	fh, err := f.openFile(ctx, l, write)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	if l.linked {
		ts, err := fstat(top)
		if err != nil {
			return nil, osError("read", f.path, err)
		}
		if l.st.uid != ts.uid {
			return nil, fmt.Errorf("file: %s: the symbolic link points to a file owned by uid %d, not by the owner of %s (uid %d); rekey does not follow it: %w",
				f.path, l.st.uid, filepath.Dir(f.path), ts.uid, failure.ErrUnauthorized)
		}
	}
	l.content, err = io.ReadAll(io.LimitReader(fh, maxFileBytes+1)) // a regular file: never blocks
	if err != nil {
		return nil, osError("read", f.path, err)
	}
	if len(l.content) > maxFileBytes {
		return nil, fmt.Errorf("file: %s is larger than %d bytes: %w", f.path, maxFileBytes, failure.ErrInvalid)
	}
	ok = true
	return l, nil
}

// openFile opens the file l names and checks it is a regular file. With
// write, it also takes the file's advisory lock (flock(2), exclusive),
// waiting for it as long as ctx allows, and makes sure the file it locked
// is still the one at the path (another process may have renamed a new
// one over it while this one waited); the lock is held until l.close.
func (f *File) openFile(ctx context.Context, l *local, write bool) (*os.File, error) {
	for attempt := 0; ; attempt++ {
		// Look before opening, so that a device is not even opened
		// (opening some has effects), then check what was opened.
		pre, err := lstatAt(l.dir, l.name)
		if err != nil {
			return nil, osError("read", f.path, err)
		}
		if err := f.checkKind(pre, l.linked); err != nil {
			return nil, err
		}
		fd, err := unix.Openat(l.dir, l.name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.ELOOP) {
			return nil, f.checkKind(fileStat{mode: unix.S_IFLNK}, l.linked)
		}
		if err != nil {
			return nil, osError("read", f.path, err)
		}
		fh := os.NewFile(uintptr(fd), f.path)
		if l.st, err = fstat(fd); err != nil {
			fh.Close()
			return nil, osError("read", f.path, err)
		}
		if err := f.checkKind(l.st, l.linked); err != nil {
			fh.Close()
			return nil, err
		}
		if !write {
			return fh, nil
		}
		held, err := flockWait(ctx, fd, f.path)
		if err != nil {
			fh.Close()
			return nil, err
		}
		if held {
			// Another process may have replaced the file while this one
			// waited: the lock must be the lock of the file at the path.
			now, err := lstatAt(l.dir, l.name)
			if err != nil || now.dev != l.st.dev || now.ino != l.st.ino {
				fh.Close()
				if attempt < 100 {
					continue
				}
				return nil, fmt.Errorf("file: %s: replaced by other writers 100 times while rekey waited for it: %w", f.path, failure.ErrTransient)
			}
			if err := l.hold(fd); err != nil {
				fh.Close()
				return nil, osError("read", f.path, err)
			}
		}
		return fh, nil
	}
}

// flockWait takes an exclusive flock(2) on fd, polling as long as ctx
// allows. held is false when the file system has no such locks (some
// network file systems): the write then goes on with the in-process lock
// and the conflict check alone.
func flockWait(ctx context.Context, fd int, path string) (held bool, err error) {
	wait := 2 * time.Millisecond
	for {
		err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB)
		switch {
		case err == nil:
			return true, nil
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.ENOLCK), errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, unix.ENOSYS), errors.Is(err, unix.EINVAL), errors.Is(err, unix.EBADF):
			return false, nil
		case !errors.Is(err, unix.EWOULDBLOCK):
			return false, osError("lock", path, err)
		}
		select {
		case <-ctx.Done():
			return false, fmt.Errorf("file: %s: waiting for another process's write to this file: %w", path, ctxErr(ctx))
		case <-time.After(wait):
		}
		wait = min(2*wait, 50*time.Millisecond)
	}
}

// hold keeps fd's lock until close, through a descriptor of its own (a
// duplicate shares the lock: flock(2) locks belong to the open file).
func (l *local) hold(fd int) error {
	dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return err
	}
	l.locked = append(l.locked, dup)
	return nil
}

// checkKind refuses anything but a regular file. followed says the file
// was reached through the configured path's symbolic link.
func (f *File) checkKind(s fileStat, followed bool) error {
	switch {
	case s.regular():
		return nil
	case s.symlink() && followed:
		return fmt.Errorf("file: %s: the symbolic link points to another symbolic link, which rekey does not follow: %w", f.path, failure.ErrUnauthorized)
	case s.symlink():
		return fmt.Errorf("file: %s is a symbolic link; rekey does not follow one (another user may have put it there) unless the integration says follow_symlinks: true: %w", f.path, failure.ErrUnauthorized)
	}
	return fmt.Errorf("file: %s is not a regular file (%s): %w", f.path, s.kind(), failure.ErrInvalid)
}

// resolve returns the directory holding the file and its name there:
// top and the path's last step, unless that step is a symbolic link that
// follow_symlinks allows (see the top of this file).
func (f *File) resolve(top int) (dir int, name string, linked bool, err error) {
	name = filepath.Base(f.path)
	s, err := lstatAt(top, name)
	if err != nil {
		return top, name, false, osError("read", f.path, err)
	}
	if !s.symlink() || !f.followSymlinks {
		return top, name, false, nil // checkKind refuses a link
	}
	target, err := readlinkAt(top, name)
	if err != nil {
		return top, name, false, osError("read", f.path, err)
	}
	rel, ok := beneath(filepath.Dir(f.path), target)
	if !ok {
		return top, name, false, fmt.Errorf("file: %s: the symbolic link points outside %s; rekey follows a link only down into the directory it is in, without \"..\": %w",
			f.path, filepath.Dir(f.path), failure.ErrUnauthorized)
	}
	steps := strings.Split(rel, "/")
	dir = top
	for _, step := range steps[:len(steps)-1] {
		next, err := unix.Openat(dir, step, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
		if err != nil {
			if s, serr := lstatAt(dir, step); serr == nil && s.symlink() {
				err = fmt.Errorf("file: %s: the symbolic link's target goes through another symbolic link (%s), which rekey does not follow: %w", f.path, step, failure.ErrUnauthorized)
			} else {
				err = osError("read", f.path, err)
			}
			if dir != top {
				unix.Close(dir)
			}
			return top, name, false, err
		}
		if dir != top {
			unix.Close(dir)
		}
		dir = next
	}
	return dir, steps[len(steps)-1], true, nil
}

// beneath turns a link's target into a path relative to dir made of plain
// steps (no "", "." or ".."), when it names something beneath dir: a
// relative target, or an absolute one under dir or under dir with its
// symbolic links resolved.
func beneath(dir, target string) (string, bool) {
	rel := target
	if filepath.IsAbs(target) {
		rel = ""
		bases := []string{filepath.Clean(dir)}
		if real, err := filepath.EvalSymlinks(dir); err == nil {
			bases = append(bases, real)
		}
		for _, b := range bases {
			if r, ok := strings.CutPrefix(target, b+"/"); ok {
				rel = r
				break
			}
		}
	}
	var steps []string
	for _, s := range strings.Split(rel, "/") {
		switch s {
		case "", ".":
		case "..":
			return "", false
		default:
			steps = append(steps, s)
		}
	}
	if len(steps) == 0 {
		return "", false
	}
	return strings.Join(steps, "/"), true
}

func readlinkAt(dir int, name string) (string, error) {
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(dir, name, buf)
		if err != nil {
			return "", err
		}
		if n < size {
			return string(buf[:n]), nil
		}
	}
}

// close releases the directories, the advisory locks and then the
// process's write lock.
func (l *local) close() {
	if l.dir != l.top {
		unix.Close(l.dir)
	}
	unix.Close(l.top)
	for _, fd := range l.locked {
		unix.Close(fd)
	}
	l.locked = nil
	if l.unlock != nil {
		l.unlock()
	}
}

// replace puts data in place of the file: a temporary file beside it,
// written, given the owner of expect and mode (permission bits), synced,
// then renamed over the file, unless the file is no longer the one expect
// describes (ErrConflict). On failure the file is untouched and the
// temporary file is gone. It returns what the new file is, for a later
// replace to expect.
func (l *local) replace(data []byte, mode uint32, expect fileStat) (fileStat, error) {
	sweepTemps(l.dir, l.name)
	tmp, fd, err := createTemp(l.dir, l.name)
	if err != nil {
		return fileStat{}, osError("create a temporary file beside", l.path, err)
	}
	fh := os.NewFile(uintptr(fd), l.path)
	done := false
	defer func() {
		if !done {
			fh.Close()
			unix.Unlinkat(l.dir, tmp, 0)
		}
	}()
	// Once renamed, the new file is what another process opens: it is
	// locked from its creation, until this write ends (l.close), so
	// that process waits for the reload and a putting back.
	if l.unlock != nil {
		switch err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); {
		case err == nil:
			if err := l.hold(fd); err != nil {
				return fileStat{}, osError("write", l.path, err)
			}
		case errors.Is(err, unix.EWOULDBLOCK):
			return fileStat{}, fmt.Errorf("file: write %s: another process locked rekey's temporary file beside it; check the directory: %w", l.path, failure.ErrConflict)
		}
		// Any other error: a file system without locks, as in flockWait.
	}
	if _, err := fh.Write(data); err != nil {
		return fileStat{}, osError("write", l.path, err)
	}
	// The owner and group of the file, which a new file does not get by
	// itself (nor the group, in a setgid directory). Chown before chmod:
	// changing the owner clears setuid and setgid.
	created, err := fstat(fd)
	if err != nil {
		return fileStat{}, osError("write", l.path, err)
	}
	if created.uid != expect.uid || created.gid != expect.gid {
		if err := unix.Fchown(fd, int(expect.uid), int(expect.gid)); err != nil {
			return fileStat{}, fmt.Errorf("file: write %s: cannot keep its owner (%w): %w", l.path, err, failure.ErrUnauthorized)
		}
	}
	if err := unix.Fchmod(fd, mode); err != nil {
		return fileStat{}, osError("write", l.path, err)
	}
	if err := unix.Fsync(fd); err != nil {
		return fileStat{}, osError("write", l.path, err)
	}
	written, err := fstat(fd)
	if err != nil {
		return fileStat{}, osError("write", l.path, err)
	}
	if err := fh.Close(); err != nil {
		return fileStat{}, osError("write", l.path, err)
	}
	now, err := lstatAt(l.dir, l.name)
	if err != nil {
		return fileStat{}, osError("write", l.path, err)
	}
	if !now.same(expect) {
		return fileStat{}, fmt.Errorf("file: write %s: the file changed while rekey worked on it: %w", l.path, failure.ErrConflict)
	}
	if err := unix.Renameat(l.dir, tmp, l.dir, l.name); err != nil {
		return fileStat{}, osError("write", l.path, err)
	}
	done = true
	unix.Fsync(l.dir) // makes the rename durable; some file systems cannot
	// What was renamed into place must be what rekey wrote: in a directory
	// another user may write, the temporary file could have been swapped
	// for something else before the rename.
	if now, err := lstatAt(l.dir, l.name); err != nil || now.dev != written.dev || now.ino != written.ino {
		return fileStat{}, fmt.Errorf("file: write %s: the temporary file was replaced by another before it was renamed into place; check the directory: %w", l.path, failure.ErrConflict)
	}
	return written, nil
}

// probe proves that a write could replace the file: it creates in the
// file's directory the temporary file a write starts with, gives it the
// file's owner and mode as a write would, and removes it. Nothing is
// written in it, and the file is not touched.
func (l *local) probe(mode uint32) error {
	tmp, fd, err := createTemp(l.dir, l.name)
	if err != nil {
		return osError("create a temporary file beside", l.path, err)
	}
	defer func() {
		unix.Close(fd)
		unix.Unlinkat(l.dir, tmp, 0)
	}()
	created, err := fstat(fd)
	if err != nil {
		return osError("write", l.path, err)
	}
	if created.uid != l.st.uid || created.gid != l.st.gid {
		if err := unix.Fchown(fd, int(l.st.uid), int(l.st.gid)); err != nil {
			return fmt.Errorf("file: %s: a write could not keep its owner (uid %d, gid %d) as uid %d (%w): %w",
				l.path, l.st.uid, l.st.gid, os.Geteuid(), err, failure.ErrUnauthorized)
		}
	}
	if err := unix.Fchmod(fd, mode); err != nil {
		return osError("write", l.path, err)
	}
	return nil
}

// tempPrefix is how the temporary files of a write of name begin.
func tempPrefix(name string) string { return "." + name + ".rekey-" }

// createTemp creates a new temporary file for a write of name in dir,
// readable by its owner only while the key is written to it.
func createTemp(dir int, name string) (string, int, error) {
	for range 100 {
		tmp := tempPrefix(name) + strconv.FormatUint(uint64(rand.Uint32()), 10)
		fd, err := unix.Openat(dir, tmp, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if errors.Is(err, unix.EEXIST) {
			continue
		}
		return tmp, fd, err
	}
	return "", -1, unix.EEXIST
}

// staleTemp is how old a temporary file of a write must be for sweepTemps
// to take it for one left by a rekey that was killed mid-write.
const staleTemp = 10 * time.Minute

// sweepTemps removes temporary files that an earlier write of name left
// in dir when it was killed between creating and renaming them: they hold
// a copy of the file, key included.
func sweepTemps(dir int, name string) {
	fd, err := unix.Openat(dir, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	d := os.NewFile(uintptr(fd), ".")
	names, _ := d.Readdirnames(-1)
	d.Close()
	for _, n := range names {
		if !strings.HasPrefix(n, tempPrefix(name)) {
			continue
		}
		if s, err := lstatAt(dir, n); err == nil && s.regular() && time.Since(s.mtime) > staleTemp {
			unix.Unlinkat(dir, n, 0)
		}
	}
}
