package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/rekey-dev/rekey/config"
	"github.com/rekey-dev/rekey/internal/vaulttest"
	"github.com/rekey-dev/rekey/vaultstore"
)

// faultCmds are testscript commands for the fault stories
// (testdata/fault-*.txtar): a proxy in front of Vault that can hang a
// request or go away, a private Vault that can be sealed, a provider that
// never answers for one key, Slack and GitHub test servers that fail on
// demand, and small file systems that are read-only or full.
var faultCmds = map[string]func(ts *testscript.TestScript, neg bool, args []string){
	// vault-proxy start: put an HTTP proxy in front of the script's Vault
	//   and point VAULT_ADDR at it.
	// vault-proxy hang METHOD PATH: hold the next METHOD request for PATH
	//   unanswered (it never reaches Vault) until its client goes away.
	// vault-proxy held: wait (up to 60s) until a request is being held.
	// vault-proxy down: stop listening and drop every connection: Vault is
	//   unreachable (connection refused).
	// vault-proxy up: listen again on the same address.
	"vault-proxy": cmdVaultProxy,
	// vault-private: give the script a Vault server of its own (so that it
	// may be sealed) with a fresh KV v2 mount; VAULT_ADDR, VAULT_TOKEN and
	// VAULT_MOUNT and the vault-* commands then use it.
	"vault-private": cmdVaultPrivate,
	// vault-seal: seal the script's private Vault.
	"vault-seal": func(ts *testscript.TestScript, neg bool, args []string) {
		w := getWorld(ts)
		if !w.faults().private {
			ts.Fatalf("vault-seal: run vault-private first; the shared Vault is never sealed")
		}
		ts.Check(w.vault.Client.Sys().Seal())
	},
	// hang-provider start NAME: an Action Network in front of the script's
	//   simulator that never answers a request carrying keys/NAME, and
	//   passes every other through; HANG_AN_URL is its API root.
	// hang-provider held: wait (up to 60s) until such a request is held.
	"hang-provider": cmdHangProvider,
	// an-outage DURATION|off: Action Network answers every request 429
	// (with Retry-After counting down) for DURATION from now, or no longer.
	"an-outage": func(ts *testscript.TestScript, neg bool, args []string) {
		w := getWorld(ts)
		if len(args) != 1 {
			ts.Fatalf("usage: an-outage DURATION|off")
		}
		if args[0] == "off" {
			w.sim.Reset()
			return
		}
		d, err := time.ParseDuration(args[0])
		ts.Check(err)
		w.sim.ThrottleFor(d)
	},
	// slack start: a Slack Web API (chat.postMessage, chat.update) that
	//   wants SLACK_BOT_TOKEN as a bearer token; SLACK_URL is its API root.
	//   Every message it accepts is written to $DUMPS for the leak check.
	// slack fail STATUS N [RETRY_AFTER]: answer the next N calls with
	//   STATUS (a 429 carries Retry-After: RETRY_AFTER, else 1), after what
	//   was queued before.
	// slack pass N: answer the next N calls (after what was queued) as usual.
	// slack calls METHOD N: METHOD was answered ok exactly N times.
	// slack said REGEXP: a message Slack accepted matches REGEXP.
	"slack": cmdSlack,
	// tmpfs DIR SIZE: mount a tmpfs of SIZE (64k) at DIR for the script.
	// It needs root: stories that use it live in testdata/fault-root and
	// start with `[!mount] skip`.
	"tmpfs": func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) != 2 {
			ts.Fatalf("usage: tmpfs DIR SIZE")
		}
		dir := ts.MkAbs(args[0])
		ts.Check(os.MkdirAll(dir, 0o755))
		ts.Check(syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+args[1]+",mode=0755"))
		ts.Defer(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	},
	// remount DIR ro|rw: make the tmpfs at DIR read-only (even for root)
	// or writable again.
	"remount": func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) != 2 || (args[1] != "ro" && args[1] != "rw") {
			ts.Fatalf("usage: remount DIR ro|rw")
		}
		flags := uintptr(syscall.MS_REMOUNT)
		if args[1] == "ro" {
			flags |= syscall.MS_RDONLY
		}
		ts.Check(syscall.Mount("tmpfs", ts.MkAbs(args[0]), "tmpfs", flags, ""))
	},
	// wait-journal KEY INTEGRATION STATE: wait (up to 60s) until the
	// journal of KEY's latest rotation in Vault records INTEGRATION in STATE.
	"wait-journal": func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) != 3 {
			ts.Fatalf("usage: wait-journal KEY INTEGRATION STATE")
		}
		w := getWorld(ts)
		store := vaultstore.New(w.vault.Client, w.vault.Mount, config.DefaultStatePath)
		waitFor(ts, fmt.Sprintf("%s %s in the journal", args[1], args[2]), func() bool {
			rec, err := store.LatestRotation(context.Background(), args[0])
			if err != nil {
				return false
			}
			r, ok := rec.Integrations[args[1]]
			return ok && string(r.State) == args[2]
		})
	},
	// fill DIR: write DIR/filler until the file system is full.
	"fill": func(ts *testscript.TestScript, neg bool, args []string) {
		f, err := os.Create(filepath.Join(ts.MkAbs(args[0]), "filler"))
		ts.Check(err)
		defer f.Close()
		block := make([]byte, 512)
		for {
			if _, err := f.Write(block); err != nil {
				if !errors.Is(err, syscall.ENOSPC) {
					ts.Fatalf("fill: %v", err)
				}
				return
			}
		}
	},
}

