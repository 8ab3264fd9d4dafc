// Package exec is the exec integration type: commands that put the key
// where it goes, and optionally read it back or prove it works.
//
//	integrations:
//	  - {id: wp-widget, key: actionnetwork-main, type: exec,
//	    apply: [/usr/local/bin/wp-set-key, --site, greens],
//	    read: [/usr/local/bin/wp-get-key, --site, greens],
//	    env: ["WP_CLI_TOKEN=${WP_CLI_TOKEN}"], dir: /srv/www}
//
// Fields:
//
//   - apply: argv; the key arrives on stdin, followed by a newline. Exit 0
//     means the target holds the key.
//   - read: optional argv; prints the key the target holds on stdout
//     (surrounding white space is trimmed; at most 64 KiB). Printing
//     nothing means the target holds no key.
//   - verify: optional argv; exit 0 means the target works with the key it
//     holds. It is given no key.
//   - env: optional list of NAME=value added to the commands' environment;
//     ${VAR} in a value is taken from rekey's environment (so a command's
//     own credential can be passed on by name, never written in the file).
//   - dir: optional working directory for the commands.
//   - host: optional [user@]host[:port] or ~/.ssh/config alias: the
//     commands run on that host over SSH (package sshpool), one session
//     each, on the connection the run shares with every integration
//     there. The key goes on the remote command's stdin only: never in
//     its command line (each argument is single-quoted for the login
//     shell, which must be a POSIX shell, so no argument can run anything
//     else), never in its environment (rekey sets no remote variable, so
//     env is refused with host), never in a file. dir is entered with cd.
//     A host that cannot be reached is a transient failure of this
//     integration alone; an untrusted host key is unauthorized.
//
// An exec integration with neither read nor verify can be applied, but its
// state is unknown to `rekey audit` (integrations.Observe says so).
//
// Preflight proves what it can without running apply or verify: every
// command is found where it will be started, and read runs (see
// Exec.Preflight). A key with a line break or a NUL byte is refused
// (Accepts, and Apply): apply reads the key as one line on stdin. The
// value New returns is a Reader only when read is set, and a Verifier only
// when verify is set.
//
// Apply is idempotent when read is set: when read prints the key, apply is
// not run. Without read, apply runs every time, and must itself be
// idempotent.
//
// Commands run as package command runs every child: the key on stdin only
// (a command whose argv or environment would hold it is refused), a
// minimal environment (PATH, HOME, USER, LOGNAME, LANG, LC_ALL, LC_CTYPE,
// TZ, TMPDIR and the env entries; nothing else of rekey's, so VAULT_TOKEN,
// SLACK_BOT_TOKEN, GITHUB_TOKEN and every *_env variable stay behind), a
// process group of its own killed when the context ends, and stderr never
// read. Exit status 75 (EX_TEMPFAIL) is ErrTransient, 77 (EX_NOPERM) is
// ErrUnauthorized, any other failure is ErrInvalid; a timeout is transient.
package exec

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/rekey-dev/rekey/config"
	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/integrations"
	"github.com/rekey-dev/rekey/integrations/internal/command"
	"github.com/rekey-dev/rekey/internal/sshpool"
	"github.com/rekey-dev/rekey/secret"
)

// Type is the integration type's name in the configuration.
const Type = "exec"

// maxReadBytes bounds what a read command may print.
const maxReadBytes = 64 << 10

type settings struct {
	Apply  []string `mapstructure:"apply"`
	Read   []string `mapstructure:"read"`
	Verify []string `mapstructure:"verify"`
	Env    []string `mapstructure:"env"`
	Dir    string   `mapstructure:"dir"`
	Host   string   `mapstructure:"host"`
}

// Exec is an exec integration without read or verify: it can only apply.
// New returns a type that is also a Reader and/or a Verifier when read
// and/or verify are configured.
type Exec struct {
	id     string
	apply  []string
	read   []string
	verify []string
	env    []string
	dir    string
	getenv func(string) string
	host   *sshpool.Host // nil: run here
}

// reader is an Exec with read.
type reader struct{ *Exec }

// verifier is an Exec with verify.
type verifier struct{ *Exec }

// readVerifier is an Exec with read and verify.
type readVerifier struct{ *Exec }

