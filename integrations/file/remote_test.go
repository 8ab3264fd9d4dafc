package file_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rekey-dev/rekey/config"
	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/integrations"
	"github.com/rekey-dev/rekey/integrations/file"
	"github.com/rekey-dev/rekey/internal/leakcheck"
	"github.com/rekey-dev/rekey/internal/sshpool"
	"github.com/rekey-dev/rekey/internal/sshtest"
	"github.com/rekey-dev/rekey/secret"
)

// remote builds a file integration on host (a target of srv, or of a
// proxy in front of it) with a pool trusting knownHosts.
func remote(t *testing.T, srv *sshtest.Server, host, knownHosts string, settings map[string]any) integrations.Integration {
	t.Helper()
	settings["host"] = host
	in := config.Integration{ID: "web1-env", Key: "actionnetwork-main", Type: file.Type, Settings: settings}
	p := sshpool.New(sshpool.Options{KnownHosts: knownHosts, IdentityFile: srv.Identity, ConnectTimeout: 5 * time.Second, Home: t.TempDir(), Getenv: func(string) string { return "" }})
	t.Cleanup(func() { p.Close() })
	h := integrations.Host{Config: &config.Config{File: "rekey.yaml", Integrations: []config.Integration{in}}, Logger: slog.New(slog.DiscardHandler), Getenv: func(string) string { return "" }, SSH: p}
	integ, err := file.New(h, in)
	if err != nil {
		t.Fatalf("file.New: %v", err)
	}
	if _, ok := integ.(*file.Remote); !ok {
		t.Fatalf("file.New with host gave %T", integ)
	}
	return integ
}

func newKey(s string) secret.Key { return secret.New(s + "-0123456789abcdef0123456789") }

func TestRemoteFilesChangeOnlyTheValue(t *testing.T) {
	srv := sshtest.Start(t, sshtest.Options{})
	dir := t.TempDir()
	old, cur := newKey("old"), newKey("new")
	cases := []struct {
		name, format, field, tmpl string
		mode                      os.FileMode
	}{
		{"site.env", "dotenv", "ACTION_NETWORK_API_KEY", "# site\nAPP_ENV=production\nexport ACTION_NETWORK_API_KEY=\"@KEY@\"   # rotated\r\nMAIL=x\n", 0o640},
		{"settings.yaml", "yaml", "actionnetwork.api_key", "# settings\nactionnetwork:\n  api_key: '@KEY@'  # here\n  list: greens\nother: [1, 2]\n", 0o604},
	}
	for _, c := range cases {
		p := filepath.Join(dir, c.name)
		os.WriteFile(p, []byte(strings.ReplaceAll(c.tmpl, "@KEY@", old.Reveal())), c.mode)
		os.Chmod(p, c.mode)
		os.Chown(p, 1234, 2345) // an owner that is not the login's
		in := remote(t, srv, srv.Target(0), srv.KnownHosts, map[string]any{"path": p, "format": c.format, "field": c.field})
		if err := in.(integrations.Preflighter).Preflight(context.Background()); err != nil {
			t.Fatalf("%s: Preflight: %v", c.name, err)
		}
		res, err := in.Apply(context.Background(), integrations.ApplyRequest{Key: cur})
		if err != nil || !res.Changed {
			t.Fatalf("%s: Apply: %+v %v", c.name, res, err)
		}
		got, _ := os.ReadFile(p)
		if want := strings.ReplaceAll(c.tmpl, "@KEY@", cur.Reveal()); string(got) != want {
			t.Errorf("%s: holds\n%q\nwant\n%q", c.name, got, want)
		}
		fi, _ := os.Stat(p)
		if fi.Mode().Perm() != c.mode {
			t.Errorf("%s: mode %o, want %o", c.name, fi.Mode().Perm(), c.mode)
		}
		if st := fi.Sys().(*syscall.Stat_t); os.Geteuid() == 0 && (st.Uid != 1234 || st.Gid != 2345) {
			t.Errorf("%s: owner %d:%d, want 1234:2345", c.name, st.Uid, st.Gid)
		}
		k, err := in.(integrations.Reader).Read(context.Background())
		if err != nil || !k.Equal(cur) {
			t.Errorf("%s: Read: %s %v", c.name, k.Fingerprint(), err)
		}
		if res, err := in.Apply(context.Background(), integrations.ApplyRequest{Key: cur}); err != nil || res.Changed {
			t.Errorf("%s: second Apply: %+v %v", c.name, res, err)
		}
		if left, _ := filepath.Glob(filepath.Join(dir, ".*rekey-*")); len(left) > 0 {
			t.Errorf("%s: left behind %v", c.name, left)
		}
	}
}

