package scan

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/pkg/sftp"

	"github.com/rekey-dev/rekey/internal/sshpool"
)

// FS is the file system a scan walks: this host's (Options.FS nil), or
// another host's over SFTP (SFTPFS). The walk, the limits and the matcher
// are the same for both.
type FS interface {
	// EvalSymlinks gives p absolute, with every symbolic link resolved.
	EvalSymlinks(p string) (string, error)
	// ReadDir lists dir's entries, sorted by name, without following
	// symbolic links.
	ReadDir(dir string) ([]fs.DirEntry, error)
	// Lstat describes p without following a symbolic link.
	Lstat(p string) (fs.FileInfo, error)
	// OpenRegular opens p for reading without following a symbolic link
	// or blocking on a pipe, and gives its size; anything but a regular
	// file is ErrNotRegular.
	OpenRegular(p string) (io.ReadCloser, int64, error)
}

// ErrNotRegular is what FS.OpenRegular returns for anything but a
// regular file.
var ErrNotRegular = errNotRegular

// localFS is this host's file system.
type localFS struct{}

func (localFS) EvalSymlinks(p string) (string, error) {
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		return "", err
	}
	return filepath.Abs(real)
}

func (localFS) ReadDir(dir string) ([]fs.DirEntry, error) { return os.ReadDir(dir) }

func (localFS) Lstat(p string) (fs.FileInfo, error) { return os.Lstat(p) }

func (localFS) OpenRegular(p string) (io.ReadCloser, int64, error) { return openRegular(p) }

// SFTPFS is a host's file system over an SFTP session. Its errors say
// what failed in rekey's words, never what the host's server sent.
//
// SFTP cannot open without following a symbolic link: a file is checked
// with lstat before it is opened and with fstat after, so a link swapped
// in between is read only when it leads to a regular file.
func SFTPFS(c *sftp.Client) FS { return sftpFS{c} }

type sftpFS struct{ c *sftp.Client }

func remoteErr(err error) error {
	if err == nil || errors.Is(err, errNotRegular) {
		return err
	}
	reason, _ := sshpool.FileError(err)
	return errors.New(reason)
}

func (s sftpFS) EvalSymlinks(p string) (string, error) {
	if !path.IsAbs(p) {
		return "", errors.New("not an absolute path")
	}
	if _, err := s.c.Lstat(p); err != nil {
		return "", remoteErr(err)
	}
	real, err := s.c.RealPath(p) // the server's realpath(3)
	if err != nil {
		return "", remoteErr(err)
	}
	if _, err := s.c.Stat(real); err != nil {
		return "", remoteErr(err)
	}
	return path.Clean(real), nil
}

func (s sftpFS) ReadDir(dir string) ([]fs.DirEntry, error) {
	infos, err := s.c.ReadDir(dir)
	if err != nil {
		return nil, remoteErr(err)
	}
	out := make([]fs.DirEntry, 0, len(infos))
	for _, fi := range infos {
		if fi.Name() == "." || fi.Name() == ".." || strings.Contains(fi.Name(), "/") {
			continue
		}
		out = append(out, fs.FileInfoToDirEntry(fi))
	}
	slices.SortFunc(out, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	return out, nil
}

func (s sftpFS) Lstat(p string) (fs.FileInfo, error) {
	fi, err := s.c.Lstat(p)
	return fi, remoteErr(err)
}

func (s sftpFS) OpenRegular(p string) (io.ReadCloser, int64, error) {
	fi, err := s.c.Lstat(p)
	if err != nil {
		return nil, 0, remoteErr(err)
	}
	if !fi.Mode().IsRegular() {
		return nil, 0, errNotRegular
	}
	f, err := s.c.Open(p)
	if err != nil {
		return nil, 0, remoteErr(err)
	}
	if fi, err = f.Stat(); err != nil {
		f.Close()
		return nil, 0, remoteErr(err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, 0, errNotRegular
	}
	return remoteFile{f}, fi.Size(), nil
}

// remoteFile reads through an SFTP handle, its errors in rekey's words.
type remoteFile struct{ f *sftp.File }

func (r remoteFile) Read(p []byte) (int, error) {
	n, err := r.f.Read(p)
	if err != nil && err != io.EOF {
		err = remoteErr(err)
	}
	return n, err
}

func (r remoteFile) Close() error { return r.f.Close() }

// walk calls fn for root and everything beneath it, in lexical order,
// as filepath.WalkDir does, through fsys. fn's error stops the walk; a
// directory that cannot be listed is passed to fn once more with the
// error, and its entries are skipped.
func walk(fsys FS, root string, fn fs.WalkDirFunc) error {
	fi, err := fsys.Lstat(root)
	if err != nil {
		return fn(root, nil, err)
	}
	return walkDir(fsys, root, fs.FileInfoToDirEntry(fi), fn)
}

func walkDir(fsys FS, p string, d fs.DirEntry, fn fs.WalkDirFunc) error {
	if err := fn(p, d, nil); err != nil || !d.IsDir() {
		if errors.Is(err, fs.SkipDir) && d.IsDir() {
			return nil
		}
		return err
	}
	entries, err := fsys.ReadDir(p)
	if err != nil {
		if err := fn(p, d, err); err != nil && !errors.Is(err, fs.SkipDir) {
			return err
		}
		return nil
	}
	for _, e := range entries {
		if err := walkDir(fsys, childPath(p, e.Name()), e, fn); err != nil {
			if errors.Is(err, fs.SkipDir) {
				break
			}
			return err
		}
	}
	return nil
}

func childPath(dir, name string) string {
	if strings.HasSuffix(dir, "/") {
		return dir + name
	}
	return fmt.Sprintf("%s%c%s", dir, filepath.Separator, name)
}
