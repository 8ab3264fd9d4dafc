package sshpool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/secret"
)

// Exit statuses from sysexits.h that mean something to rekey, as package
// command reads them locally; 127 is the shell's "command not found".
const (
	exitTempFail = 75
	exitNoPerm   = 77
	exitNotFound = 127
)

// Command is one command to run on a host.
type Command struct {
	// What names the command in errors: "exec: wp-widget: apply".
	What string
	Argv []string
	// Dir, when set, is the directory the command runs in.
	Dir string
	// Key must not appear in Argv. With Stdin, it is written to the
	// command's stdin followed by a newline; nothing else is.
	Key   secret.Key
	Stdin bool
	// StdoutLimit, when above zero, captures stdout; a command that
	// prints more fails. Otherwise stdout is discarded. Stderr is never
	// read: a command's output can echo the key.
	StdoutLimit int
}

// Quote joins argv into one command line for a POSIX shell (the login
// shell sshd runs it with): every argument in single quotes, a single
// quote inside one written '\”, so no argument can be read as anything
// but one word. An argument holding a NUL byte cannot be passed, and is
// an error.
func Quote(argv []string) (string, error) {
	var b strings.Builder
	for i, a := range argv {
		if strings.IndexByte(a, 0) >= 0 {
			return "", fmt.Errorf("argument %d holds a NUL byte", i)
		}
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteByte('\'')
		b.WriteString(strings.ReplaceAll(a, "'", `'\''`))
		b.WriteByte('\'')
	}
	return b.String(), nil
}

// Run runs c on the host through one session of its connection and
// returns what it printed on stdout (when captured). The remote
// environment is what sshd gives a session; rekey sets no variable.
// Errors are classified as package command classifies a local child's:
// exit 75 transient, 77 unauthorized, others invalid; a lost connection
// and ctx's deadline are transient. When ctx ends the command is sent
// SIGKILL and its session closed.
func (h *Host) Run(ctx context.Context, c Command) ([]byte, error) {
	what := c.What + ": on " + h.ep.describe()
	if len(c.Argv) == 0 || c.Argv[0] == "" {
		return nil, fmt.Errorf("%s: no command given: %w", what, failure.ErrInvalid)
	}
	name := baseName(c.Argv[0])
	if !c.Key.IsZero() {
		k := c.Key.Reveal() // compared only; never printed
		for i, a := range c.Argv {
			if strings.Contains(a, k) {
				return nil, fmt.Errorf("%s: argument %d of %s holds the key; a command gets it on stdin only: %w", what, i, name, failure.ErrInvalid)
			}
		}
		if strings.Contains(c.Dir, k) {
			return nil, fmt.Errorf("%s: the directory of %s holds the key: %w", what, name, failure.ErrInvalid)
		}
	}
	line, err := Quote(c.Argv)
	if err != nil {
		return nil, fmt.Errorf("%s: %s: %v: %w", what, name, err, failure.ErrInvalid)
	}
	if c.Dir != "" {
		dir, err := Quote([]string{c.Dir})
		if err != nil {
			return nil, fmt.Errorf("%s: dir: %v: %w", what, err, failure.ErrInvalid)
		}
		line = "cd " + dir + " && " + line
	}

	sess, release, err := h.session(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.What, err)
	}
	defer release()
	if c.Stdin {
		sess.Stdin = strings.NewReader(c.Key.Reveal() + "\n") // the command's stdin is the wire
	}
	var out *limitBuffer
	if c.StdoutLimit > 0 {
		out = &limitBuffer{limit: c.StdoutLimit}
		sess.Stdout = out
	}
	// Stdout (when not captured) and stderr stay nil: x/crypto discards them.
	if err := sess.Start(line); err != nil {
		return nil, fmt.Errorf("%s: start %s: %s: %w", what, name, handshakeReason(err), failure.ErrTransient)
	}
	done := make(chan error, 1)
	go func() { done <- sess.Wait() }()
	select {
	case err = <-done:
	case <-ctx.Done():
		sess.Signal(ssh.SIGKILL)
		sess.Close()
		select { // the host may not pass signals on; do not wait for it
		case <-done:
		case <-time.After(time.Second):
		}
		return nil, fmt.Errorf("%s: %s: %w", what, name, ctxErr(ctx))
	}
	if err != nil {
		return nil, classifyExit(what, name, err)
	}
	if out != nil {
		if out.over {
			return nil, fmt.Errorf("%s: %s printed more than %d bytes: %w", what, name, c.StdoutLimit, failure.ErrInvalid)
		}
		return out.buf.Bytes(), nil
	}
	return nil, nil
}

