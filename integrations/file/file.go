// Package file is the file integration type: a key held in a file on a
// server (a .env file, a JSON or YAML configuration, or a file that is the
// key).
//
//	integrations:
//	  - {id: site-env, key: actionnetwork-main, type: file, path: /srv/www/.env,
//	    format: dotenv, field: ACTION_NETWORK_API_KEY, reload: [systemctl, reload, site]}
//
// Fields:
//
//   - path: the file. A relative path is taken from the directory of the
//     configuration file. The directories on the way are followed as the
//     system resolves them, but the file itself must be a regular file: a
//     symbolic link there is refused (its directory's owner could point it
//     at a file only root may write), and so is a FIFO, a device or a
//     socket, at once, never waited on.
//   - follow_symlinks: optional; true lets the file be a symbolic link to a
//     regular file beneath the path's directory, reached through real
//     directories without "..", and owned by the directory's owner. The
//     file it points to is replaced; the link stays.
//   - format: dotenv, json, yaml or raw.
//   - field: for dotenv, the variable name; for json and yaml, a dotted path
//     (actionnetwork.api_key; a step of digits indexes a list, as in
//     keys.0.value). Not allowed for raw, where the file's content without
//     surrounding white space is the key.
//   - reload: optional argv, run after a write that changed the file.
//   - mode: optional permissions as an octal string ("0600"), given to the
//     file whenever rekey writes it; without it the file keeps its mode.
//   - host: optional [user@]host[:port] or ~/.ssh/config alias: the file
//     is on that host (path absolute there), read and replaced over SFTP
//     with the same guarantees, and reload runs there. See Remote.
//
// Apply reads the file, replaces the bytes of the value and nothing else
// (comments, order, quoting style, line endings and the rest of the file
// stay as they were), and writes nothing when the file already holds the
// key. A dotenv variable that is missing is appended; a json or yaml field
// that is missing is an error, since rekey cannot know where it belongs.
// When a name is given twice, every occurrence is rewritten, and Read
// gives the last (what parsers use). The file must exist: rekey does not
// create one.
//
// The write is atomic: a temporary file in the same directory (mode 0600
// while it is written), synced, given the owner and mode of the original
// (or mode), then renamed over it. The directory is opened once and the
// file is checked, read and replaced relative to it (local_unix.go), so
// what was checked is what is replaced. Integrations of one process that
// write one file (two variables of one .env) take turns, from the read to
// the end of the reload, so neither loses the other's value; so do two
// rekey processes (two keys rotated at once whose integrations share a
// .env): a write holds an advisory lock (flock(2)) on the file from
// before its read, and on the new file from its creation, to the end of
// the reload (and of putting the file back), and another process's write
// waits for it as long as its context allows (then ErrTransient). On a
// file system without such locks the conflict check alone guards. A file that
// another program changed while rekey worked is not overwritten
// (ErrConflict). Extended attributes, ACLs and hard links are not carried
// over. On any failure the original stays as it was and the temporary file
// is removed.
//
// When reload fails, the file is put back as it was before the write, and
// the error is returned: a service that did not reload still runs with the
// old key, the file says so, and the next Apply (a retry, or `rekey
// resume`) writes and reloads again. The reload command gets no key, in
// argv, environment or stdin; its environment is the minimal one of
// package command, and its output is never read.
//
// A dotenv value is written in a form that a shell sourcing the file and
// every common dotenv reader take literally (see dotenvToken); a key that
// has no such form is refused for that file (ErrInvalid). Every format
// refuses an empty key, invalid UTF-8, and a line break or other control
// character; a raw file also white space around the key. Accepts says so
// before any key exists (integrations.Acceptor), for the preflight.
//
// Errors: a missing file is ErrNotFound; permission denied, a read-only
// file system, an owner rekey cannot keep, or a symbolic link rekey does
// not follow is ErrUnauthorized; anything but a regular file, a field
// that is not there, a file that is not valid in its format, a full disk
// (ENOSPC, EDQUOT) and an I/O error (EIO) are ErrInvalid, since a retry
// seconds later does not fix them; EAGAIN, EBUSY, EINTR and ETIMEDOUT are
// ErrTransient. Errors name the file and field, never the value.
package file

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/rekey-dev/rekey/config"
	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/integrations"
	"github.com/rekey-dev/rekey/integrations/internal/command"
	"github.com/rekey-dev/rekey/secret"
)

