package sshpool_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rekey-dev/rekey/internal/testtool"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/internal/sshpool"
	"github.com/rekey-dev/rekey/internal/sshtest"
	"github.com/rekey-dev/rekey/secret"
)

// pool is a pool that trusts srv, logs in with its client key and reads
// no file of the user running the test.
func pool(t *testing.T, srv *sshtest.Server, mod func(*sshpool.Options)) *sshpool.Pool {
	t.Helper()
	home := t.TempDir()
	o := sshpool.Options{
		KnownHosts:     srv.KnownHosts,
		IdentityFile:   srv.Identity,
		ConnectTimeout: 5 * time.Second,
		Home:           home,
		Getenv:         func(string) string { return "" },
	}
	if mod != nil {
		mod(&o)
	}
	p := sshpool.New(o)
	t.Cleanup(func() { p.Close() })
	return p
}

func host(t *testing.T, p *sshpool.Pool, name string) *sshpool.Host {
	t.Helper()
	h, err := p.Host(name)
	if err != nil {
		t.Fatalf("Host(%q): %v", name, err)
	}
	return h
}

func TestRunQuotesHostileArguments(t *testing.T) {
	for _, shell := range []string{"/bin/sh", "/bin/bash"} {
		t.Run(filepath.Base(shell), func(t *testing.T) { testHostileArguments(t, shell) })
	}
}