func classifyExit(what, name string, err error) error {
	var ee *ssh.ExitError
	var missing *ssh.ExitMissingError
	switch {
	case errors.As(err, &ee):
		if sig := ee.Signal(); sig != "" {
			return fmt.Errorf("%s: %s was killed (signal %s): %w", what, name, sig, failure.ErrInvalid)
		}
		class := failure.ErrInvalid
		switch code := ee.ExitStatus(); code {
		case exitTempFail:
			class = failure.ErrTransient
		case exitNoPerm:
			class = failure.ErrUnauthorized
		case exitNotFound:
			return fmt.Errorf("%s: command %q not found on the host (exit status 127): %w", what, name, failure.ErrInvalid)
		}
		return fmt.Errorf("%s: %s exited with status %d: %w", what, name, ee.ExitStatus(), class)
	case errors.As(err, &missing), errors.Is(err, io.EOF):
		return fmt.Errorf("%s: %s: the connection was lost before it finished: %w", what, name, failure.ErrTransient)
	}
	return fmt.Errorf("%s: %s: %s: %w", what, name, handshakeReason(err), failure.ErrTransient)
}

// session opens a session on the host's connection, within the
// connection's limit of sessions at once. release closes it.
func (h *Host) session(ctx context.Context) (*ssh.Session, func(), error) {
	for attempt := 0; ; attempt++ {
		c, err := h.p.get(ctx, h.ep)
		if err != nil {
			return nil, nil, err
		}
		sess, err := h.openSession(ctx, c)
		if errors.Is(err, errLost) && attempt == 0 {
			continue // the connection died before the pool noticed: connect again, once
		}
		if err != nil {
			return nil, nil, err
		}
		c.use(1)
		return sess, func() { sess.Close(); c.use(-1); c.free() }, nil
	}
}

// errLost marks a session that could not be opened because the
// connection was gone.
var errLost = errors.New("the connection was lost")

// openSession takes one of c's session slots (c.acquire) and opens a
// session in it; on error the slot is free again. A host that refuses
// the session while others are open (sshd counts a session against its
// MaxSessions until it has torn it down, a moment after rekey let go of
// it) is asked again a little later.
func (h *Host) openSession(ctx context.Context, c *conn) (*ssh.Session, error) {
	for i := 0; ; i++ {
		if err := c.acquire(ctx); err != nil {
			return nil, fmt.Errorf("ssh: %s: wait for a session: %w", h.ep.describe(), err)
		}
		sess, err := c.client.NewSession()
		if err == nil {
			return sess, nil
		}
		others := c.inUse() - 1
		c.free()
		var oc *ssh.OpenChannelError
		if !errors.As(err, &oc) {
			c.client.Close()
			<-c.dead
			return nil, fmt.Errorf("ssh: %s: open a session: %w: %w", h.ep.describe(), errLost, failure.ErrTransient)
		}
		// The host answered: the connection is fine, the session refused.
		if others < 1 || i == refusedRetries {
			return nil, fmt.Errorf("ssh: %s: the host refused a session (with %d others open; its MaxSessions may be lower than rekey's %d): %w", h.ep.describe(), others, cap(c.sem), failure.ErrTransient)
		}
		if err := pause(ctx, 50*time.Millisecond); err != nil {
			return nil, fmt.Errorf("ssh: %s: wait for a session: %w", h.ep.describe(), err)
		}
	}
}

// sftpSession is an SFTP session of a connection. Between operations it
// waits, open, in its connection's idle list (and keeps its slot), so the
// next operation on the host skips opening a channel and starting the
// host's SFTP server.
type sftpSession struct {
	sess   *ssh.Session
	client *sftp.Client
	dead   chan struct{} // closed when the SFTP session ends
}

func (s *sftpSession) alive() bool {
	select {
	case <-s.dead:
		return false
	default:
		return true
	}
}

// close ends the session and waits (a little) for the host to have let
// go of it too, so the slot it frees is free on the host as well: sshd
// counts a session until it has torn it down, against its MaxSessions.
func (s *sftpSession) close() {
	s.client.Close()
	s.sess.Close()
	select {
	case <-s.dead:
	case <-time.After(2 * time.Second):
	}
}

// SFTP gives an SFTP session of the host's connection to one operation
// at a time: one left open by an earlier operation, or a new one. When
// ctx ends during the operation, the session is closed, so a host that
// stops answering cannot hold the caller, and other operations on the
// host are not disturbed. Call release when done.
func (h *Host) SFTP(ctx context.Context) (client *sftp.Client, release func(), err error) {
	for attempt := 0; ; attempt++ {
		c, err := h.p.get(ctx, h.ep)
		if err != nil {
			return nil, nil, err
		}
		s := c.takeIdle()
		if s == nil {
			s, err = h.newSFTP(ctx, c)
			if errors.Is(err, errLost) && attempt == 0 {
				continue
			}
			if err != nil {
				return nil, nil, err
			}
		}
		c.use(1)
		stop, watched := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(watched)
			select {
			case <-ctx.Done():
				s.close()
			case <-stop:
			}
		}()
		var once sync.Once
		return s.client, func() {
			once.Do(func() {
				close(stop)
				<-watched
				c.use(-1)
				if ctx.Err() != nil || !s.alive() {
					s.close()
					c.free()
					return
				}
				c.putIdle(s)
			})
		}, nil
	}
}