// Type is the integration type's name in the configuration.
const Type = "file"

// maxFileBytes bounds what is read, so a wrong path cannot fill memory.
const maxFileBytes = 16 << 20

type settings struct {
	Path   string   `mapstructure:"path"`
	Format string   `mapstructure:"format"`
	Field  string   `mapstructure:"field"`
	Reload []string `mapstructure:"reload"`
	Mode   any      `mapstructure:"mode"`

	FollowSymlinks bool `mapstructure:"follow_symlinks"`
	// Host puts the file on another host, reached over SSH (remote.go).
	Host string `mapstructure:"host"`
}

// File is a key held in a file.
type File struct {
	id     string
	path   string
	format string
	field  string
	fmt    format
	reload []string
	mode   fs.FileMode // 0: keep the file's mode
	getenv func(string) string

	followSymlinks bool
}

var (
	_ integrations.Integration = (*File)(nil)
	_ integrations.Reader      = (*File)(nil)
	_ integrations.Preflighter = (*File)(nil)
	_ integrations.Acceptor    = (*File)(nil)
	_ integrations.Factory     = New
)

// New builds a file integration from its configuration item.
func New(h integrations.Host, in config.Integration) (integrations.Integration, error) {
	cfg := h.Config
	var s settings
	if err := cfg.DecodeSettings(in, &s); err != nil {
		return nil, err
	}
	f := &File{id: in.ID, format: s.Format, field: s.Field, reload: s.Reload, getenv: h.Getenv, followSymlinks: s.FollowSymlinks}
	if f.getenv == nil {
		f.getenv = os.Getenv
	}

	if s.Path == "" {
		return nil, cfg.Required(in, "path", "for type file")
	}
	f.path = s.Path
	if s.Host != "" && !path.IsAbs(f.path) {
		return nil, cfg.Invalid(in, "path", "%q: with host, give the file's absolute path on %s", s.Path, s.Host)
	}
	if s.Host == "" && !filepath.IsAbs(f.path) {
		base := "."
		if cfg.File != "" {
			base = filepath.Dir(cfg.File)
		}
		abs, err := filepath.Abs(filepath.Join(base, f.path))
		if err != nil {
			return nil, cfg.Invalid(in, "path", "%v", err)
		}
		f.path = abs
	}

	var ok bool
	switch f.fmt, ok = formats[s.Format]; {
	case s.Format == "":
		return nil, cfg.Required(in, "format", "(dotenv, json, yaml or raw)")
	case !ok:
		return nil, cfg.Invalid(in, "format", "unknown format %q (dotenv, json, yaml or raw)", s.Format)
	}

	switch s.Format {
	case FormatRaw:
		if s.Field != "" {
			return nil, cfg.Invalid(in, "field", "not allowed with format raw: the whole file is the key")
		}
	case FormatDotenv:
		if s.Field == "" {
			return nil, cfg.Required(in, "field", "(the variable name)")
		}
		if !dotenvNameRE.MatchString(s.Field) {
			return nil, cfg.Invalid(in, "field", "%q is not a variable name (letters, digits, '_', '.' and '-', not starting with a digit)", s.Field)
		}
	default:
		if s.Field == "" {
			return nil, cfg.Required(in, "field", "(a dotted path such as actionnetwork.api_key)")
		}
		if _, err := splitPath(s.Field); err != nil {
			return nil, cfg.Invalid(in, "field", "%q: a dotted path has no empty steps", s.Field)
		}
	}

	if s.Reload != nil && (len(s.Reload) == 0 || s.Reload[0] == "") {
		return nil, cfg.Invalid(in, "reload", "give a command as a list, like [systemctl, reload, site]")
	}

	switch m := s.Mode.(type) {
	case nil:
	case string:
		n, err := strconv.ParseUint(m, 8, 32)
		if err != nil || n == 0 || n > 0o777 {
			return nil, cfg.Invalid(in, "mode", "%q: want permissions in octal, like \"0600\"", m)
		}
		f.mode = fs.FileMode(n)
	default:
		return nil, cfg.Invalid(in, "mode", "write the mode as a quoted octal string, like \"0600\"")
	}
	if s.Host != "" {
		rh, err := integrations.RemoteHost(h, in, s.Host)
		if err != nil {
			return nil, err
		}
		return newRemote(f, rh, s.FollowSymlinks, h.Logger), nil
	}
	return f, nil
}

