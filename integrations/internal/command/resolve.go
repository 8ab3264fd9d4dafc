package command

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/internal/sshpool"
)

// Resolve finds the program argv0 names the way Run will start it, without
// starting it: a name without a slash is looked up in rekey's PATH (as
// os/exec does, refusing one found only relative to the working
// directory); a path with a slash is taken as it is, relative to dir when
// dir is given. It returns the program's path, or an error naming what
// and argv0: not found is ErrInvalid, found but not executable by this
// process (no execute permission, a directory) ErrUnauthorized or
// ErrInvalid.
func Resolve(what, argv0, dir string) (string, error) {
	if argv0 == "" {
		return "", fmt.Errorf("%s: no command given: %w", what, failure.ErrInvalid)
	}
	name := filepath.Base(argv0)
	if !strings.Contains(argv0, "/") {
		p, err := exec.LookPath(argv0)
		if err != nil {
			// LookPath's message names the PATH entries it tried: rekey's
			// own words instead.
			return "", fmt.Errorf("%s: command %q not found in PATH: %w", what, name, failure.ErrInvalid)
		}
		return p, nil
	}
	p := argv0
	if !filepath.IsAbs(p) && dir != "" {
		p = filepath.Join(dir, p)
	}
	fi, err := os.Stat(p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("%s: command %s not found: %w", what, argv0, failure.ErrInvalid)
	case errors.Is(err, fs.ErrPermission):
		return "", fmt.Errorf("%s: command %s cannot be reached: permission denied: %w", what, argv0, failure.ErrUnauthorized)
	case err != nil:
		return "", fmt.Errorf("%s: command %s cannot be found: %w", what, argv0, failure.ErrInvalid)
	case !fi.Mode().IsRegular():
		return "", fmt.Errorf("%s: command %s is not a regular file: %w", what, argv0, failure.ErrInvalid)
	}
	if err := executable(p); err != nil {
		return "", fmt.Errorf("%s: command %s is not executable by this process: %w", what, argv0, failure.ErrUnauthorized)
	}
	return p, nil
}

// resolveScript exits 0 when $1 names a program the shell would run: a
// path with a slash that is an executable regular file, or a name
// `command -v` finds (a builtin, or an executable in PATH). dash's
// `command -v` prints a path with a slash even when it cannot be run, so
// paths are tested by hand. It prints nothing.
const resolveScript = `case $1 in
*/*) [ -f "$1" ] && [ -x "$1" ] && exit 0; exit 1;;
esac
p=$(command -v -- "$1" 2>/dev/null) || exit 1
case $p in
/*) [ -f "$p" ] && [ -x "$p" ] || exit 1;;
esac
exit 0`

// ResolveRemote finds the program argv0 names on host as its login shell
// will run it (in dir, with the PATH a session there gets), without
// running it: `command -v` and `test -x` in sh, argv0 passed as one quoted
// argument (sshpool.Quote). Not found is ErrInvalid; a host that cannot be
// reached is what sshpool says (transient).
func ResolveRemote(ctx context.Context, host *sshpool.Host, what, argv0, dir string) error {
	if argv0 == "" {
		return fmt.Errorf("%s: no command given: %w", what, failure.ErrInvalid)
	}
	_, err := host.Run(ctx, sshpool.Command{
		What: what + ": find " + filepath.Base(argv0),
		Argv: []string{"sh", "-c", resolveScript, "rekey-preflight", argv0},
		Dir:  dir,
	})
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil, failure.IsTransient(err), errors.Is(err, failure.ErrUnauthorized):
		return err
	}
	where := ""
	if dir != "" {
		where = " in directory " + dir
	}
	return fmt.Errorf("%s: command %s not found on %s%s, or not executable there: %w", what, argv0, host.Name(), where, failure.ErrInvalid)
}
