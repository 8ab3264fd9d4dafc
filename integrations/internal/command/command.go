// Package command runs the child processes of the exec, file and manual
// integration types, the one way rekey runs a child:
//
//   - the key, when the child needs it, arrives on stdin followed by a
//     newline, never in argv or the environment; Run refuses to start a
//     child whose argv or environment holds the key;
//   - the environment is minimal (see Env), not rekey's own, so tokens in
//     rekey's environment (VAULT_TOKEN, SLACK_BOT_TOKEN, GITHUB_TOKEN, any
//     *_env variable) never reach a child unless the configuration passes
//     one on by name;
//   - the child runs in its own process group, and the whole group is
//     killed when ctx is done;
//   - exit status 75 (EX_TEMPFAIL) is transient, 77 (EX_NOPERM) is
//     unauthorized, any other failure is permanent (invalid);
//   - the child's stderr is never read: a command's output is its response
//     body, and can echo the key in an encoding rekey cannot redact. Errors
//     name the command and its exit status only.
package command

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/secret"
)

// Exit statuses from sysexits.h that mean something to rekey.
const (
	ExitTempFail = 75 // EX_TEMPFAIL: try again later
	ExitNoPerm   = 77 // EX_NOPERM: not allowed
)

// waitDelay is how long Run waits, after the child exits or is killed, for
// pipes still held open by its descendants.
const waitDelay = time.Second

// Spec is one command to run.
type Spec struct {
	// What names the command in errors, for example "exec: deploy: apply".
	What string
	Argv []string
	Dir  string
	// Env is the child's whole environment, NAME=value; build it with Env.
	Env []string
	// Key is what the child must never see in argv or its environment.
	// When Stdin is set, it is written to the child's stdin followed by a
	// newline.
	Key   secret.Key
	Stdin bool
	// StdoutLimit, when above zero, captures stdout; a child that prints
	// more than this many bytes fails. Otherwise stdout is discarded.
	StdoutLimit int
}

// Run runs the command and returns what it printed on stdout (when
// captured). Errors are classified with the integrations error classes; an
// error from ctx wraps ctx.Err() (and ErrTransient for a deadline).
func Run(ctx context.Context, s Spec) ([]byte, error) {
	if len(s.Argv) == 0 || s.Argv[0] == "" {
		return nil, fmt.Errorf("%s: no command given: %w", s.What, failure.ErrInvalid)
	}
	name := filepath.Base(s.Argv[0])
	if !s.Key.IsZero() {
		k := s.Key.Reveal() // compared only; never printed
		for i, a := range s.Argv {
			if strings.Contains(a, k) {
				return nil, fmt.Errorf("%s: argument %d of %s holds the key; a command gets it on stdin only: %w", s.What, i, name, failure.ErrInvalid)
			}
		}
		for _, e := range s.Env {
			if strings.Contains(e, k) {
				n, _, _ := strings.Cut(e, "=")
				return nil, fmt.Errorf("%s: environment variable %s for %s holds the key; a command gets it on stdin only: %w", s.What, n, name, failure.ErrInvalid)
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, ctxError(s.What, name, err)
	}

	cmd := exec.CommandContext(ctx, s.Argv[0], s.Argv[1:]...)
	cmd.Dir = s.Dir
	cmd.Env = s.Env
	if cmd.Env == nil {
		cmd.Env = []string{}
	}
	if s.Stdin {
		cmd.Stdin = strings.NewReader(s.Key.Reveal() + "\n") // the child's stdin is the wire
	}
	var out *limitBuffer
	if s.StdoutLimit > 0 {
		out = &limitBuffer{limit: s.StdoutLimit}
		cmd.Stdout = out
	}
	// Stderr stays nil: the child writes it to /dev/null.
	cmd.WaitDelay = waitDelay
	setProcessGroup(cmd)

	err := cmd.Run()
	if ctxErr := ctx.Err(); ctxErr != nil {
		return nil, ctxError(s.What, name, ctxErr)
	}
	if err != nil {
		return nil, classify(s.What, name, err)
	}
	if out != nil {
		if out.over {
			return nil, fmt.Errorf("%s: %s printed more than %d bytes: %w", s.What, name, s.StdoutLimit, failure.ErrInvalid)
		}
		return out.buf.Bytes(), nil
	}
	return nil, nil
}

func ctxError(what, name string, err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %s: %w: %w", what, name, err, failure.ErrTransient)
	}
	return fmt.Errorf("%s: %s: %w", what, name, err)
}

func classify(what, name string, err error) error {
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code := ee.ExitCode()
		if code < 0 {
			return fmt.Errorf("%s: %s was killed (%s): %w", what, name, ee.ProcessState, failure.ErrInvalid)
		}
		class := failure.ErrInvalid
		switch code {
		case ExitTempFail:
			class = failure.ErrTransient
		case ExitNoPerm:
			class = failure.ErrUnauthorized
		}
		return fmt.Errorf("%s: %s exited with status %d: %w", what, name, code, class)
	case errors.Is(err, exec.ErrWaitDelay):
		return fmt.Errorf("%s: %s left a process holding its output open: %w", what, name, failure.ErrInvalid)
	case errors.Is(err, exec.ErrNotFound), errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%s: command %q not found: %w", what, name, failure.ErrInvalid)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("%s: cannot run %s: permission denied: %w", what, name, failure.ErrUnauthorized)
	}
	return fmt.Errorf("%s: cannot run %s: %w: %w", what, name, err, failure.ErrInvalid)
}

