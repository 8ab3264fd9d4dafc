// Package vaultdev runs a real Vault dev server (tools/vaultdev: Vault
// 1.14's core, KV v2, AppRole) on loopback, for the demo and for tests
// (internal/vaulttest wraps it for them). It does not import testing.
package vaultdev

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	vault "github.com/hashicorp/vault/api"
)

// Server is a running vaultdev.
type Server struct {
	Addr  string
	Token string
}

// Start runs a vaultdev binary and waits until it is ready. The server
// exits when this process does (its stdin is a pipe we hold open).
func Start(bin string) (*Server, error) {
	cmd := exec.Command(bin, "-exit-on-stdin-eof")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = io.Discard
	if os.Getenv("REKEY_VAULTDEV_LOG") != "" {
		cmd.Stderr = os.Stderr
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	keepOpen = append(keepOpen, stdin)
	line := make(chan string, 1)
	go func() {
		s := bufio.NewScanner(stdout)
		for s.Scan() {
			select {
			case line <- s.Text():
			default:
			}
		}
	}()
	select {
	case l := <-line:
		var s Server
		var out struct{ Address, Token string }
		if err := json.Unmarshal([]byte(l), &out); err != nil {
			return nil, fmt.Errorf("vaultdev said %q: %w", l, err)
		}
		s.Addr, s.Token = out.Address, out.Token
		return &s, nil
	case <-time.After(2 * time.Minute):
		cmd.Process.Kill()
		return nil, fmt.Errorf("vaultdev did not become ready in 2 minutes")
	}
}

var keepOpen []io.WriteCloser

// Binary builds tools/vaultdev once and returns its path. The build is
// cached under the user cache directory by a hash of its sources, and
// guarded by a file lock so parallel test binaries build it once.
// $REKEY_VAULTDEV_BIN, if set, is used as it is.
func Binary() (string, error) {
	if p := os.Getenv("REKEY_VAULTDEV_BIN"); p != "" {
		return p, nil
	}
	src, err := sourceDir()
	if err != nil {
		return "", err
	}
	h := sha256.New()
	for _, f := range []string{"main.go", "go.mod", "go.sum"} {
		b, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			return "", err
		}
		h.Write(b)
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "rekey")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "vaultdev-"+hex.EncodeToString(h.Sum(nil))[:16])
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	lock, err := os.OpenFile(bin+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", err
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	tmp := bin + ".tmp"
	cmd := exec.Command("go", "build", "-o", tmp, ".")
	cmd.Dir = src
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build tools/vaultdev: %v\n%s", err, out)
	}
	return bin, os.Rename(tmp, bin)
}

// sourceDir finds tools/vaultdev from the working directory upwards.
func sourceDir() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		p := filepath.Join(dir, "tools", "vaultdev")
		if _, err := os.Stat(filepath.Join(p, "main.go")); err == nil {
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("tools/vaultdev not found above the working directory")
		}
		dir = parent
	}
}

// Env is one user's view of a server: its own KV v2 mount.
type Env struct {
	Addr   string
	Token  string // root token
	Mount  string // a fresh KV v2 mount, removed when the test ends
	Client *vault.Client
}