var (
	_ integrations.Integration = (*Exec)(nil)
	_ integrations.Reader      = reader{}
	_ integrations.Verifier    = verifier{}
	_ integrations.Reader      = readVerifier{}
	_ integrations.Verifier    = readVerifier{}
	_ integrations.Remote      = (*Exec)(nil)
	_ integrations.Preflighter = (*Exec)(nil)
	_ integrations.Acceptor    = (*Exec)(nil)
	_ integrations.Factory     = New
)

// Read runs the read command.
func (r reader) Read(ctx context.Context) (secret.Key, error) { return r.Exec.readKey(ctx) }

// Verify runs the verify command.
func (v verifier) Verify(ctx context.Context) error { return v.Exec.runVerify(ctx) }

// Read runs the read command.
func (rv readVerifier) Read(ctx context.Context) (secret.Key, error) { return rv.Exec.readKey(ctx) }

// Verify runs the verify command.
func (rv readVerifier) Verify(ctx context.Context) error { return rv.Exec.runVerify(ctx) }

// New builds an exec integration from its configuration item.
func New(h integrations.Host, in config.Integration) (integrations.Integration, error) {
	cfg := h.Config
	var s settings
	err := cfg.DecodeSettings(in, &s)
	if err != nil {
		return nil, err
	}
	if len(s.Apply) == 0 {
		return nil, cfg.Required(in, "apply", "(a command as a list; it gets the key on stdin)")
	}
	for field, argv := range map[string][]string{"apply": s.Apply, "read": s.Read, "verify": s.Verify} {
		if argv != nil && (len(argv) == 0 || argv[0] == "") {
			return nil, cfg.Invalid(in, field, "give a command as a list, like [/usr/local/bin/set-key, --site, main]")
		}
	}
	if msg := command.CheckEnv(s.Env); msg != "" {
		return nil, cfg.Invalid(in, "env", "%s", msg)
	}
	e := &Exec{id: in.ID, apply: s.Apply, read: s.Read, verify: s.Verify, env: s.Env, dir: s.Dir, getenv: h.Getenv}
	if e.getenv == nil {
		e.getenv = os.Getenv
	}
	if s.Host != "" {
		if len(s.Env) > 0 {
			return nil, cfg.Invalid(in, "env", "not passed to a remote host (sshd takes only the variables its AcceptEnv lists, and rekey sets none there); set them on %s, in a wrapper script", s.Host)
		}
		if e.host, err = integrations.RemoteHost(h, in, s.Host); err != nil {
			return nil, err
		}
	}
	switch {
	case s.Read != nil && s.Verify != nil:
		return readVerifier{e}, nil
	case s.Read != nil:
		return reader{e}, nil
	case s.Verify != nil:
		return verifier{e}, nil
	}
	return e, nil
}

// ID is the integration's id.
func (e *Exec) ID() string { return e.id }

// Host is the host the commands run on, as configured; "" for this one.
func (e *Exec) Host() string {
	if e.host == nil {
		return ""
	}
	return e.host.Name()
}

// CheckHost connects and logs in to the host; nil for this one.
func (e *Exec) CheckHost(ctx context.Context) error {
	if e.host == nil {
		return nil
	}
	if err := e.host.Check(ctx); err != nil {
		return fmt.Errorf("exec: %s: %w", e.id, err)
	}
	return nil
}

// Accepts implements integrations.Acceptor: apply gets the key on stdin
// followed by a newline, so a key holding a line break (or a NUL, which
// ends a C string) would reach it as something else; Apply refuses such
// a key in the same words.
func (e *Exec) Accepts(key secret.Key) error {
	v := key.Reveal() // compared only
	switch {
	case strings.ContainsAny(v, "\n\r"):
		return fmt.Errorf("exec: %s: the key holds a line break, and apply reads it as one line on stdin: %w", e.id, failure.ErrInvalid)
	case strings.IndexByte(v, 0) >= 0:
		return fmt.Errorf("exec: %s: the key holds a NUL byte: %w", e.id, failure.ErrInvalid)
	}
	return nil
}