// limitBuffer keeps the first limit bytes written and notes whether more came.
type limitBuffer struct {
	buf   bytes.Buffer
	limit int
	over  bool
}

func (b *limitBuffer) Write(p []byte) (int, error) {
	if room := b.limit - b.buf.Len(); room < len(p) {
		b.over = true
		if room > 0 {
			b.buf.Write(p[:room])
		}
		return len(p), nil
	}
	return b.buf.Write(p)
}

// Inherited is the part of rekey's environment a child is given: what a
// program needs to find its tools, its home and its locale. Nothing else is
// passed on unless the configuration names it.
var Inherited = []string{"PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR"}

const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

var (
	envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	varRefRE  = regexp.MustCompile(`\$\{([^}]*)\}`)
)

// CheckEnv checks configured environment entries: each is NAME=value, and
// every ${VAR} in a value names a variable. It returns a message for the
// first bad entry, or "".
func CheckEnv(entries []string) string {
	seen := map[string]bool{}
	for i, e := range entries {
		n, v, ok := strings.Cut(e, "=")
		if !ok || !envNameRE.MatchString(n) {
			return fmt.Sprintf("entry %d: want NAME=value with NAME made of letters, digits and '_'", i)
		}
		if seen[n] {
			return fmt.Sprintf("entry %d: %s is given twice", i, n)
		}
		seen[n] = true
		for _, m := range varRefRE.FindAllStringSubmatch(v, -1) {
			if !envNameRE.MatchString(m[1]) {
				return fmt.Sprintf("entry %d (%s): ${%s} is not a variable name", i, n, m[1])
			}
		}
	}
	return ""
}

// Env builds a child's environment: the Inherited variables that are set
// in rekey's environment (PATH defaults to the usual directories), then
// the configured entries, which replace inherited ones of the same name.
// ${VAR} in an entry's value is replaced from rekey's environment; a
// variable that is empty or unset is an error (invalid) naming it.
func Env(getenv func(string) string, entries []string) ([]string, error) {
	vals := map[string]string{}
	var order []string
	set := func(n, v string) {
		if _, ok := vals[n]; !ok {
			order = append(order, n)
		}
		vals[n] = v
	}
	for _, n := range Inherited {
		if v := getenv(n); v != "" {
			set(n, v)
		}
	}
	if _, ok := vals["PATH"]; !ok {
		set("PATH", defaultPath)
	}
	for _, e := range entries {
		n, v, _ := strings.Cut(e, "=")
		var missing string
		v = varRefRE.ReplaceAllStringFunc(v, func(ref string) string {
			name := ref[2 : len(ref)-1]
			val := getenv(name)
			if val == "" && missing == "" {
				missing = name
			}
			return val
		})
		if missing != "" {
			return nil, fmt.Errorf("environment variable %s for %s is not set: %w", missing, n, failure.ErrInvalid)
		}
		set(n, v)
	}
	env := make([]string, 0, len(order))
	for _, n := range order {
		env = append(env, n+"="+vals[n])
	}
	return env, nil
}
