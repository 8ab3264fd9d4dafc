package file

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"strings"
	"time"

	"github.com/pkg/sftp"

	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/integrations"
	"github.com/rekey-dev/rekey/integrations/internal/command"
	"github.com/rekey-dev/rekey/internal/sshpool"
	"github.com/rekey-dev/rekey/secret"
)

// Remote is a file on another host, rewritten over SFTP with the
// guarantees of a local one (the file integration with host):
//
//   - it is read, rewritten in memory by the same byte-exact rewriters,
//     and written only when that changed it;
//   - the new content goes to a temporary file in the same directory:
//     inside a directory of rekey's own made there (.NAME.rekey-XXXX,
//     mode 0700 before anything is in it) and created with mode 0600
//     before its first byte (pkg/sftp cannot give a mode when it
//     creates, and the server's umask may be wide, so the file is
//     unreachable to others from its creation, and never wider than 0600
//     while written); it then gets the original's owner (where the login
//     may change it; where it may not, the write fails, as locally) and
//     mode (or mode), is synced (fsync@openssh.com) and renamed over the
//     original (posix-rename@openssh.com), atomically;
//   - just before the rename, the file is read again: when it is no
//     longer what rekey read (bytes, size, mode, owner), it changed on the
//     host while rekey worked, and is not overwritten (ErrConflict);
//   - a symbolic link at the path is refused (lstat) unless
//     follow_symlinks, and then only one to a regular file beneath the
//     path's directory, through real directories without "..", owned by
//     the directory's owner; anything but a regular file is refused;
//   - reload runs on the host after a write that changed the file; when it
//     fails, the file is put back as it was;
//   - two integrations on one remote file are written one after the other
//     (the lock of lock.go, keyed by connection and path);
//   - a killed connection leaves the original as it was: the temporary
//     directory is left behind, and removed by a later write once it is
//     older than ten minutes.
//
// Errors name the host, the path and what failed; never the key, and
// never what the host's server or a remote command said. A host that
// cannot be reached, or a connection lost, is ErrTransient.
type Remote struct {
	f      *File // id, path, format, field, reload and mode
	host   *sshpool.Host
	follow bool
	where  string // host:path, for errors
	log    *slog.Logger
}

var (
	_ integrations.Integration = (*Remote)(nil)
	_ integrations.Reader      = (*Remote)(nil)
	_ integrations.Preflighter = (*Remote)(nil)
	_ integrations.Acceptor    = (*Remote)(nil)
	_ integrations.Remote      = (*Remote)(nil)
)

func newRemote(f *File, host *sshpool.Host, follow bool, log *slog.Logger) *Remote {
	f.path = path.Clean(f.path)
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Remote{f: f, host: host, follow: follow, where: host.Name() + ":" + f.path, log: log}
}

// ID is the integration's id.
func (r *Remote) ID() string { return r.f.id }

// Host is the host as configured.
func (r *Remote) Host() string { return r.host.Name() }

// CheckHost connects and logs in to the host.
func (r *Remote) CheckHost(ctx context.Context) error {
	if err := r.host.Check(ctx); err != nil {
		return fmt.Errorf("file: %s: %w", r.where, err)
	}
	return nil
}

// remoteStat is what rekey keeps of a remote stat: enough to know a file
// again (SFTP gives no inode number, and times to the second).
type remoteStat struct {
	mode     fs.FileMode
	uid, gid uint32
	size     int64
	mtime    time.Time
}

func statOfRemote(fi fs.FileInfo) remoteStat {
	s := remoteStat{mode: fi.Mode(), size: fi.Size(), mtime: fi.ModTime()}
	if st, ok := fi.Sys().(*sftp.FileStat); ok {
		s.uid, s.gid = st.UID, st.GID
	}
	return s
}

// keptMode is what of a remote file's mode a write gives the new file:
// the permission bits, setuid, setgid and sticky.
func keptMode(m fs.FileMode) fs.FileMode {
	return m & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
}

