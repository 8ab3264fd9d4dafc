// Package sshtest starts a real OpenSSH sshd for tests: on loopback, on a
// free port, with a host key, a client key and a known_hosts file of its
// own (never the machine's), stopped when the test ends. There is no fake
// SSH server: what rekey does over SSH is shown against the real one.
//
// A missing sshd skips the test with the package to install, or fails it
// where every test must run (CI=true, REKEY_REQUIRE_TOOLS=1): see package
// testtool.
package sshtest

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/rekey-dev/rekey/internal/testtool"
)

// T is what Start needs of a test: *testing.T and *testing.B are one; the
// demo (cmd/rekey-demo) gives its own.
type T interface {
	Helper()
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	Cleanup(func())
	TempDir() string
}

// Options shape one server.
type Options struct {
	// Addrs are the loopback addresses it listens on, all on one port
	// (default 127.0.0.1). Each address is a host of its own to a client:
	// its own known_hosts entry, its own connection.
	Addrs []string
	// Config is appended to the generated sshd_config.
	Config string
	// Shell is the login shell where Start can choose it (default /bin/sh).
	Shell string
}

// Server is one running sshd.
type Server struct {
	Addrs []string // listen addresses, as host:port
	Host  string   // the first address's host
	Port  int
	User  string // the login name (the user running the test)
	Dir   string // the server's files: sshd_config, keys, known_hosts
	// Home is the login's home directory on the server, and Shell its
	// login shell: see Start.
	Home, Shell string

	// Identity is a private key (OpenSSH format, no passphrase) the
	// server accepts; KnownHosts a known_hosts file that holds the host
	// key for every address, and nothing else.
	Identity   string
	KnownHosts string
	HostKey    ssh.PublicKey

	sshd   string
	config string
	argv   []string
	t      T

	mu  sync.Mutex
	cmd *exec.Cmd
	log *lockedBuffer
}

// Start starts a server that stops when t ends.
//
// Run as root where unshare(1) is found, sshd runs in a mount namespace of
// its own in which /etc/passwd gives the login a fresh home directory
// (Server.Home) and /bin/sh as its shell: the server is a clean host,
// whose sessions do not run the machine's ~/.bashrc (which can take
// seconds) or see its ~/.ssh. Otherwise the login is the test's user as
// the machine knows it.
func Start(t T, o Options) *Server {
	t.Helper()
	var sshd string
	if tb, ok := t.(testtool.T); ok {
		sshd = testtool.Find(tb, "openssh-server", "sshd", "/usr/sbin/sshd")
	} else if sshd = Find(); sshd == "" {
		t.Fatal("sshd not found: install it with `apt-get install -y openssh-server`")
	}
	if len(o.Addrs) == 0 {
		o.Addrs = []string{"127.0.0.1"}
	}
	u, err := user.Current()
	if err != nil {
		t.Fatalf("sshtest: current user: %v", err)
	}
	if os.Geteuid() == 0 {
		// sshd's privilege separation needs this directory to exist.
		if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
			t.Fatalf("sshtest: %v", err)
		}
	}
	dir := t.TempDir()
	s := &Server{Host: o.Addrs[0], User: u.Username, Dir: dir, sshd: sshd, t: t}

	hostPub := WriteKey(t, filepath.Join(dir, "host_ed25519"), "")
	s.HostKey = hostPub
	clientPub := WriteKey(t, filepath.Join(dir, "id_ed25519"), "")
	s.Identity = filepath.Join(dir, "id_ed25519")
	writeFile(t, filepath.Join(dir, "authorized_keys"), ssh.MarshalAuthorizedKey(clientPub), 0o600)

	s.Port = freePort(t, o.Addrs[0])
	var kh, cfg strings.Builder
	for _, a := range o.Addrs {
		hp := net.JoinHostPort(a, strconv.Itoa(s.Port))
		s.Addrs = append(s.Addrs, hp)
		fmt.Fprintf(&kh, "[%s]:%d %s", a, s.Port, ssh.MarshalAuthorizedKey(hostPub))
		fmt.Fprintf(&cfg, "ListenAddress %s\n", hp)
	}
	s.KnownHosts = filepath.Join(dir, "known_hosts")
	writeFile(t, s.KnownHosts, []byte(kh.String()), 0o600)

	fmt.Fprintf(&cfg, `HostKey %[1]s/host_ed25519
PidFile %[1]s/sshd.pid
AuthorizedKeysFile %[1]s/authorized_keys
StrictModes no
UsePAM no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowTcpForwarding yes
Subsystem sftp internal-sftp
MaxStartups 200
LogLevel VERBOSE
%[2]s
`, dir, o.Config)
	s.config = filepath.Join(dir, "sshd_config")
	writeFile(t, s.config, []byte(cfg.String()), 0o600)
	s.Home, s.Shell = u.HomeDir, ""
	s.argv = []string{sshd, "-D", "-e", "-f", s.config}
	if unshare, err := exec.LookPath("unshare"); err == nil && os.Geteuid() == 0 {
		s.Home, s.Shell = filepath.Join(dir, "home"), o.Shell
		if s.Shell == "" {
			s.Shell = "/bin/sh"
		}
		if err := os.Mkdir(s.Home, 0o700); err != nil {
			t.Fatal(err)
		}
		passwd := filepath.Join(dir, "passwd")
		writeFile(t, passwd, []byte(cleanPasswd(t, s.Home, s.Shell)), 0o644)
		s.argv = []string{unshare, "--mount", "--propagation", "private", "/bin/sh", "-c",
			`mount --bind "$0" /etc/passwd && exec "$@"`, passwd, sshd, "-D", "-e", "-f", s.config}
	}

	s.Start()
	t.Cleanup(s.Stop)
	return s
}

