// Package sshpool is how rekey reaches other hosts: one authenticated SSH
// connection per host per run, shared by every integration and scan path
// on that host, with sessions (a remote command, an SFTP session)
// multiplexed over it, at most Options.Sessions at once. An SFTP session
// serves one operation at a time and is kept open between operations for
// the next one; it gives up its slot to anyone waiting for one.
//
// A host is [user@]host[:port], or an alias of ~/.ssh/config whose
// HostName, User, Port, IdentityFile and ProxyJump are used as ssh(1)
// uses them (ProxyCommand is refused, not ignored).
//
// Trust: a host's key must already be in the known_hosts file rekey is
// given (default ~/.ssh/known_hosts; hashed entries, [host]:port entries
// and @revoked lines are understood). A key that is not there, or that
// differs from the one there, is refused with a *HostKeyError naming the
// host and the key's SHA256 fingerprint. rekey never adds a key.
//
// Identity: the configured identity_file and the alias's IdentityFile
// lines; else the keys of ssh-agent ($SSH_AUTH_SOCK); else ~/.ssh/id_ed25519,
// id_ecdsa and id_rsa, whichever exist. An identity with a passphrase is
// opened with the value of the variable passphrase_env names.
//
// Errors name the host and what failed, never a key and never anything a
// remote command printed. They are classified with package failure: a
// host that cannot be reached, a handshake that times out and a
// connection lost are ErrTransient; a refused identity and an untrusted
// host key are ErrUnauthorized.
package sshpool

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/kevinburke/ssh_config"
	"golang.org/x/crypto/ssh"

	"github.com/rekey-dev/rekey/failure"
)

// Defaults.
const (
	DefaultConnectTimeout = 10 * time.Second
	// DefaultSessions is how many sessions one connection carries at
	// once: OpenSSH's MaxSessions is 10 unless the host says otherwise.
	DefaultSessions = 8
	// DefaultKeepAlive is how often an idle connection is checked.
	DefaultKeepAlive = 30 * time.Second
)

// Options configure a Pool. The zero value reads the usual files of the
// user running rekey.
type Options struct {
	// KnownHosts is the known_hosts file holding the host keys rekey
	// trusts; default ~/.ssh/known_hosts.
	KnownHosts string
	// IdentityFile is the private key to log in with; default: the
	// agent's keys, else ~/.ssh/id_ed25519, id_ecdsa, id_rsa.
	IdentityFile string
	// PassphraseEnv names the variable holding IdentityFile's passphrase.
	PassphraseEnv string
	// ConnectTimeout bounds connecting, the handshake and logging in.
	ConnectTimeout time.Duration
	// SSHConfig is the ssh_config file for aliases; default
	// ~/.ssh/config. A missing file is fine.
	SSHConfig string
	// Sessions is the most sessions open at once on one connection
	// (rotation.concurrency, at most DefaultSessions).
	Sessions int
	// KeepAlive is how often a connection is checked; 0: DefaultKeepAlive.
	KeepAlive time.Duration
	// IdleTimeout, when set, closes a connection no session has used for
	// that long (checked at each KeepAlive); the next use connects again.
	// rekey serve sets it, so a daemon holds no connection between audits.
	IdleTimeout time.Duration
	// Getenv reads SSH_AUTH_SOCK and PassphraseEnv; default os.Getenv.
	Getenv func(string) string
	// Home and User default to the user running rekey.
	Home, User string
	Logger     *slog.Logger
}

// Pool holds the connections of one run. Its zero value is not usable:
// use New.
type Pool struct {
	o Options

	cfgOnce sync.Once
	cfg     *ssh_config.Config
	cfgErr  error

	idMu       sync.Mutex
	identities map[string]ssh.Signer // opened once per run

	mu      sync.Mutex
	conns   map[string]*conn
	dialing map[string]*dialCall
	dials   map[string]int
	closed  bool
}

type dialCall struct {
	done chan struct{}
	c    *conn
	err  error
}