func testHostileArguments(t *testing.T, shell string) {
	srv := sshtest.Start(t, sshtest.Options{Shell: shell})
	p := pool(t, srv, nil)
	h := host(t, p, srv.Target(0))
	marker := filepath.Join(t.TempDir(), "pwned")
	hostile := []string{
		"plain", "two words", "'", `"`, `\`, "it's", `'\''`, "$(touch " + marker + ")", "`touch " + marker + "`",
		"; touch " + marker, "&& touch " + marker, "| touch " + marker, "$HOME", "${PATH}", "*", "?", "~",
		"line\nbreak", "tab\there", "-n", "--", "#comment", "a'b'c", "'$(touch " + marker + ")'", "",
	}
	out, err := h.Run(context.Background(), sshpool.Command{What: "test", Argv: append([]string{"printf", `%s\0`}, hostile...), StdoutLimit: 1 << 16})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	got := strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00")
	if len(got) != len(hostile) {
		t.Fatalf("printf printed %d arguments, want %d: %q", len(got), len(hostile), got)
	}
	for i := range hostile {
		if got[i] != hostile[i] {
			t.Errorf("argument %d arrived as %q, want %q", i, got[i], hostile[i])
		}
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("an argument ran a command on the host")
	}
	if _, err := sshpool.Quote([]string{"a\x00b"}); err == nil {
		t.Error("an argument with a NUL byte was quoted")
	}
}

func TestRunKeyOnStdinOnly(t *testing.T) {
	srv := sshtest.Start(t, sshtest.Options{})
	p := pool(t, srv, nil)
	h := host(t, p, srv.Target(0))
	key := secret.New("an-0123456789abcdef0123456789abcdef")
	out, err := h.Run(context.Background(), sshpool.Command{What: "test", Argv: []string{"cat"}, Key: key, Stdin: true, StdoutLimit: 1024})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if string(out) != key.Reveal()+"\n" {
		t.Fatalf("the command read %d bytes on stdin, not the key and a newline", len(out))
	}
	_, err = h.Run(context.Background(), sshpool.Command{What: "test", Argv: []string{"echo", "x" + key.Reveal()}, Key: key})
	if !errors.Is(err, failure.ErrInvalid) || strings.Contains(err.Error(), key.Reveal()) {
		t.Fatalf("a command with the key in its arguments: %v", err)
	}
	// Exit statuses are classified as for a local command.
	for code, class := range map[int]error{75: failure.ErrTransient, 77: failure.ErrUnauthorized, 3: failure.ErrInvalid, 127: failure.ErrInvalid} {
		_, err := h.Run(context.Background(), sshpool.Command{What: "test", Argv: []string{"sh", "-c", fmt.Sprintf("echo %s >&2; exit %d", key.Reveal(), code)}})
		if !errors.Is(err, class) {
			t.Errorf("exit %d: %v, want %v", code, err, class)
		}
		if err != nil && strings.Contains(err.Error(), key.Reveal()) {
			t.Errorf("exit %d: the error holds what the command printed", code)
		}
	}
}

func TestOneConnectionPerHost(t *testing.T) {
	srv := sshtest.Start(t, sshtest.Options{Addrs: []string{"127.0.0.1", "127.0.0.2"}})
	p := pool(t, srv, func(o *sshpool.Options) { o.Sessions = 4 })
	hosts := []*sshpool.Host{host(t, p, srv.Target(0)), host(t, p, srv.Target(1)), host(t, p, srv.Target(0))}
	var wg sync.WaitGroup
	errs := make(chan error, 60)
	for i := range 60 {
		wg.Go(func() {
			h := hosts[i%len(hosts)]
			if i%2 == 0 {
				_, err := h.Run(context.Background(), sshpool.Command{What: "test", Argv: []string{"true"}})
				errs <- err
				return
			}
			c, release, err := h.SFTP(context.Background())
			if err == nil {
				_, err = c.Stat("/")
				release()
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	conns := p.Connections()
	if len(conns) != 2 {
		t.Fatalf("connections: %v, want one to each of 2 hosts", conns)
	}
	for k, n := range conns {
		if n != 1 {
			t.Errorf("%s: %d connections, want 1", k, n)
		}
	}
	if n := strings.Count(srv.Log(), "Accepted publickey"); n != 2 {
		t.Errorf("sshd logged %d logins, want 2", n)
	}
}

func TestUnknownHostKeyRefused(t *testing.T) {
	srv := sshtest.Start(t, sshtest.Options{})
	empty := filepath.Join(t.TempDir(), "known_hosts")
	os.WriteFile(empty, []byte("# nobody\n"), 0o600)
	marker := filepath.Join(t.TempDir(), "ran")
	p := pool(t, srv, func(o *sshpool.Options) { o.KnownHosts = empty })
	h := host(t, p, srv.Target(0))
	_, err := h.Run(context.Background(), sshpool.Command{What: "test", Argv: []string{"touch", marker}})
	var hk *sshpool.HostKeyError
	if !errors.As(err, &hk) || hk.Changed {
		t.Fatalf("Run on a host not in known_hosts: %v", err)
	}
	for _, want := range []string{srv.Target(0), srv.Fingerprint(), "not in " + empty} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if !errors.Is(err, failure.ErrUnauthorized) || failure.IsTransient(err) {
		t.Errorf("an untrusted host is not unauthorized: %v", err)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("the command ran on an untrusted host")
	}
	if b, _ := os.ReadFile(empty); string(b) != "# nobody\n" {
		t.Error("known_hosts was changed")
	}
}

func TestNoKnownHostsFile(t *testing.T) {
	srv := sshtest.Start(t, sshtest.Options{})
	missing := filepath.Join(t.TempDir(), "known_hosts")
	p := pool(t, srv, func(o *sshpool.Options) { o.KnownHosts = missing })
	err := host(t, p, srv.Target(0)).Check(context.Background())
	var hk *sshpool.HostKeyError
	if !errors.As(err, &hk) || !strings.Contains(err.Error(), srv.Fingerprint()) || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("Check with no known_hosts file: %v", err)
	}
	if _, serr := os.Stat(missing); serr == nil {
		t.Error("rekey created known_hosts")
	}
}

func TestChangedHostKeyRefused(t *testing.T) {
	srv := sshtest.Start(t, sshtest.Options{})
	srv.Stop()
	srv.NewHostKey()
	srv.Start()
	p := pool(t, srv, nil)
	err := host(t, p, srv.Target(0)).Check(context.Background())
	var hk *sshpool.HostKeyError
	if !errors.As(err, &hk) || !hk.Changed || hk.Line != 1 {
		t.Fatalf("Check of a host whose key changed: %v", err)
	}
	if !strings.Contains(err.Error(), srv.Fingerprint()) || !strings.Contains(err.Error(), "CHANGED") {
		t.Errorf("error %q does not name the new key's fingerprint", err)
	}
}

func TestHostWithSeveralKeyTypes(t *testing.T) {
	// known_hosts holds the host's ed25519 key; the host also has an
	// RSA key it would offer first to a client asking for RSA. The check
	// asks for the type known_hosts has, so the host is trusted.
	dir := t.TempDir()
	rsaKey := filepath.Join(dir, "host_rsa")
	keygen := testtool.Find(t, "openssh-client", "ssh-keygen")
	if out, err := runCmd(keygen, "-q", "-t", "rsa", "-b", "2048", "-N", "", "-f", rsaKey); err != nil {
		t.Fatalf("ssh-keygen: %v: %s", err, out)
	}
	srv := sshtest.Start(t, sshtest.Options{Config: "HostKey " + rsaKey + "\n"})
	p := pool(t, srv, nil)
	if err := host(t, p, srv.Target(0)).Check(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestAliasFromSSHConfig(t *testing.T) {
	srv := sshtest.Start(t, sshtest.Options{Addrs: []string{"127.0.0.1", "127.0.0.2"}})
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`
Host web1
  HostName 127.0.0.1
  Port %d
  User %s
  IdentityFile %s

Host web2
  HostName 127.0.0.2
  Port %d
  User %s
  IdentityFile %s
  ProxyJump web1

Host legacy
  ProxyCommand nc %%h %%p
`, srv.Port, srv.User, srv.Identity, srv.Port, srv.User, srv.Identity)), 0o600)
	p := pool(t, srv, func(o *sshpool.Options) { o.SSHConfig = cfg; o.IdentityFile = "" })
	out, err := host(t, p, "web1").Run(context.Background(), sshpool.Command{What: "test", Argv: []string{"echo", "ok"}, StdoutLimit: 100})
	if err != nil || string(out) != "ok\n" {
		t.Fatalf("run through alias web1: %q, %v", out, err)
	}
	// web2 is reached through web1: sshd sees its login come from the
	// jump host's forwarding, and the pool holds one connection to each.
	out, err = host(t, p, "web2").Run(context.Background(), sshpool.Command{What: "test", Argv: []string{"sh", "-c", "echo $SSH_CONNECTION"}, StdoutLimit: 200})
	if err != nil {
		t.Fatalf("run through alias web2 (ProxyJump web1): %v", err)
	}
	if f := strings.Fields(string(out)); len(f) != 4 || f[2] != "127.0.0.2" {
		t.Errorf("web2's session: SSH_CONNECTION %q, want a connection to 127.0.0.2", out)
	}
	conns := p.Connections()
	if len(conns) != 2 {
		t.Errorf("connections %v, want web1 and web2 via web1", conns)
	}
	for k := range conns {
		if strings.Contains(k, "127.0.0.2") && !strings.Contains(k, " via ") {
			t.Errorf("web2 was not reached through web1: %s", k)
		}
	}
	if _, err := p.Host("legacy"); err == nil || !strings.Contains(err.Error(), "ProxyCommand") {
		t.Errorf("an alias with ProxyCommand: %v, want a refusal", err)
	}
}

func TestPassphraseFromEnv(t *testing.T) {
	srv := sshtest.Start(t, sshtest.Options{})
	id := filepath.Join(t.TempDir(), "id_ed25519")
	srv.Authorize(sshtest.WriteKey(t, id, "correct horse"))
	env := map[string]string{"REKEY_SSH_PASS": "correct horse"}
	p := pool(t, srv, func(o *sshpool.Options) {
		o.IdentityFile, o.PassphraseEnv = id, "REKEY_SSH_PASS"
		o.Getenv = func(k string) string { return env[k] }
	})
	if err := host(t, p, srv.Target(0)).Check(context.Background()); err != nil {
		t.Fatalf("identity with its passphrase: %v", err)
	}
	env["REKEY_SSH_PASS"] = "wrong"
	p2 := pool(t, srv, func(o *sshpool.Options) {
		o.IdentityFile, o.PassphraseEnv = id, "REKEY_SSH_PASS"
		o.Getenv = func(k string) string { return env[k] }
	})
	err := host(t, p2, srv.Target(0)).Check(context.Background())
	if !errors.Is(err, failure.ErrUnauthorized) || !strings.Contains(err.Error(), "REKEY_SSH_PASS") || strings.Contains(err.Error(), "wrong") {
		t.Errorf("wrong passphrase: %v", err)
	}
	p3 := pool(t, srv, func(o *sshpool.Options) { o.IdentityFile = id })
	err = host(t, p3, srv.Target(0)).Check(context.Background())
	if !errors.Is(err, failure.ErrUnauthorized) || !strings.Contains(err.Error(), "passphrase_env") {
		t.Errorf("no passphrase: %v", err)
	}
}

func TestAgentThenDefaultIdentity(t *testing.T) {
	srv := sshtest.Start(t, sshtest.Options{})
	// An agent (x/crypto's keyring behind the agent protocol on a unix
	// socket) holding the client key.
	b, _ := os.ReadFile(srv.Identity)
	raw, err := ssh.ParseRawPrivateKey(b)
	if err != nil {
		t.Fatal(err)
	}
	kr := agent.NewKeyring()
	kr.Add(agent.AddedKey{PrivateKey: raw})
	sock := filepath.Join(t.TempDir(), "agent.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go agent.ServeAgent(kr, c)
		}
	}()
	p := pool(t, srv, func(o *sshpool.Options) {
		o.IdentityFile = ""
		o.Getenv = func(k string) string {
			if k == "SSH_AUTH_SOCK" {
				return sock
			}
			return ""
		}
	})
	if err := host(t, p, srv.Target(0)).Check(context.Background()); err != nil {
		t.Fatalf("login with the agent's key: %v", err)
	}
	// No agent: ~/.ssh/id_ed25519.
	home := t.TempDir()
	os.MkdirAll(filepath.Join(home, ".ssh"), 0o700)
	os.WriteFile(filepath.Join(home, ".ssh", "id_ed25519"), b, 0o600)
	p2 := pool(t, srv, func(o *sshpool.Options) { o.IdentityFile, o.Home = "", home })
	if err := host(t, p2, srv.Target(0)).Check(context.Background()); err != nil {
		t.Fatalf("login with ~/.ssh/id_ed25519: %v", err)
	}
	// Neither: a clear error.
	p3 := pool(t, srv, func(o *sshpool.Options) { o.IdentityFile = "" })
	if err := host(t, p3, srv.Target(0)).Check(context.Background()); !errors.Is(err, failure.ErrUnauthorized) || !strings.Contains(err.Error(), "no identity") {
		t.Errorf("no identity at all: %v", err)
	}
}

func TestUnreachableHostIsTransient(t *testing.T) {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	srv := sshtest.Start(t, sshtest.Options{})
	p := pool(t, srv, nil)
	err := host(t, p, "root@"+addr).Check(context.Background())
	if !failure.IsTransient(err) || !strings.Contains(err.Error(), addr) {
		t.Fatalf("Check of a host where nothing listens: %v", err)
	}
}

func TestCancelKillsTheCommand(t *testing.T) {
	srv := sshtest.Start(t, sshtest.Options{})
	p := pool(t, srv, nil)
	h := host(t, p, srv.Target(0))
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := h.Run(ctx, sshpool.Command{What: "test", Argv: []string{"sleep", "60"}})
	if !errors.Is(err, context.DeadlineExceeded) || !failure.IsTransient(err) {
		t.Fatalf("Run past its deadline: %v", err)
	}
	if time.Since(start) > 10*time.Second {
		t.Fatalf("Run took %s to give up", time.Since(start))
	}
	// The connection is still good for the next command.
	if _, err := h.Run(context.Background(), sshpool.Command{What: "test", Argv: []string{"true"}}); err != nil {
		t.Fatal(err)
	}
}

func TestLostConnectionIsRedialled(t *testing.T) {
	srv := sshtest.Start(t, sshtest.Options{})
	px := srv.Proxy(0)
	kh := filepath.Join(t.TempDir(), "known_hosts")
	os.WriteFile(kh, []byte(px.KnownHostsLine(srv)), 0o600)
	p := pool(t, srv, func(o *sshpool.Options) { o.KnownHosts = kh })
	h := host(t, p, srv.User+"@"+px.Addr)
	if err := h.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := h.Run(context.Background(), sshpool.Command{What: "test", Argv: []string{"sleep", "30"}})
		done <- err
	}()
	time.Sleep(300 * time.Millisecond)
	px.Cut()
	select {
	case err := <-done:
		if !failure.IsTransient(err) {
			t.Fatalf("a command whose connection was cut: %v, want transient", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a command whose connection was cut did not return")
	}
	if _, err := h.Run(context.Background(), sshpool.Command{What: "test", Argv: []string{"true"}}); err != nil {
		t.Fatalf("after the cut: %v", err)
	}
	for k, n := range p.Connections() {
		if n != 2 {
			t.Errorf("%s: %d connections, want 2 (the first was cut)", k, n)
		}
	}
}

func TestParseTarget(t *testing.T) {
	for _, c := range []struct {
		in         string
		user, host string
		port       int
		bad        bool
	}{
		{in: "web1", host: "web1"},
		{in: "deploy@web1.example.org:2222", user: "deploy", host: "web1.example.org", port: 2222},
		{in: "[2001:db8::1]:22", host: "2001:db8::1", port: 22},
		{in: "2001:db8::1", host: "2001:db8::1"},
		{in: "web1:0", bad: true},
		{in: "web1:x", bad: true},
		{in: "@web1", bad: true},
		{in: "-oProxyCommand=x", bad: true},
		{in: "web1;rm", bad: true},
		{in: "", bad: true},
	} {
		u, h, p, err := sshpool.ParseTarget(c.in)
		if (err != nil) != c.bad || !c.bad && (u != c.user || h != c.host || p != c.port) {
			t.Errorf("ParseTarget(%q) = %q %q %d %v", c.in, u, h, p, err)
		}
	}
}

func TestIdleConnectionClosed(t *testing.T) {
	srv := sshtest.Start(t, sshtest.Options{})
	p := pool(t, srv, func(o *sshpool.Options) { o.KeepAlive, o.IdleTimeout = 50*time.Millisecond, 100*time.Millisecond })
	h := host(t, p, srv.Target(0))
	// A command longer than the idle timeout keeps the connection.
	if _, err := h.Run(context.Background(), sshpool.Command{What: "test", Argv: []string{"sleep", "0.5"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Run(context.Background(), sshpool.Command{What: "test", Argv: []string{"true"}}); err != nil {
		t.Fatal(err)
	}
	if n := p.Connections()[srv.Target(0)]; n != 1 {
		t.Fatalf("%d connections while in use, want 1", n)
	}
	time.Sleep(500 * time.Millisecond)
	if _, err := h.Run(context.Background(), sshpool.Command{What: "test", Argv: []string{"true"}}); err != nil {
		t.Fatal(err)
	}
	if n := p.Connections()[srv.Target(0)]; n != 2 {
		t.Fatalf("%d connections after an idle pause, want 2", n)
	}
}