// ID is the integration's id.
func (f *File) ID() string { return f.id }

// Apply makes the file hold the key: see the package documentation.
func (f *File) Apply(ctx context.Context, req integrations.ApplyRequest) (integrations.ApplyResult, error) {
	if err := ctx.Err(); err != nil {
		return integrations.ApplyResult{}, fmt.Errorf("file: %s: %w", f.path, err)
	}
	if req.Key.IsZero() {
		return integrations.ApplyResult{}, fmt.Errorf("file: %s: the key is empty: %w", f.path, failure.ErrInvalid)
	}
	l, err := f.open(ctx, true)
	if err != nil {
		return integrations.ApplyResult{}, err
	}
	defer l.close()
	next, err := f.rewriteValue(f.path, l.content, req.Key.Reveal()) // the file is the wire
	if err != nil {
		return integrations.ApplyResult{}, err
	}
	if bytes.Equal(next, l.content) {
		return integrations.ApplyResult{Changed: false, At: time.Now()}, nil
	}

	mode := l.st.perm()
	if f.mode != 0 {
		mode = uint32(f.mode.Perm())
	}
	written, err := l.replace(next, mode, l.st)
	if err != nil {
		return integrations.ApplyResult{}, err
	}
	if len(f.reload) > 0 {
		if err := f.runReload(ctx, req.Key); err != nil {
			return integrations.ApplyResult{}, putBack(err, func() error {
				_, err := l.replace(l.content, l.st.perm(), written)
				return err
			})
		}
	}
	return integrations.ApplyResult{Changed: true, At: time.Now()}, nil
}

// Read returns the key the file holds. A file, field or value that is not
// there is ErrNotFound.
func (f *File) Read(ctx context.Context) (secret.Key, error) {
	if err := ctx.Err(); err != nil {
		return secret.Key{}, fmt.Errorf("file: %s: %w", f.path, err)
	}
	l, err := f.open(ctx, false)
	if err != nil {
		return secret.Key{}, err
	}
	l.close()
	return f.readValue(f.path, l.content)
}

func (f *File) runReload(ctx context.Context, key secret.Key) error {
	env, err := command.Env(f.getenv, nil)
	if err != nil {
		return fmt.Errorf("file: %s: reload: %w", f.path, err)
	}
	_, err = command.Run(ctx, command.Spec{
		What: "file: " + f.path + ": reload",
		Argv: f.reload,
		Env:  env,
		Key:  key, // guarded against, never given
	})
	return err
}

// Accepts implements integrations.Acceptor: it refuses, without reading
// the file, a key the file's format cannot hold literally (see the
// package documentation), in the words Apply would refuse it with.
func (f *File) Accepts(key secret.Key) error { return f.accepts(f.path, key) }

// preflightValue is what Preflight asks the rewriter to write, in memory
// only: a value every format can hold, unlike any real key.
const preflightValue = "rekey-preflight-0123456789abcdef"