func (s remoteStat) same(t remoteStat) bool {
	return s.mode == t.mode && s.uid == t.uid && s.gid == t.gid && s.size == t.size && s.mtime.Equal(t.mtime)
}

// fail builds an error naming the file: op, what failed in rekey's words, class.
func (r *Remote) fail(ctx context.Context, op string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("file: %s: %s: %w", r.where, op, ctxErr(ctx))
	}
	reason, class := sshpool.FileError(err)
	return fmt.Errorf("file: %s: %s: %s: %w", r.where, op, reason, class)
}

// Read returns the key the file holds.
func (r *Remote) Read(ctx context.Context) (secret.Key, error) {
	c, release, err := r.host.SFTP(ctx)
	if err != nil {
		return secret.Key{}, fmt.Errorf("file: %s: %w", r.where, err)
	}
	defer release()
	_, content, _, err := r.load(ctx, c)
	if err != nil {
		return secret.Key{}, err
	}
	return r.f.readValue(r.where, content)
}

// Accepts implements integrations.Acceptor as a local file does.
func (r *Remote) Accepts(key secret.Key) error { return r.f.accepts(r.where, key) }

// Apply makes the remote file hold the key: see Remote.
func (r *Remote) Apply(ctx context.Context, req integrations.ApplyRequest) (integrations.ApplyResult, error) {
	if err := ctx.Err(); err != nil {
		return integrations.ApplyResult{}, fmt.Errorf("file: %s: %w", r.where, err)
	}
	if req.Key.IsZero() {
		return integrations.ApplyResult{}, fmt.Errorf("file: %s: the key is empty: %w", r.where, failure.ErrInvalid)
	}
	// Two integrations on one remote file (two values of one .env) are
	// written one after the other, each on the other's result, as locally.
	unlock, err := lockWrite(ctx, fileID{name: "ssh " + r.host.ID() + " " + r.f.path}, r.where)
	if err != nil {
		return integrations.ApplyResult{}, err
	}
	defer unlock()
	// One session at a time: the write's SFTP session is closed before
	// the reload's session opens, so integrations waiting for sessions on
	// a busy host never hold one another up.
	w, err := r.rewrite(ctx, req.Key)
	if err != nil || !w.changed {
		return integrations.ApplyResult{Changed: false, At: time.Now()}, err
	}
	if len(r.f.reload) > 0 {
		_, rerr := r.host.Run(ctx, sshpool.Command{What: "file: " + r.where + ": reload", Argv: r.f.reload, Key: req.Key})
		if rerr != nil {
			return integrations.ApplyResult{}, putBack(rerr, func() error {
				// With a session of its own: ctx may be what ended the reload.
				bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
				defer cancel()
				bc, brelease, err := r.host.SFTP(bctx)
				if err != nil {
					return err
				}
				defer brelease()
				_, err = r.write(bctx, bc, w.target, w.content, keptMode(w.st.mode), w.written, w.next)
				return err
			})
		}
	}
	return integrations.ApplyResult{Changed: true, At: time.Now()}, nil
}

// rewritten is what a rewrite read and wrote.
type rewritten struct {
	changed       bool
	target        string
	content, next []byte
	st, written   remoteStat
}

// rewrite reads the file and, when it does not hold key, writes it with
// key, on an SFTP session of its own.
func (r *Remote) rewrite(ctx context.Context, key secret.Key) (rewritten, error) {
	var w rewritten
	c, release, err := r.host.SFTP(ctx)
	if err != nil {
		return w, fmt.Errorf("file: %s: %w", r.where, err)
	}
	defer release()
	if w.target, w.content, w.st, err = r.load(ctx, c); err != nil {
		return w, err
	}
	if w.next, err = r.f.rewriteValue(r.where, w.content, key.Reveal()); err != nil { // the file is the wire
		return w, err
	}
	if bytes.Equal(w.next, w.content) {
		return w, nil
	}
	mode := keptMode(w.st.mode)
	if r.f.mode != 0 {
		mode = r.f.mode
	}
	if w.written, err = r.write(ctx, c, w.target, w.next, mode, w.st, w.content); err != nil {
		return w, err
	}
	w.changed = true
	return w, nil
}