// conn is one authenticated connection.
type conn struct {
	client *ssh.Client
	sem    chan struct{}
	dead   chan struct{}

	mu       sync.Mutex
	busy     int            // sessions in use
	lastUsed time.Time      // when the last one was let go
	idle     []*sftpSession // SFTP sessions open between operations, each in a slot
	waiting  int            // callers waiting for a slot
}

// acquire takes a session slot, waiting as long as ctx allows. When every
// slot is taken and some hold idle SFTP sessions, one is closed to make
// room. Checking for idle sessions and counting itself as waiting happen
// under the lock putIdle takes, so a session let go meanwhile is never
// kept idle while someone waits.
func (c *conn) acquire(ctx context.Context) error {
	for {
		select {
		case c.sem <- struct{}{}:
			return nil
		default:
		}
		c.mu.Lock()
		if n := len(c.idle); n > 0 {
			s := c.idle[n-1]
			c.idle = c.idle[:n-1]
			c.mu.Unlock()
			s.close()
			c.free()
			continue
		}
		c.waiting++
		c.mu.Unlock()
		var err error
		select {
		case c.sem <- struct{}{}:
		case <-ctx.Done():
			err = ctxErr(ctx)
		}
		c.mu.Lock()
		c.waiting--
		c.mu.Unlock()
		return err
	}
}

// inUse is how many slots are taken (sessions open, idle ones included).
func (c *conn) inUse() int { return len(c.sem) }

// free gives a slot back.
func (c *conn) free() { <-c.sem }

// takeIdle returns an open SFTP session left by an earlier operation,
// with its slot, or nil.
func (c *conn) takeIdle() *sftpSession {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.idle) > 0 {
		n := len(c.idle)
		s := c.idle[n-1]
		c.idle = c.idle[:n-1]
		if s.alive() {
			return s
		}
		s.close()
		<-c.sem
	}
	return nil
}

// putIdle keeps an SFTP session open for the next operation, unless
// someone is waiting for its slot.
func (c *conn) putIdle(s *sftpSession) {
	c.mu.Lock()
	if c.waiting > 0 || !c.alive() {
		c.mu.Unlock()
		s.close()
		c.free()
		return
	}
	c.idle = append(c.idle, s)
	c.mu.Unlock()
}

// use notes a session opening (+1) or closing (-1).
func (c *conn) use(d int) {
	c.mu.Lock()
	c.busy += d
	c.lastUsed = time.Now()
	c.mu.Unlock()
}

// idleFor is how long no session has been open, or 0 while one is.
func (c *conn) idleFor() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.busy > 0 {
		return 0
	}
	return time.Since(c.lastUsed)
}

func (c *conn) alive() bool {
	select {
	case <-c.dead:
		return false
	default:
		return true
	}
}

// New returns a pool; it connects to nothing until a host is used.
func New(o Options) *Pool {
	if o.Getenv == nil {
		o.Getenv = os.Getenv
	}
	if o.Home == "" {
		o.Home, _ = os.UserHomeDir()
	}
	if o.User == "" {
		if u, err := user.Current(); err == nil {
			o.User = u.Username
		} else {
			o.User = o.Getenv("USER")
		}
	}
	if o.KnownHosts == "" {
		o.KnownHosts = filepath.Join(o.Home, ".ssh", "known_hosts")
	}
	if o.SSHConfig == "" {
		o.SSHConfig = filepath.Join(o.Home, ".ssh", "config")
	}
	o.KnownHosts = expandHome(o.KnownHosts, o.Home)
	o.IdentityFile = expandHome(o.IdentityFile, o.Home)
	o.SSHConfig = expandHome(o.SSHConfig, o.Home)
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = DefaultConnectTimeout
	}
	if o.Sessions <= 0 || o.Sessions > DefaultSessions {
		o.Sessions = DefaultSessions
	}
	if o.KeepAlive <= 0 {
		o.KeepAlive = DefaultKeepAlive
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Pool{o: o, identities: map[string]ssh.Signer{}, conns: map[string]*conn{}, dialing: map[string]*dialCall{}, dials: map[string]int{}}
}

func expandHome(p, home string) string {
	if p == "~" || strings.HasPrefix(p, "~/") {
		return filepath.Join(home, p[1:])
	}
	return p
}