// TestFaultScriptsAsRoot runs the fault stories that mount small file
// systems (testdata/fault-root): a directory that is read-only even for
// root, a disk that is full. Where a tmpfs cannot be mounted (not root, or
// a kernel that refuses), the condition [mount] is false and they skip,
// saying so.
func TestFaultScriptsAsRoot(t *testing.T) {
	srv := vaulttest.Shared(t)
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata/fault-root",
		RequireExplicitExec: true,
		Setup:               func(e *testscript.Env) error { return setup(e, srv) },
		Cmds:                allCmds(),
		Condition: func(cond string) (bool, error) {
			if cond != "mount" {
				return false, fmt.Errorf("unknown condition %q", cond)
			}
			return canMount(), nil
		},
	})
}

// canMount reports whether this process may mount a tmpfs.
var canMount = sync.OnceValue(func() bool {
	if os.Geteuid() != 0 {
		return false
	}
	dir, err := os.MkdirTemp("", "rekey-mount-probe")
	if err != nil {
		return false
	}
	defer os.Remove(dir)
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=64k"); err != nil {
		return false
	}
	syscall.Unmount(dir, syscall.MNT_DETACH)
	return true
})

// faultState is what the fault commands keep for one script.
type faultState struct {
	private bool
	proxy   *vaultProxy
	hang    *hangProvider
}

var faultStates sync.Map // *world → *faultState

func (w *world) faults() *faultState {
	st, _ := faultStates.LoadOrStore(w, &faultState{})
	return st.(*faultState)
}

// waitFor polls cond every 20ms for up to 60s.
func waitFor(ts *testscript.TestScript, what string, cond func() bool) {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	ts.Fatalf("%s never happened", what)
}

// vaultProxy is an HTTP reverse proxy in front of Vault whose listener the
// script controls.
type vaultProxy struct {
	rp   *httputil.ReverseProxy
	addr string

	mu    sync.Mutex
	srv   *http.Server
	hangs []string // "METHOD PATH"
	held  int
	stop  chan struct{}
}

func (p *vaultProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	hang := false
	for i, h := range p.hangs {
		if h == r.Method+" "+r.URL.Path {
			p.hangs = append(p.hangs[:i], p.hangs[i+1:]...)
			p.held++
			hang = true
			break
		}
	}
	stop := p.stop
	p.mu.Unlock()
	if hang {
		select {
		case <-r.Context().Done():
		case <-stop:
		}
		return
	}
	p.rp.ServeHTTP(w, r)
}

func (p *vaultProxy) listen() error {
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.addr = ln.Addr().String()
	p.srv = &http.Server{Handler: p}
	p.stop = make(chan struct{})
	srv := p.srv
	p.mu.Unlock()
	go srv.Serve(ln)
	return nil
}

func (p *vaultProxy) down() {
	p.mu.Lock()
	srv, stop := p.srv, p.stop
	p.srv = nil
	p.mu.Unlock()
	if srv != nil {
		close(stop)
		srv.Close()
	}
}

func cmdVaultProxy(ts *testscript.TestScript, neg bool, args []string) {
	w := getWorld(ts)
	st := w.faults()
	if len(args) == 0 {
		ts.Fatalf("usage: vault-proxy start|hang METHOD PATH|held|down|up")
	}
	p := st.proxy
	if args[0] != "start" && p == nil {
		ts.Fatalf("vault-proxy: run vault-proxy start first")
	}
	switch args[0] {
	case "start":
		target, err := url.Parse(w.vault.Addr)
		ts.Check(err)
		p = &vaultProxy{rp: httputil.NewSingleHostReverseProxy(target), addr: "127.0.0.1:0"}
		p.rp.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) { w.WriteHeader(http.StatusBadGateway) }
		ts.Check(p.listen())
		st.proxy = p
		ts.Defer(p.down)
		ts.Setenv("VAULT_ADDR", "http://"+p.addr)
	case "hang":
		if len(args) != 3 {
			ts.Fatalf("usage: vault-proxy hang METHOD PATH")
		}
		p.mu.Lock()
		p.hangs = append(p.hangs, args[1]+" "+args[2])
		p.mu.Unlock()
	case "held":
		waitFor(ts, "a held Vault request", func() bool {
			p.mu.Lock()
			defer p.mu.Unlock()
			return p.held > 0
		})
	case "down":
		p.down()
	case "up":
		ts.Check(p.listen())
	default:
		ts.Fatalf("vault-proxy: unknown subcommand %s", args[0])
	}
}