// Preflight checks, without changing the file, what a write needs: the
// host (reachable, trusted, rekey let in), the file (there, a regular
// file rekey may read, in its format, with a field rekey can rewrite),
// and its directory: rekey makes and removes there the private directory
// a write starts with, and gives it the file's owner when that differs
// from the login, which is what a write does. Then, on a session of its
// own, reload's program is looked up on the host as its login shell will
// run it (command.ResolveRemote: `command -v`, `test -x`), run by nothing.
func (r *Remote) Preflight(ctx context.Context) error {
	if err := r.preflightFile(ctx); err != nil {
		return err
	}
	if len(r.f.reload) > 0 {
		return command.ResolveRemote(ctx, r.host, "file: "+r.where+": reload", r.f.reload[0], "")
	}
	return nil
}

// preflightFile is Preflight's part on one SFTP session.
func (r *Remote) preflightFile(ctx context.Context) error {
	c, release, err := r.host.SFTP(ctx)
	if err != nil {
		return fmt.Errorf("file: %s: %w", r.where, err)
	}
	defer release()
	target, content, st, err := r.load(ctx, c)
	if err != nil {
		return err
	}
	if _, err := r.f.rewriteValue(r.where, content, preflightValue); err != nil {
		return err
	}
	dir, base := path.Split(target)
	probe, err := r.privateDir(ctx, c, dir, base)
	if err != nil {
		return err
	}
	defer c.RemoveDirectory(probe)
	pst, err := c.Lstat(probe)
	if err != nil {
		return r.fail(ctx, "check the directory", err)
	}
	if p := statOfRemote(pst); p.uid != st.uid || p.gid != st.gid {
		if err := c.Chown(probe, int(st.uid), int(st.gid)); err != nil {
			return fmt.Errorf("file: %s: a write could not keep the file's owner (uid %d, gid %d) as user %s: %w", r.where, st.uid, st.gid, r.loginUser(), failure.ErrUnauthorized)
		}
	}
	return nil
}

func (r *Remote) loginUser() string {
	n := r.host.Name()
	if i := strings.LastIndexByte(n, '@'); i >= 0 {
		return n[:i]
	}
	return "of the login"
}

// load finds the file (see Remote for symbolic links), checks it is a
// regular file, and reads it.
func (r *Remote) load(ctx context.Context, c *sftp.Client) (target string, content []byte, st remoteStat, err error) {
	target = r.f.path
	fi, err := c.Lstat(target)
	if err != nil {
		return "", nil, st, r.fail(ctx, "read", err)
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		if !r.follow {
			return "", nil, st, fmt.Errorf("file: %s is a symbolic link; rekey does not follow one (another user may have put it there) unless the integration says follow_symlinks: true: %w", r.where, failure.ErrUnauthorized)
		}
		if target, fi, err = r.followLink(ctx, c, target); err != nil {
			return "", nil, st, err
		}
	}
	if !fi.Mode().IsRegular() {
		return "", nil, st, fmt.Errorf("file: %s is not a regular file (%s): %w", r.where, fi.Mode().Type(), failure.ErrInvalid)
	}
	if fi.Size() > maxFileBytes {
		return "", nil, st, fmt.Errorf("file: %s is larger than %d bytes: %w", r.where, maxFileBytes, failure.ErrInvalid)
	}
	content, err = readRemote(c, target)
	if err != nil {
		return "", nil, st, r.fail(ctx, "read", err)
	}
	if len(content) > maxFileBytes {
		return "", nil, st, fmt.Errorf("file: %s is larger than %d bytes: %w", r.where, maxFileBytes, failure.ErrInvalid)
	}
	return target, content, statOfRemote(fi), nil
}