// Preflight checks, running neither apply nor verify, what Apply needs:
// each configured command (apply, read, verify) is found as it will be
// started (here: in rekey's PATH, or as a path, relative to dir; on a
// host: by its login shell, in dir, with `command -v` and `test -x`, see
// command.ResolveRemote), dir is a directory and env's variables are set;
// then read, when configured, runs, and must succeed (printing nothing is
// fine: a target that holds no key yet).
func (e *Exec) Preflight(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("exec: %s: %w", e.id, err)
	}
	roles := []struct {
		role string
		argv []string
	}{{"apply", e.apply}, {"read", e.read}, {"verify", e.verify}}
	if e.host == nil {
		if e.dir != "" {
			if fi, err := os.Stat(e.dir); err != nil || !fi.IsDir() {
				return fmt.Errorf("exec: %s: dir %s is not a directory rekey can enter: %w", e.id, e.dir, failure.ErrInvalid)
			}
		}
		if _, err := command.Env(e.getenv, e.env); err != nil {
			return fmt.Errorf("exec: %s: %w", e.id, err)
		}
	}
	for _, r := range roles {
		if r.argv == nil {
			continue
		}
		what := "exec: " + e.id + ": " + r.role
		var err error
		if e.host != nil {
			err = command.ResolveRemote(ctx, e.host, what, r.argv[0], e.dir)
		} else {
			_, err = command.Resolve(what, r.argv[0], e.dir)
		}
		if err != nil {
			return err
		}
	}
	if e.read != nil {
		if _, err := e.readKey(ctx); err != nil && !errors.Is(err, failure.ErrNotFound) {
			return err
		}
	}
	return nil
}

// Apply runs the apply command with the key on stdin, unless the read
// command says the target already holds it.
func (e *Exec) Apply(ctx context.Context, req integrations.ApplyRequest) (integrations.ApplyResult, error) {
	if err := ctx.Err(); err != nil {
		return integrations.ApplyResult{}, fmt.Errorf("exec: %s: %w", e.id, err)
	}
	if req.Key.IsZero() {
		return integrations.ApplyResult{}, fmt.Errorf("exec: %s: the key is empty: %w", e.id, failure.ErrInvalid)
	}
	if err := e.Accepts(req.Key); err != nil {
		return integrations.ApplyResult{}, err
	}
	if e.read != nil {
		held, err := e.readKey(ctx)
		switch {
		case err == nil && held.Equal(req.Key):
			return integrations.ApplyResult{Changed: false, At: time.Now()}, nil
		case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
			return integrations.ApplyResult{}, err
		}
		// Any other read failure: apply anyway; the state check reports it.
	}
	if _, err := e.run(ctx, "apply", e.apply, req.Key, true, 0); err != nil {
		return integrations.ApplyResult{}, err
	}
	return integrations.ApplyResult{Changed: true, At: time.Now()}, nil
}

// readKey runs read. Empty output is ErrNotFound.
func (e *Exec) readKey(ctx context.Context) (secret.Key, error) {
	out, err := e.run(ctx, "read", e.read, secret.Key{}, false, maxReadBytes)
	if err != nil {
		return secret.Key{}, err
	}
	v := strings.TrimSpace(string(out))
	if v == "" {
		return secret.Key{}, fmt.Errorf("exec: %s: read: %s printed nothing: %w", e.id, filepath.Base(e.read[0]), failure.ErrNotFound)
	}
	return secret.New(v), nil
}

// runVerify runs verify.
func (e *Exec) runVerify(ctx context.Context) error {
	_, err := e.run(ctx, "verify", e.verify, secret.Key{}, false, 0)
	return err
}

func (e *Exec) run(ctx context.Context, role string, argv []string, key secret.Key, stdin bool, limit int) ([]byte, error) {
	what := "exec: " + e.id + ": " + role
	if e.host != nil {
		return e.host.Run(ctx, sshpool.Command{
			What:        what,
			Argv:        argv,
			Dir:         e.dir,
			Key:         key,
			Stdin:       stdin,
			StdoutLimit: limit,
		})
	}
	env, err := command.Env(e.getenv, e.env)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return command.Run(ctx, command.Spec{
		What:        what,
		Argv:        argv,
		Dir:         e.dir,
		Env:         env,
		Key:         key,
		Stdin:       stdin,
		StdoutLimit: limit,
	})
}