func cmdVaultPrivate(ts *testscript.TestScript, neg bool, args []string) {
	w := getWorld(ts)
	bin, err := vaulttest.Binary()
	ts.Check(err)
	srv, err := vaulttest.Start(bin)
	ts.Check(err)
	env, _, err := srv.NewEnv()
	ts.Check(err)
	w.vault = env
	w.faults().private = true
	ts.Setenv("VAULT_ADDR", env.Addr)
	ts.Setenv("VAULT_TOKEN", env.Token)
	ts.Setenv("VAULT_MOUNT", env.Mount)
}

// hangProvider stands in front of the Action Network simulator and holds
// every request that carries one key.
type hangProvider struct {
	key   string
	next  http.Handler
	held  chan struct{}
	once  sync.Once
	srv   *httptest.Server
	close chan struct{}
}

func (h *hangProvider) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("OSDI-API-Token") == h.key {
		h.once.Do(func() { close(h.held) })
		select {
		case <-r.Context().Done():
		case <-h.close:
		}
		return
	}
	h.next.ServeHTTP(w, r)
}

func cmdHangProvider(ts *testscript.TestScript, neg bool, args []string) {
	w := getWorld(ts)
	st := w.faults()
	switch {
	case len(args) == 2 && args[0] == "start":
		h := &hangProvider{key: readKey(ts, args[1]), next: w.sim, held: make(chan struct{}), close: make(chan struct{})}
		h.srv = httptest.NewServer(h)
		ts.Defer(func() { close(h.close); h.srv.Close() })
		st.hang = h
		ts.Setenv("HANG_AN_URL", h.srv.URL+"/api/v2/")
	case len(args) == 1 && args[0] == "held":
		if st.hang == nil {
			ts.Fatalf("hang-provider: run hang-provider start first")
		}
		select {
		case <-st.hang.held:
		case <-time.After(60 * time.Second):
			ts.Fatalf("the provider was never asked about the key")
		}
	default:
		ts.Fatalf("usage: hang-provider start NAME | hang-provider held")
	}
}

// cmdSlack drives the world's Slack ($SLACK_URL):
//
//	slack fail STATUS N [RETRY_AFTER]  answer the next N calls with STATUS (429 with Retry-After: RETRY_AFTER, else 1)
//	slack pass N          answer the next N calls normally (before failures queued after)
//	slack calls METHOD N  METHOD was answered ok N times
//	slack said REGEXP     a message's text matches REGEXP
func cmdSlack(ts *testscript.TestScript, neg bool, args []string) {
	s := getWorld(ts).slack
	switch {
	case (len(args) == 3 || len(args) == 4) && args[0] == "fail":
		code, err := strconv.Atoi(args[1])
		ts.Check(err)
		n, err := strconv.Atoi(args[2])
		ts.Check(err)
		s.mu.Lock()
		if len(args) == 4 {
			s.retryAfter = args[3]
		}
		for range n {
			s.fail = append(s.fail, code)
		}
		s.mu.Unlock()
	case len(args) == 2 && args[0] == "pass":
		n, err := strconv.Atoi(args[1])
		ts.Check(err)
		s.mu.Lock()
		for range n {
			s.fail = append(s.fail, 0)
		}
		s.mu.Unlock()
	case len(args) == 3 && args[0] == "calls":
		want, err := strconv.Atoi(args[2])
		ts.Check(err)
		s.mu.Lock()
		got := s.calls[args[1]]
		s.mu.Unlock()
		if (got == want) == neg {
			ts.Fatalf("slack: %s answered ok %d times, want %d", args[1], got, want)
		}
	case len(args) == 2 && args[0] == "said":
		re, err := regexp.Compile(args[1])
		ts.Check(err)
		s.mu.Lock()
		found := slices.ContainsFunc(s.texts, re.MatchString)
		s.mu.Unlock()
		if found == neg {
			ts.Fatalf("slack: a message matching %q: %v, want %v", args[1], found, !neg)
		}
	default:
		ts.Fatalf("usage: slack fail STATUS N [RETRY_AFTER] | pass N | calls METHOD N | said REGEXP")
	}
}