// readRemote reads a file whole, checking on the open handle (fstat)
// that it is a regular file: a FIFO swapped in is refused, not waited on.
func readRemote(c *sftp.Client, p string) ([]byte, error) {
	fh, err := c.Open(p)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	fi, err := fh.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, os.ErrPermission
	}
	return io.ReadAll(io.LimitReader(fh, maxFileBytes+1))
}

// followLink resolves the link at p when follow_symlinks allows it: a
// relative target without "..", through real directories, to a regular
// file owned by the owner of p's directory.
func (r *Remote) followLink(ctx context.Context, c *sftp.Client, p string) (string, fs.FileInfo, error) {
	refuse := func(why string) (string, fs.FileInfo, error) {
		return "", nil, fmt.Errorf("file: %s is a symbolic link that rekey does not follow, even with follow_symlinks: %s: %w", r.where, why, failure.ErrUnauthorized)
	}
	link, err := c.ReadLink(p)
	if err != nil {
		return "", nil, r.fail(ctx, "read the link", err)
	}
	if path.IsAbs(link) || link == "" {
		return refuse("it points to an absolute path, not beneath its directory")
	}
	for step := range strings.SplitSeq(link, "/") {
		if step == ".." {
			return refuse("its target has \"..\" in it")
		}
	}
	dir := path.Dir(p)
	dfi, err := c.Lstat(dir)
	if err != nil {
		return "", nil, r.fail(ctx, "read its directory", err)
	}
	owner := statOfRemote(dfi).uid
	at := dir
	steps := strings.Split(path.Clean(link), "/")
	for i, step := range steps {
		at = path.Join(at, step)
		fi, err := c.Lstat(at)
		if err != nil {
			return "", nil, r.fail(ctx, "follow the link", err)
		}
		last := i == len(steps)-1
		switch {
		case !last && !fi.IsDir():
			return refuse("its target is not reached through real directories")
		case last && !fi.Mode().IsRegular():
			return refuse("its target is not a regular file")
		case last && statOfRemote(fi).uid != owner:
			return refuse("its target is not owned by the owner of the link's directory")
		case last:
			return at, fi, nil
		}
	}
	return refuse("it is empty")
}

// remoteTemp starts the name of the private directory of a write.
func remoteTemp(base string) string { return "." + base + ".rekey-" }

// remoteStale is how old a write's private directory must be for sweep to
// take it for one left by a rekey that was killed mid-write.
const remoteStale = 10 * time.Minute

// privateDir makes a directory only the login may enter, beside the file.
func (r *Remote) privateDir(ctx context.Context, c *sftp.Client, dir, base string) (string, error) {
	for range 5 {
		b := make([]byte, 6)
		rand.Read(b)
		name := path.Join(dir, remoteTemp(base)+hex.EncodeToString(b))
		err := c.Mkdir(name)
		if err != nil {
			if _, lerr := c.Lstat(name); lerr == nil {
				continue // taken
			}
			return "", r.fail(ctx, "create a temporary directory beside it", err)
		}
		if err := c.Chmod(name, 0o700); err != nil {
			c.RemoveDirectory(name)
			return "", r.fail(ctx, "create a temporary directory beside it", err)
		}
		return name, nil
	}
	return "", fmt.Errorf("file: %s: no free name for a temporary directory beside it: %w", r.where, failure.ErrTransient)
}

// sweep removes what writes that were killed left in dir: private
// directories older than staleTemp, each with the copy of the file that
// was being written.
func (r *Remote) sweep(c *sftp.Client, dir, base string) {
	entries, err := c.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), remoteTemp(base)) || !e.IsDir() || time.Since(e.ModTime()) <= remoteStale {
			continue
		}
		d := path.Join(dir, e.Name())
		if inner, err := c.ReadDir(d); err == nil {
			for _, f := range inner {
				c.Remove(path.Join(d, f.Name()))
			}
		}
		c.RemoveDirectory(d)
	}
}