// A write whose connection is killed half way leaves the original as it
// was; what is left behind is a directory only the login may enter,
// holding a file no wider than 0600.
func TestRemoteWriteKilledMidway(t *testing.T) {
	srv := sshtest.Start(t, sshtest.Options{})
	px := srv.Proxy(0)
	kh := filepath.Join(t.TempDir(), "known_hosts")
	os.WriteFile(kh, []byte(px.KnownHostsLine(srv)), 0o600)
	dir := t.TempDir()
	p := filepath.Join(dir, "site.env")
	old, cur := newKey("old"), newKey("new")
	// 8 MiB of other settings: the write takes long enough to be cut.
	orig := "ACTION_NETWORK_API_KEY=" + old.Reveal() + "\n" + strings.Repeat("# padding padding padding padding padding padding padding\n", 8<<20/58)
	os.WriteFile(p, []byte(orig), 0o644)
	in := remote(t, srv, srv.User+"@"+px.Addr, kh, map[string]any{"path": p, "format": "dotenv", "field": "ACTION_NETWORK_API_KEY"})
	if _, err := in.(integrations.Reader).Read(context.Background()); err != nil {
		t.Fatal(err)
	}
	px.CutAfter(2 << 20) // what rekey sends: 2 MiB into the 8 MiB write
	_, err := in.Apply(context.Background(), integrations.ApplyRequest{Key: cur})
	if !failure.IsTransient(err) {
		t.Fatalf("Apply over a cut connection: %v, want a transient failure", err)
	}
	if got, _ := os.ReadFile(p); string(got) != orig {
		t.Fatal("the original changed")
	}
	left, _ := filepath.Glob(filepath.Join(dir, ".site.env.rekey-*"))
	if len(left) != 1 {
		t.Fatalf("left behind: %v, want the write's private directory", left)
	}
	if fi, _ := os.Stat(left[0]); fi.Mode().Perm() != 0o700 {
		t.Errorf("private directory has mode %o", fi.Mode().Perm())
	}
	if fi, err := os.Stat(filepath.Join(left[0], "site.env")); err == nil && fi.Mode().Perm()&^0o600 != 0 {
		t.Errorf("temporary file has mode %o while written", fi.Mode().Perm())
	}
	// The next Apply (a retry, or resume) finishes the job.
	if _, err := in.Apply(context.Background(), integrations.ApplyRequest{Key: cur}); err != nil {
		t.Fatalf("Apply after the cut: %v", err)
	}
	if got, _ := os.ReadFile(p); !bytes.Contains(got, []byte(cur.Reveal())) || len(got) != len(orig) {
		t.Error("the file does not hold the new key after the next Apply")
	}
}