// Host is one configured host of the pool.
type Host struct {
	p  *Pool
	ep *endpoint
}

// Host resolves a configured host ([user@]host[:port] or an alias). It
// reads ~/.ssh/config but connects to nothing.
func (p *Pool) Host(name string) (*Host, error) {
	ep, err := p.resolve(name, 0)
	if err != nil {
		return nil, err
	}
	return &Host{p: p, ep: ep}, nil
}

// ID names the connection the host is reached by (user, address, route):
// two names of one host (an alias and what it stands for) share it.
func (h *Host) ID() string { return h.ep.key() }

// Name is the host as configured.
func (h *Host) Name() string { return h.ep.name }

// String names the host in errors and logs.
func (h *Host) String() string { return h.ep.describe() }

// Check connects and logs in (or finds the connection already made):
// the host is reachable, its key trusted, an identity accepted.
func (h *Host) Check(ctx context.Context) error {
	_, err := h.p.get(ctx, h.ep)
	return err
}

// Connections is how many connections the pool has made to each host
// (user@address), for tests and benchmarks: one per host per run unless a
// connection was lost.
func (p *Pool) Connections() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]int, len(p.dials))
	for k, v := range p.dials {
		out[k] = v
	}
	return out
}

// Close closes every connection.
func (p *Pool) Close() error {
	p.mu.Lock()
	p.closed = true
	conns := p.conns
	p.conns = map[string]*conn{}
	p.mu.Unlock()
	for _, c := range conns {
		c.client.Close()
	}
	return nil
}

// get returns the live connection to ep, making it when there is none.
// Callers that want the same host at once share one attempt; a failed
// attempt is not remembered, so a retry connects again.
func (p *Pool) get(ctx context.Context, ep *endpoint) (*conn, error) {
	key := ep.key()
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, fmt.Errorf("ssh: %s: the connection pool is closed: %w", ep.describe(), failure.ErrInvalid)
	}
	if c := p.conns[key]; c != nil && c.alive() {
		p.mu.Unlock()
		return c, nil
	}
	d := p.dialing[key]
	if d == nil {
		d = &dialCall{done: make(chan struct{})}
		p.dialing[key] = d
		go func() {
			d.c, d.err = p.dial(ep)
			p.mu.Lock()
			delete(p.dialing, key)
			if d.err == nil {
				if p.closed {
					d.c.client.Close()
					d.err = fmt.Errorf("ssh: %s: the connection pool is closed: %w", ep.describe(), failure.ErrInvalid)
				} else {
					p.conns[key] = d.c
					p.dials[key]++
				}
			}
			p.mu.Unlock()
			close(d.done)
		}()
	}
	p.mu.Unlock()
	select {
	case <-d.done:
		return d.c, d.err
	case <-ctx.Done():
		return nil, fmt.Errorf("ssh: %s: connect: %w", ep.describe(), ctxErr(ctx))
	}
}

// ctxErr is ctx's error, with a deadline classified transient.
func ctxErr(ctx context.Context) error {
	err := ctx.Err()
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: %w", err, failure.ErrTransient)
	}
	return err
}