// write replaces target with data (see Remote), unless target is no
// longer what rekey read (expect, expectContent). It returns what the new
// file is, for a later write to expect.
func (r *Remote) write(ctx context.Context, c *sftp.Client, target string, data []byte, mode fs.FileMode, expect remoteStat, expectContent []byte) (remoteStat, error) {
	dir, base := path.Split(target)
	r.sweep(c, dir, base)
	priv, err := r.privateDir(ctx, c, dir, base)
	if err != nil {
		return remoteStat{}, err
	}
	tmp := path.Join(priv, base)
	renamed := false
	defer func() {
		if !renamed {
			r.cleanup(ctx, c, tmp, priv)
			return
		}
		c.RemoveDirectory(priv)
	}()
	fh, err := c.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
	if err != nil {
		return remoteStat{}, r.fail(ctx, "create a temporary file beside it", err)
	}
	defer fh.Close()
	if err := fh.Chmod(0o600); err != nil { // before its first byte
		return remoteStat{}, r.fail(ctx, "write", err)
	}
	if _, err := fh.Write(data); err != nil {
		return remoteStat{}, r.fail(ctx, "write", err)
	}
	fi, err := fh.Stat()
	if err != nil {
		return remoteStat{}, r.fail(ctx, "write", err)
	}
	if got := statOfRemote(fi); got.uid != expect.uid || got.gid != expect.gid {
		if err := fh.Chown(int(expect.uid), int(expect.gid)); err != nil {
			return remoteStat{}, fmt.Errorf("file: write %s: cannot keep its owner (uid %d, gid %d): %w", r.where, expect.uid, expect.gid, failure.ErrUnauthorized)
		}
	}
	if err := fh.Chmod(mode); err != nil {
		return remoteStat{}, r.fail(ctx, "write", err)
	}
	if err := fh.Sync(); err != nil {
		var se *sftp.StatusError
		if !errors.As(err, &se) || se.FxCode() != sftp.ErrSSHFxOpUnsupported {
			return remoteStat{}, r.fail(ctx, "sync", err)
		}
		r.log.Warn("file: the host's SFTP server cannot fsync (no fsync@openssh.com); the write is not synced", "file", r.where)
	}
	if fi, err = fh.Stat(); err != nil {
		return remoteStat{}, r.fail(ctx, "write", err)
	}
	written := statOfRemote(fi)
	if err := fh.Close(); err != nil {
		return remoteStat{}, r.fail(ctx, "write", err)
	}

	// Just before the rename: is the file still what rekey read?
	now, err := c.Lstat(target)
	if err != nil {
		return remoteStat{}, r.fail(ctx, "write", err)
	}
	if !statOfRemote(now).same(expect) {
		return remoteStat{}, fmt.Errorf("file: write %s: the file changed on the host while rekey worked on it: %w", r.where, failure.ErrConflict)
	}
	again, err := readRemote(c, target)
	if err != nil {
		return remoteStat{}, r.fail(ctx, "write", err)
	}
	if !bytes.Equal(again, expectContent) {
		return remoteStat{}, fmt.Errorf("file: write %s: the file changed on the host while rekey worked on it: %w", r.where, failure.ErrConflict)
	}
	if err := c.PosixRename(tmp, target); err != nil {
		return remoteStat{}, r.fail(ctx, "replace", err)
	}
	renamed = true
	return written, nil
}

// cleanup removes a write's temporary file and directory. When ctx ended
// (and took the SFTP session with it), it does so in the background with
// a session of its own, once the caller has let go of the one it holds.
func (r *Remote) cleanup(ctx context.Context, c *sftp.Client, tmp, priv string) {
	if ctx.Err() == nil {
		c.Remove(tmp)
		c.RemoveDirectory(priv)
		return
	}
	go func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		nc, release, err := r.host.SFTP(cctx)
		if err != nil {
			return // a later write sweeps it
		}
		defer release()
		nc.Remove(tmp)
		nc.RemoveDirectory(priv)
	}()
}