// A file changed on the host while rekey writes its copy is not
// overwritten.
func TestRemoteFileChangedMeanwhile(t *testing.T) {
	srv := sshtest.Start(t, sshtest.Options{})
	px := srv.Proxy(0)
	kh := filepath.Join(t.TempDir(), "known_hosts")
	os.WriteFile(kh, []byte(px.KnownHostsLine(srv)), 0o600)
	dir := t.TempDir()
	p := filepath.Join(dir, "site.env")
	old, cur := newKey("old"), newKey("new")
	orig := "ACTION_NETWORK_API_KEY=" + old.Reveal() + "\n" + strings.Repeat("# padding\n", 1<<20/10)
	os.WriteFile(p, []byte(orig), 0o644)
	in := remote(t, srv, srv.User+"@"+px.Addr, kh, map[string]any{"path": p, "format": "dotenv", "field": "ACTION_NETWORK_API_KEY"})
	changed := "ACTION_NETWORK_API_KEY=" + old.Reveal() + "\nSOMEONE_ELSE=was here\n"
	go func() {
		// When the write's private directory appears, hold what rekey
		// sends, change the file as someone else would, and let go.
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			if m, _ := filepath.Glob(filepath.Join(dir, ".site.env.rekey-*")); len(m) > 0 {
				px.Pause()
				os.WriteFile(p, []byte(changed), 0o644)
				px.Resume()
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	_, err := in.Apply(context.Background(), integrations.ApplyRequest{Key: cur})
	if !errors.Is(err, failure.ErrConflict) {
		t.Fatalf("Apply while the file changed: %v, want a conflict", err)
	}
	if got, _ := os.ReadFile(p); string(got) != changed {
		t.Fatal("the change made on the host was overwritten")
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".site.env.rekey-*")); len(left) > 0 {
		t.Errorf("left behind %v", left)
	}
}

func TestRemoteSymlinksAndSpecialFiles(t *testing.T) {
	srv := sshtest.Start(t, sshtest.Options{})
	dir := t.TempDir()
	cur := newKey("new")
	real := filepath.Join(dir, "real.env")
	os.WriteFile(real, []byte("ACTION_NETWORK_API_KEY=x\n"), 0o600)
	link := filepath.Join(dir, "site.env")
	os.Symlink("real.env", link)
	in := remote(t, srv, srv.Target(0), srv.KnownHosts, map[string]any{"path": link, "format": "dotenv", "field": "ACTION_NETWORK_API_KEY"})
	if _, err := in.Apply(context.Background(), integrations.ApplyRequest{Key: cur}); !errors.Is(err, failure.ErrUnauthorized) || !strings.Contains(err.Error(), "symbolic link") {
		t.Fatalf("Apply to a symbolic link: %v", err)
	}
	// With follow_symlinks, a link to a file beside it is followed, and stays a link.
	in = remote(t, srv, srv.Target(0), srv.KnownHosts, map[string]any{"path": link, "format": "dotenv", "field": "ACTION_NETWORK_API_KEY", "follow_symlinks": true})
	if _, err := in.Apply(context.Background(), integrations.ApplyRequest{Key: cur}); err != nil {
		t.Fatalf("Apply through a followed link: %v", err)
	}
	if fi, _ := os.Lstat(link); fi.Mode()&os.ModeSymlink == 0 {
		t.Error("the link was replaced by a file")
	}
	if b, _ := os.ReadFile(real); !bytes.Contains(b, []byte(cur.Reveal())) {
		t.Error("the link's target does not hold the key")
	}
	// ... but not one out of the directory.
	os.Remove(link)
	os.Symlink("/etc/hostname", link)
	if _, err := in.Apply(context.Background(), integrations.ApplyRequest{Key: cur}); !errors.Is(err, failure.ErrUnauthorized) {
		t.Fatalf("Apply through a link out of the directory: %v", err)
	}
	// A FIFO is refused at once, never waited on.
	fifo := filepath.Join(dir, "fifo.env")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	in = remote(t, srv, srv.Target(0), srv.KnownHosts, map[string]any{"path": fifo, "format": "dotenv", "field": "ACTION_NETWORK_API_KEY"})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := in.Apply(ctx, integrations.ApplyRequest{Key: cur}); !errors.Is(err, failure.ErrInvalid) || ctx.Err() != nil {
		t.Fatalf("Apply to a FIFO: %v", err)
	}
	// A missing file: not found, in Preflight too, naming host and path.
	in = remote(t, srv, srv.Target(0), srv.KnownHosts, map[string]any{"path": filepath.Join(dir, "missing.env"), "format": "dotenv", "field": "ACTION_NETWORK_API_KEY"})
	err := in.(integrations.Preflighter).Preflight(context.Background())
	if !errors.Is(err, failure.ErrNotFound) || !strings.Contains(err.Error(), srv.Target(0)+":"+filepath.Join(dir, "missing.env")) {
		t.Fatalf("Preflight of a missing file: %v", err)
	}
}

// A reload that fails on the host puts the old file back.
func TestRemoteReloadFailsPutsFileBack(t *testing.T) {
	srv := sshtest.Start(t, sshtest.Options{})
	dir := t.TempDir()
	p := filepath.Join(dir, "site.env")
	old, cur := newKey("old"), newKey("new")
	orig := "A=1\nACTION_NETWORK_API_KEY=" + old.Reveal() + "\n"
	os.WriteFile(p, []byte(orig), 0o640)
	marker := filepath.Join(dir, "reloaded")
	in := remote(t, srv, srv.Target(0), srv.KnownHosts, map[string]any{"path": p, "format": "dotenv", "field": "ACTION_NETWORK_API_KEY",
		"reload": []string{"sh", "-c", "touch " + marker + "; echo " + "oops >&2; exit 3"}})
	_, err := in.Apply(context.Background(), integrations.ApplyRequest{Key: cur})
	if err == nil || !strings.Contains(err.Error(), "put back") {
		t.Fatalf("Apply with a failing reload: %v", err)
	}
	if _, serr := os.Stat(marker); serr != nil {
		t.Error("the reload did not run on the host")
	}
	if got, _ := os.ReadFile(p); string(got) != orig {
		t.Errorf("the file was not put back: %q", got)
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %o after putting back", fi.Mode().Perm())
	}
	if f := leakcheck.Find([]byte(err.Error()), old.Reveal(), cur.Reveal()); len(f) > 0 {
		t.Errorf("the error holds a key: %v", f)
	}
}

// An untrusted host is refused before anything is read or written.
func TestRemoteUntrustedHost(t *testing.T) {
	srv := sshtest.Start(t, sshtest.Options{})
	kh := filepath.Join(t.TempDir(), "known_hosts")
	os.WriteFile(kh, nil, 0o600)
	p := filepath.Join(t.TempDir(), "site.env")
	os.WriteFile(p, []byte("ACTION_NETWORK_API_KEY=x\n"), 0o600)
	in := remote(t, srv, srv.Target(0), kh, map[string]any{"path": p, "format": "dotenv", "field": "ACTION_NETWORK_API_KEY"})
	err := in.(integrations.Preflighter).Preflight(context.Background())
	var hk *sshpool.HostKeyError
	if !errors.As(err, &hk) || !strings.Contains(err.Error(), srv.Fingerprint()) {
		t.Fatalf("Preflight against an unknown host key: %v", err)
	}
	if _, err := in.Apply(context.Background(), integrations.ApplyRequest{Key: newKey("new")}); !errors.As(err, &hk) {
		t.Fatalf("Apply against an unknown host key: %v", err)
	}
	if b, _ := os.ReadFile(p); string(b) != "ACTION_NETWORK_API_KEY=x\n" {
		t.Error("the file changed")
	}
}

// Two integrations on one remote .env, applied at once, both land.
func TestRemoteTwoIntegrationsOneFile(t *testing.T) {
	srv := sshtest.Start(t, sshtest.Options{})
	p := filepath.Join(t.TempDir(), "site.env")
	os.WriteFile(p, []byte("A_KEY=old-aaaaaaaaaaaaaaaa\nB_KEY=old-bbbbbbbbbbbbbbbb\n"), 0o600)
	a := remote(t, srv, srv.Target(0), srv.KnownHosts, map[string]any{"path": p, "format": "dotenv", "field": "A_KEY"})
	b := remote(t, srv, srv.Target(0), srv.KnownHosts, map[string]any{"path": p, "format": "dotenv", "field": "B_KEY"})
	ka, kb := newKey("a"), newKey("b")
	errs := make(chan error, 2)
	go func() { _, err := a.Apply(context.Background(), integrations.ApplyRequest{Key: ka}); errs <- err }()
	go func() { _, err := b.Apply(context.Background(), integrations.ApplyRequest{Key: kb}); errs <- err }()
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	got, _ := os.ReadFile(p)
	if want := "A_KEY=" + ka.Reveal() + "\nB_KEY=" + kb.Reveal() + "\n"; string(got) != want {
		t.Fatalf("the file holds %q, want both new values", got)
	}
}

// More file integrations with a reload on one host than a connection
// carries sessions at once all finish: none holds a session while it
// waits for another.
func TestRemoteManyReloadsOneHost(t *testing.T) {
	srv := sshtest.Start(t, sshtest.Options{})
	dir := t.TempDir()
	p := sshpool.New(sshpool.Options{KnownHosts: srv.KnownHosts, IdentityFile: srv.Identity, Home: t.TempDir(), Getenv: func(string) string { return "" }, Sessions: 2})
	defer p.Close()
	cfg := &config.Config{File: "rekey.yaml"}
	h := integrations.Host{Config: cfg, Logger: slog.New(slog.DiscardHandler), Getenv: func(string) string { return "" }, SSH: p}
	var ins []integrations.Integration
	for i := range 6 {
		path := filepath.Join(dir, "site"+strings.Repeat("x", i)+".env")
		os.WriteFile(path, []byte("K=old-0123456789abcdef\n"), 0o600)
		in := config.Integration{ID: "env" + strings.Repeat("x", i), Key: "k", Type: file.Type, Settings: map[string]any{
			"host": srv.Target(0), "path": path, "format": "dotenv", "field": "K", "reload": []string{"sleep", "0.2"}}}
		cfg.Integrations = append(cfg.Integrations, in)
		integ, err := file.New(h, in)
		if err != nil {
			t.Fatal(err)
		}
		ins = append(ins, integ)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	errs := make(chan error, len(ins))
	for _, in := range ins {
		go func() { _, err := in.Apply(ctx, integrations.ApplyRequest{Key: newKey("new")}); errs <- err }()
	}
	for range ins {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// The preflight of a remote file finds reload's program on the host, as
// its login shell will run it, and changes nothing there.
func TestRemotePreflightFindsReload(t *testing.T) {
	srv := sshtest.Start(t, sshtest.Options{})
	dir := t.TempDir()
	p := filepath.Join(dir, "site.env")
	old := newKey("old")
	orig := "ACTION_NETWORK_API_KEY=" + old.Reveal() + "\n"
	os.WriteFile(p, []byte(orig), 0o640)
	script := filepath.Join(dir, "reload.sh")
	os.WriteFile(script, []byte("#!/bin/sh\nexit 0\n"), 0o755)
	plain := filepath.Join(dir, "plain.sh")
	os.WriteFile(plain, []byte("#!/bin/sh\nexit 0\n"), 0o644)
	for _, tc := range []struct {
		name   string
		reload []string
		says   string // "" when ready
	}{
		{"in PATH", []string{"true"}, ""},
		{"a path", []string{script, "--now"}, ""},
		{"not in PATH", []string{"rekey-no-such-reload", "site"}, "rekey-no-such-reload not found on"},
		{"missing path", []string{filepath.Join(dir, "gone.sh")}, "gone.sh not found on"},
		{"not executable", []string{plain}, "plain.sh not found on"},
		{"quoting", []string{"true; touch " + filepath.Join(dir, "ran")}, "not found on"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := remote(t, srv, srv.Target(0), srv.KnownHosts, map[string]any{"path": p, "format": "dotenv", "field": "ACTION_NETWORK_API_KEY", "reload": tc.reload})
			err := in.(integrations.Preflighter).Preflight(context.Background())
			if got, _ := os.ReadFile(p); string(got) != orig {
				t.Errorf("the preflight changed the file: %q", got)
			}
			if _, serr := os.Stat(filepath.Join(dir, "ran")); serr == nil {
				t.Fatal("an argument was run as a command")
			}
			if tc.says == "" {
				if err != nil {
					t.Fatalf("Preflight: %v", err)
				}
				return
			}
			if !errors.Is(err, failure.ErrInvalid) || !strings.Contains(err.Error(), tc.says) || !strings.Contains(err.Error(), "reload") || !strings.Contains(err.Error(), p) {
				t.Fatalf("Preflight: %v; want invalid, naming the file and reload, saying %q", err, tc.says)
			}
			leakcheck.Assert(t, "Preflight error", []byte(err.Error()), old.Reveal())
		})
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".*rekey-*")); len(left) > 0 {
		t.Errorf("left behind %v", left)
	}
}

// A remote file refuses, before the click and without connecting, the
// keys its format cannot hold, naming host and path.
func TestRemoteAccepts(t *testing.T) {
	srv := sshtest.Start(t, sshtest.Options{})
	p := filepath.Join(t.TempDir(), "site.env")
	in := remote(t, srv, srv.Target(0), srv.KnownHosts, map[string]any{"path": p, "format": "dotenv", "field": "ACTION_NETWORK_API_KEY"})
	a, ok := in.(integrations.Acceptor)
	if !ok {
		t.Fatalf("%T is not an integrations.Acceptor", in)
	}
	if err := a.Accepts(secret.New("0123456789abcdef0123456789abcdef")); err != nil {
		t.Errorf("a hex key: %v", err)
	}
	err := a.Accepts(secret.New(`back\slash-0123456789`))
	if !errors.Is(err, failure.ErrInvalid) || !strings.Contains(err.Error(), srv.Target(0)+":"+p) || !strings.Contains(err.Error(), "backslash") {
		t.Errorf("a key with a backslash: %v", err)
	}
}