// Preflight checks, without changing the file, what Apply needs (see
// integrations.Preflighter): the file is there and a regular file under
// the rules Apply follows (O_NOFOLLOW, fstat; follow_symlinks), this
// process may read it, it is valid in its format and the field can be
// rewritten in place (the rewriter, run in memory, accepts it); the
// directory takes a new file, with the file's owner and mode (or mode):
// Preflight creates there the temporary file a write starts with
// (.NAME.rekey-N, mode 0600, empty), gives it the owner and mode a write
// would, and removes it, which proves the directory writable by this
// process, not on a read-only file system, and the owner keepable (rekey
// runs as root, or the file is its own); and reload's program resolves to
// an executable, as it will be started. Errors are Apply's.
func (f *File) Preflight(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("file: %s: %w", f.path, err)
	}
	l, err := f.open(ctx, false)
	if err != nil {
		return err
	}
	defer l.close()
	if _, err := f.rewriteValue(f.path, l.content, preflightValue); err != nil {
		return err
	}
	mode := l.st.perm()
	if f.mode != 0 {
		mode = uint32(f.mode.Perm())
	}
	if err := l.probe(mode); err != nil {
		return err
	}
	if len(f.reload) > 0 {
		if _, err := command.Resolve("file: "+f.path+": reload", f.reload[0], ""); err != nil {
			return err
		}
	}
	return nil
}

// What a file on this host and one on another (Remote) share once its
// bytes are read: the format's reader and rewriter, their errors naming
// where (the path, or host:path), and the putting back after a reload
// that failed.

// readValue returns the key content holds. A field or value that is not
// there is ErrNotFound.
func (f *File) readValue(where string, content []byte) (secret.Key, error) {
	v, err := f.fmt.read(content, f.field)
	if err != nil {
		return secret.Key{}, formatError(where, err, failure.ErrNotFound)
	}
	return secret.New(v), nil
}

// rewriteValue returns content with value in the field. A field that is
// not there is ErrInvalid: rekey cannot know where it belongs.
func (f *File) rewriteValue(where string, content []byte, value string) ([]byte, error) {
	next, err := f.fmt.rewrite(content, f.field, value)
	if err != nil {
		return nil, formatError(where, err, failure.ErrInvalid)
	}
	return next, nil
}

// accepts is Accepts for the file at where.
func (f *File) accepts(where string, key secret.Key) error {
	if err := f.fmt.accepts(key.Reveal()); err != nil { // compared only
		return formatError(where, err, failure.ErrInvalid)
	}
	return nil
}

// putBack returns the error of a reload that failed after a write, once
// restore has put the file back as it was (or failed to).
func putBack(reloadErr error, restore func() error) error {
	if err := restore(); err != nil {
		return fmt.Errorf("%w; putting the file back also failed: %w", reloadErr, err)
	}
	return fmt.Errorf("%w; the file was put back as it was", reloadErr)
}

// formatError classifies an error of a read or rewrite function: a field
// or value that is not there is missing (ErrNotFound for Read, ErrInvalid
// for Apply, which cannot know where it belongs); the rest is ErrInvalid.
func formatError(where string, err error, missing error) error {
	class := failure.ErrInvalid
	if errors.Is(err, errNoField) || errors.Is(err, errNoValue) {
		class = missing
	}
	return fmt.Errorf("file: %s: %w: %w", where, err, class)
}

// ctxErr is ctx's error, transient when it is a deadline.
func ctxErr(ctx context.Context) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("%w: %w", ctx.Err(), failure.ErrTransient)
	}
	return ctx.Err()
}

// osError classifies a file system error where it is born; the message
// names the file and the system's reason, never the temporary file.
func osError(op, path string, err error) error {
	reason := err
	var pe *fs.PathError
	var le *os.LinkError
	switch {
	case errors.As(err, &pe):
		reason = pe.Err
	case errors.As(err, &le):
		reason = le.Err
	}
	return fmt.Errorf("file: %s %s: %w: %w", op, path, reason, osClass(err))
}

func osClass(err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR):
		return failure.ErrNotFound
	case errors.Is(err, fs.ErrPermission), errors.Is(err, syscall.EROFS):
		return failure.ErrUnauthorized
	case errors.Is(err, syscall.EAGAIN), errors.Is(err, syscall.EBUSY), errors.Is(err, syscall.EINTR),
		errors.Is(err, syscall.ETIMEDOUT), errors.Is(err, syscall.ETXTBSY):
		return failure.ErrTransient
	}
	// ENOSPC, EDQUOT, EIO, EISDIR, ELOOP, ...: a person must act.
	return failure.ErrInvalid
}