// refusedRetries bounds how often a session the host refused while
// others were open is asked for again (sshd counts a session against its
// MaxSessions until it has torn it down, a moment after rekey let go).
const refusedRetries = 40

// newSFTP opens a new SFTP session in a slot of c, asking again a little
// later when the host refuses it while other sessions are open.
func (h *Host) newSFTP(ctx context.Context, c *conn) (*sftpSession, error) {
	for i := 0; ; i++ {
		s, err := h.tryNewSFTP(ctx, c)
		if !errors.Is(err, errRefused) || i == refusedRetries {
			return s, err
		}
		if err := pause(ctx, 50*time.Millisecond); err != nil {
			return nil, fmt.Errorf("ssh: %s: sftp: %w", h.ep.describe(), err)
		}
	}
}

// errRefused marks a session request the host refused while the
// connection had other sessions open.
var errRefused = errors.New("refused while other sessions were open")

func pause(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctxErr(ctx)
	case <-time.After(d):
		return nil
	}
}

func (h *Host) tryNewSFTP(ctx context.Context, c *conn) (*sftpSession, error) {
	sess, err := h.openSession(ctx, c)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*sftpSession, error) {
		sess.Close()
		c.free()
		return nil, fmt.Errorf("ssh: %s: sftp: %w", h.ep.describe(), err)
	}
	w, err := sess.StdinPipe()
	if err != nil {
		return fail(err)
	}
	r, err := sess.StdoutPipe()
	if err != nil {
		return fail(err)
	}
	if err := sess.RequestSubsystem("sftp"); err != nil {
		if c.inUse() > 1 {
			// sshd refuses a session beyond its MaxSessions this way too.
			return fail(fmt.Errorf("the host refused to start SFTP with %d other sessions open (%w): %w", c.inUse()-1, errRefused, failure.ErrTransient))
		}
		return fail(fmt.Errorf("the host has no sftp subsystem: %w", failure.ErrInvalid))
	}
	stop, watched := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(watched)
		select {
		case <-ctx.Done():
			sess.Close()
		case <-stop:
		}
	}()
	cl, err := sftp.NewClientPipe(r, w)
	close(stop)
	<-watched
	if err != nil {
		if ctx.Err() != nil {
			return fail(ctxErr(ctx))
		}
		return fail(fmt.Errorf("start: %s: %w", handshakeReason(err), failure.ErrTransient))
	}
	s := &sftpSession{sess: sess, client: cl, dead: make(chan struct{})}
	go func() {
		cl.Wait()
		close(s.dead)
	}()
	return s, nil
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

func baseName(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 && i < len(p)-1 {
		return p[i+1:]
	}
	return p
}

// FileError says, in rekey's words, why an SFTP operation failed, and
// classifies it: never the text the host's server sent with it.
func FileError(err error) (reason string, class error) {
	var se *sftp.StatusError
	switch {
	case errors.Is(err, os.ErrNotExist):
		return "no such file or directory", failure.ErrNotFound
	case errors.Is(err, os.ErrPermission):
		return "permission denied", failure.ErrUnauthorized
	case errors.Is(err, os.ErrExist):
		return "already exists", failure.ErrConflict
	case errors.As(err, &se):
		switch se.FxCode() {
		case sftp.ErrSSHFxFailure:
			return "the host's SFTP server refused it (a full disk, a read-only file system, a directory that is not empty, ...)", failure.ErrInvalid
		case sftp.ErrSSHFxOpUnsupported:
			return "the host's SFTP server does not support it", failure.ErrInvalid
		case sftp.ErrSSHFxConnectionLost, sftp.ErrSSHFxNoConnection:
			return "the connection was lost", failure.ErrTransient
		case sftp.ErrSSHFxBadMessage:
			return "the host's SFTP server sent a bad message", failure.ErrTransient
		}
		return fmt.Sprintf("SFTP status %d", se.Code), failure.ErrInvalid
	case errors.Is(err, sftp.ErrSSHFxConnectionLost), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.ErrClosedPipe), errors.Is(err, os.ErrClosed):
		return "the connection was lost", failure.ErrTransient
	}
	return "the SFTP session failed", failure.ErrTransient
}