// Find is the path of sshd, or "".
func Find() string {
	for _, n := range []string{"sshd", "/usr/sbin/sshd"} {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	return ""
}

// Start starts sshd again after Stop, on the same port with the same keys.
func (s *Server) Start() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return
	}
	s.log = &lockedBuffer{}
	cmd := exec.Command(s.argv[0], s.argv[1:]...)
	cmd.Stdout = s.log
	cmd.Stderr = s.log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = 2 * time.Second // a session's process may hold the log pipe
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("sshtest: start sshd: %v", err)
	}
	s.cmd = cmd
	deadline := time.Now().Add(15 * time.Second)
	for _, a := range s.Addrs {
		for {
			if banner(a) {
				break
			}
			if time.Now().After(deadline) {
				s.t.Fatalf("sshtest: sshd did not answer on %s; its log:\n%s", a, s.log.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// cleanPasswd is /etc/passwd with root's home and shell replaced.
func cleanPasswd(t T, home, shell string) string {
	b, err := os.ReadFile("/etc/passwd")
	if err != nil {
		t.Fatalf("sshtest: %v", err)
	}
	lines := strings.Split(string(b), "\n")
	for i, l := range lines {
		f := strings.Split(l, ":")
		if len(f) == 7 && f[2] == "0" {
			f[5], f[6] = home, shell
			lines[i] = strings.Join(f, ":")
		}
	}
	return strings.Join(lines, "\n")
}

// Stop stops sshd and every connection it serves: the host is gone.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	// sshd puts each connection in a session of its own (setsid): kill
	// the listener's descendants one by one, then its group.
	for _, pid := range descendants(s.cmd.Process.Pid) {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	s.cmd.Wait()
	s.cmd = nil
}

// descendants lists the processes below pid (Linux /proc; none elsewhere).
func descendants(pid int) []int {
	parent := map[int]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces and parentheses.
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(f) > 1 {
			if pp, err := strconv.Atoi(f[1]); err == nil {
				parent[n] = pp
			}
		}
	}
	var out []int
	var walk func(int)
	walk = func(p int) {
		for c, pp := range parent {
			if pp == p {
				out = append(out, c)
				walk(c)
			}
		}
	}
	walk(pid)
	return out
}

// Log is what sshd wrote so far (it never sees a key: keys travel
// encrypted, on a command's stdin or in an SFTP write).
func (s *Server) Log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.log == nil {
		return ""
	}
	return s.log.String()
}

// Target is user@host:port for address i.
func (s *Server) Target(i int) string {
	return s.User + "@" + s.Addrs[i]
}

// KnownHostsLine is the line known_hosts needs to trust address i.
func (s *Server) KnownHostsLine(i int) string {
	h, p, _ := net.SplitHostPort(s.Addrs[i])
	return fmt.Sprintf("[%s]:%s %s", h, p, ssh.MarshalAuthorizedKey(s.HostKey))
}

// Fingerprint is the host key's SHA256 fingerprint, as OpenSSH prints it.
func (s *Server) Fingerprint() string { return ssh.FingerprintSHA256(s.HostKey) }

// NewHostKey gives the server a new host key (it takes effect at the next
// Start); known_hosts is left as it was, so it now holds a changed key.
func (s *Server) NewHostKey() ssh.PublicKey {
	s.t.Helper()
	s.HostKey = WriteKey(s.t, filepath.Join(s.Dir, "host_ed25519"), "")
	return s.HostKey
}

// WriteKey writes a new ed25519 key pair (private key at path, OpenSSH
// format, encrypted when passphrase is not empty; public key at
// path.pub) and returns the public key.
func WriteKey(t T, path, passphrase string) ssh.PublicKey {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var block *pem.Block
	if passphrase == "" {
		block, err = ssh.MarshalPrivateKey(priv, "sshtest")
	} else {
		block, err = ssh.MarshalPrivateKeyWithPassphrase(priv, "sshtest", []byte(passphrase))
	}
	if err != nil {
		t.Fatal(err)
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, pem.EncodeToMemory(block), 0o600)
	writeFile(t, path+".pub", ssh.MarshalAuthorizedKey(sp), 0o644)
	return sp
}

// Authorize adds a public key to the keys the server accepts.
func (s *Server) Authorize(pub ssh.PublicKey) {
	s.t.Helper()
	f, err := os.OpenFile(filepath.Join(s.Dir, "authorized_keys"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		s.t.Fatal(err)
	}
	defer f.Close()
	f.Write(ssh.MarshalAuthorizedKey(pub))
}

// AuthorizeLine adds an authorized_keys line (a public key file's content).
func (s *Server) AuthorizeLine(line []byte) {
	s.t.Helper()
	pub, _, _, _, err := ssh.ParseAuthorizedKey(line)
	if err != nil {
		s.t.Fatalf("sshtest: %v", err)
	}
	s.Authorize(pub)
}

func writeFile(t T, path string, b []byte, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, b, mode); err != nil {
		t.Fatalf("sshtest: %v", err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatalf("sshtest: %v", err)
	}
}

func freePort(t T, host string) int {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatalf("sshtest: find a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// banner reports whether an SSH server answers at addr.
func banner(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && strings.HasPrefix(line, "SSH-2.0-")
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

var _ io.Writer = (*lockedBuffer)(nil)

// Proxy forwards TCP connections to one of a server's addresses, and can
// cut them: the test's way to kill an SSH connection in the middle of
// what it carries.
type Proxy struct {
	Addr string // host:port to connect to instead of the server

	l      net.Listener
	target string

	mu       sync.Mutex
	conns    []net.Conn
	cutAfter int64 // when > 0: cut once clients have sent this many more bytes
	sent     int64
	paused   chan struct{} // while not nil, what clients send waits
	Accepted int
}

// Proxy starts a proxy to address i that stops when the test ends.
func (s *Server) Proxy(i int) *Proxy {
	s.t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		s.t.Fatalf("sshtest: proxy: %v", err)
	}
	p := &Proxy{Addr: l.Addr().String(), l: l, target: s.Addrs[i]}
	go p.accept()
	s.t.Cleanup(func() { l.Close(); p.Cut() })
	return p
}

// KnownHostsLine is the known_hosts line that trusts s's host key at the
// proxy's address.
func (p *Proxy) KnownHostsLine(s *Server) string {
	h, port, _ := net.SplitHostPort(p.Addr)
	return fmt.Sprintf("[%s]:%s %s", h, port, ssh.MarshalAuthorizedKey(s.HostKey))
}

// CutAfter cuts every connection once clients have sent n more bytes
// through the proxy.
func (p *Proxy) CutAfter(n int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sent, p.cutAfter = 0, n
}

// Pause holds what clients send until Resume; the server's answers
// still flow.
func (p *Proxy) Pause() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.paused == nil {
		p.paused = make(chan struct{})
	}
}

// Resume lets what clients send flow again.
func (p *Proxy) Resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.paused != nil {
		close(p.paused)
		p.paused = nil
	}
}

// Cut closes every connection now.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
	p.cutAfter = 0
	if p.paused != nil {
		close(p.paused)
		p.paused = nil
	}
}

func (p *Proxy) accept() {
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		u, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, u)
		p.Accepted++
		p.mu.Unlock()
		go func() { io.Copy(c, u); c.Close(); u.Close() }()
		go func() {
			buf := make([]byte, 32<<10)
			for {
				n, err := c.Read(buf)
				if n > 0 {
					p.mu.Lock()
					wait := p.paused
					p.mu.Unlock()
					if wait != nil {
						<-wait
					}
					p.mu.Lock()
					cut := false
					if p.cutAfter > 0 {
						p.sent += int64(n)
						cut = p.sent >= p.cutAfter
					}
					p.mu.Unlock()
					if cut {
						p.Cut()
						return
					}
					if _, werr := u.Write(buf[:n]); werr != nil {
						break
					}
				}
				if err != nil {
					break
				}
			}
			c.Close()
			u.Close()
		}()
	}
}

// Accepts is how many connections the proxy has accepted.
func (p *Proxy) Accepts() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.Accepted
}