// dial connects to ep (through its jump hosts), checks its key and logs in.
func (p *Pool) dial(ep *endpoint) (*conn, error) {
	who := ep.describe()
	// Identities first: opening one with a passphrase takes a while
	// (bcrypt), and is not the host's time to answer.
	auth, closeAuth, err := p.auth(ep)
	if err != nil {
		return nil, fmt.Errorf("ssh: %s: %w", who, err)
	}
	defer closeAuth()
	ctx, cancel := context.WithTimeout(context.Background(), p.o.ConnectTimeout)
	defer cancel()

	var raw net.Conn
	if ep.via != nil {
		jump, jerr := p.get(ctx, ep.via)
		if jerr != nil {
			return nil, fmt.Errorf("ssh: %s: through jump host: %w", who, jerr)
		}
		raw, err = jump.client.DialContext(ctx, "tcp", ep.addr())
		if err != nil {
			return nil, fmt.Errorf("ssh: %s: connect through %s: %v: %w", who, ep.via.describe(), err, failure.ErrTransient)
		}
	} else {
		raw, err = (&net.Dialer{}).DialContext(ctx, "tcp", ep.addr())
		if err != nil {
			return nil, fmt.Errorf("ssh: %s: connect: %s: %w", who, netReason(err), failure.ErrTransient)
		}
	}
	deadline, _ := ctx.Deadline()
	raw.SetDeadline(deadline)

	trust, err := p.trust(ep)
	if err != nil {
		raw.Close()
		return nil, fmt.Errorf("ssh: %s: %w", who, err)
	}
	cfg := &ssh.ClientConfig{
		User:              ep.user,
		Auth:              auth,
		HostKeyCallback:   trust.callback,
		HostKeyAlgorithms: trust.algorithms,
		Timeout:           p.o.ConnectTimeout,
	}
	cc, chans, reqs, err := ssh.NewClientConn(raw, ep.addr(), cfg)
	if err != nil {
		raw.Close()
		var hk *HostKeyError
		switch {
		case errors.As(err, &hk) || trust.refused != nil:
			if hk == nil {
				hk = trust.refused
			}
			hk.Host = who
			return nil, hk
		case strings.Contains(err.Error(), "unable to authenticate"):
			return nil, fmt.Errorf("ssh: %s: user %s: the host accepted none of the identities rekey offered (%s): %w", who, ep.user, p.offered(ep), failure.ErrUnauthorized)
		case errors.Is(err, os.ErrDeadlineExceeded) || ctx.Err() != nil:
			return nil, fmt.Errorf("ssh: %s: no answer within %s: %w", who, p.o.ConnectTimeout, failure.ErrTransient)
		}
		return nil, fmt.Errorf("ssh: %s: handshake: %s: %w", who, handshakeReason(err), failure.ErrTransient)
	}
	raw.SetDeadline(time.Time{})
	client := ssh.NewClient(cc, chans, reqs)
	c := &conn{client: client, sem: make(chan struct{}, p.o.Sessions), dead: make(chan struct{}), lastUsed: time.Now()}
	go func() {
		client.Wait()
		close(c.dead)
	}()
	go p.keepAlive(c)
	p.o.Logger.Debug("ssh: connected", "host", who)
	return c, nil
}

// keepAlive checks the connection while it is open, and closes it when
// the host stops answering, so the next use connects again.
func (p *Pool) keepAlive(c *conn) {
	t := time.NewTicker(p.o.KeepAlive)
	defer t.Stop()
	for {
		select {
		case <-c.dead:
			return
		case <-t.C:
			if p.o.IdleTimeout > 0 && c.idleFor() >= p.o.IdleTimeout {
				p.o.Logger.Debug("ssh: closing an idle connection")
				c.client.Close()
				return
			}
			answered := make(chan struct{})
			go func() {
				c.client.SendRequest("keepalive@openssh.com", true, nil)
				close(answered)
			}()
			select {
			case <-answered:
			case <-c.dead:
				return
			case <-time.After(p.o.ConnectTimeout):
				c.client.Close()
				return
			}
		}
	}
}

// netReason is a dial error without Go's op and address prefix.
func netReason(err error) string {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		var se *os.SyscallError
		if errors.As(oe.Err, &se) {
			return se.Err.Error()
		}
		return oe.Err.Error()
	}
	var de *net.DNSError
	if errors.As(err, &de) {
		return "cannot resolve " + de.Name + ": " + de.Err
	}
	return err.Error()
}

// handshakeReason says why a handshake failed in rekey's words: the
// error can carry text the host chose (a disconnect message), which never
// goes into an error.
func handshakeReason(err error) string {
	s := err.Error()
	switch {
	case errors.Is(err, io.EOF) || strings.HasSuffix(s, "EOF"):
		return "the host closed the connection"
	case strings.Contains(s, "no common algorithm"):
		return "no algorithm in common with the host"
	case strings.Contains(s, "disconnect"):
		return "the host disconnected"
	}
	return "the handshake failed"
}