// NewEnv mounts a fresh KV v2 mount on s and waits until it is writable.
// cleanup unmounts it.
func (s *Server) NewEnv() (*Env, func(), error) {
	cfg := vault.DefaultConfig()
	cfg.Address = s.Addr
	cfg.MaxRetries = 0
	c, err := vault.NewClient(cfg)
	if err != nil {
		return nil, nil, err
	}
	c.SetToken(s.Token)
	mount := "t" + randHex(6)
	if err := c.Sys().Mount(mount, &vault.MountInput{Type: "kv", Options: map[string]string{"version": "2"}}); err != nil {
		return nil, nil, fmt.Errorf("mount %s: %w", mount, err)
	}
	cleanup := func() { c.Sys().Unmount(mount) }
	// KV v2 answers "upgrading" for a moment after mounting.
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := c.KVv2(mount).Put(context.Background(), "vaulttest-ready", map[string]any{"ok": "yes"})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			cleanup()
			return nil, nil, fmt.Errorf("mount %s never became writable: %w", mount, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := c.KVv2(mount).DeleteMetadata(context.Background(), "vaulttest-ready"); err != nil {
		cleanup()
		return nil, nil, err
	}
	return &Env{Addr: s.Addr, Token: s.Token, Mount: mount, Client: c}, cleanup, nil
}

// DumpLatest is Dump of the latest version of each secret only (and all
// metadata): for a test whose records have thousands of versions, where
// reading every one would take longer than the test.
func (e *Env) DumpLatest(t T, prefix string) []byte {
	t.Helper()
	return e.dump(prefix, true)
}

// DumpPrefix returns every version of every secret and all metadata under
// prefix ("" for the whole mount; "rekey/" for rekey's records) as one
// blob, for searching records for leaked keys.
func (e *Env) DumpPrefix(prefix string) []byte { return e.dump(prefix, false) }

func (e *Env) dump(prefix string, latestOnly bool) []byte {
	var b strings.Builder
	var walk func(prefix string)
	walk = func(prefix string) {
		s, err := e.Client.Logical().List(e.Mount + "/metadata/" + prefix)
		if err != nil || s == nil {
			return
		}
		keys, _ := s.Data["keys"].([]any)
		for _, k := range keys {
			name := prefix + k.(string)
			if strings.HasSuffix(name, "/") {
				walk(name)
				continue
			}
			md, err := e.Client.Logical().Read(e.Mount + "/metadata/" + name)
			if err != nil || md == nil {
				continue
			}
			j, _ := json.Marshal(md.Data)
			fmt.Fprintf(&b, "%s metadata %s\n", name, j)
			cur, _ := md.Data["current_version"].(json.Number)
			n, _ := cur.Int64()
			first := int64(1)
			if latestOnly {
				first = n
			}
			for v := first; v <= n; v++ {
				d, err := e.Client.Logical().ReadWithData(e.Mount+"/data/"+name, map[string][]string{"version": {fmt.Sprint(v)}})
				if err != nil || d == nil {
					continue
				}
				j, _ := json.Marshal(d.Data)
				fmt.Fprintf(&b, "%s v%d %s\n", name, v, j)
			}
		}
	}
	walk(prefix)
	return []byte(b.String())
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// T is the part of a *testing.T the methods below use (this package does
// not import testing, so that the demo binary does not link it).
type T interface {
	Helper()
	Fatalf(format string, args ...any)
}

// Configure writes the mount's KV v2 settings (<mount>/config), for
// example {"cas_required": true, "max_versions": 2}.
func (e *Env) Configure(t T, settings map[string]any) {
	t.Helper()
	if _, err := e.Client.Logical().Write(e.Mount+"/config", settings); err != nil {
		t.Fatalf("vaulttest: configure %s: %v", e.Mount, err)
	}
}

// TokenWithPolicy creates a policy from HCL and a token holding only it.
func (e *Env) TokenWithPolicy(t T, hcl string) string {
	t.Helper()
	name := "p" + randHex(6)
	if err := e.Client.Sys().PutPolicy(name, hcl); err != nil {
		t.Fatalf("vaulttest: put policy: %v", err)
	}
	sec, err := e.Client.Auth().Token().Create(&vault.TokenCreateRequest{
		Policies:        []string{name},
		NoDefaultPolicy: false,
		TTL:             "1h",
	})
	if err != nil {
		t.Fatalf("vaulttest: create token: %v", err)
	}
	return sec.Auth.ClientToken
}

// ReadOnlyPolicy is HCL allowing reads (and no writes) under the mount.
func (e *Env) ReadOnlyPolicy() string {
	return fmt.Sprintf("path %q { capabilities = [\"read\", \"list\"] }\n", e.Mount+"/*")
}

// Dump returns every version of every secret and all metadata under
// prefix ("" for the whole mount; "rekey/" for rekey's records) as one
// blob, for searching records for leaked keys.
func (e *Env) Dump(t T, prefix string) []byte {
	t.Helper()
	return e.DumpPrefix(prefix)
}
