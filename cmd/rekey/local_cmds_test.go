//go:build linux

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
	"golang.org/x/sys/unix"

	"github.com/rekey-dev/rekey/config"
	"github.com/rekey-dev/rekey/internal/vaulttest"
	"github.com/rekey-dev/rekey/vaultstore"
)

// TestLocalScripts runs the stories of testdata/local: what another user
// on the machine, a FIFO at a path, a signal or Ctrl-C at the prompt do
// to a rotation. They run the real rekey process (signals are real,
// the terminal is a real pty), against the same world as the other
// stories, with the same leak check.
func TestLocalScripts(t *testing.T) {
	srv := vaulttest.Shared(t)
	cmds := allCmds()
	for name, f := range localCmds {
		if _, dup := cmds[name]; dup {
			panic("duplicate script command " + name)
		}
		cmds[name] = f
	}
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata/local",
		RequireExplicitExec: true,
		Setup:               func(e *testscript.Env) error { return setup(e, srv) },
		Cmds:                cmds,
		Condition: func(cond string) (bool, error) {
			if cond != "root" {
				return false, fmt.Errorf("unknown condition %q", cond)
			}
			return os.Geteuid() == 0, nil
		},
	})
}

// scriptEnvNames are the variables of a script's environment that bg and
// pty pass on to the commands they start.
var scriptEnvNames = []string{
	"PATH", "HOME", "TMPDIR", "WORK", "VAULT_ADDR", "VAULT_TOKEN", "VAULT_MOUNT", "AN_URL",
	"REKEY_TEST_CAPTURE", "DUMPS", "GH_URL", "GITHUB_TOKEN", "WEB_URL", "WEB_TOKEN",
	"SLACK_URL", "SLACK_BOT_TOKEN", "DOWN_URL", "HANG_AN_URL",
}

func scriptEnv(ts *testscript.TestScript) []string {
	var env []string
	for _, n := range scriptEnvNames {
		if v := ts.Getenv(n); v != "" {
			env = append(env, n+"="+v)
		}
	}
	return env
}

// proc is a process a story started with `bg` or `pty`.
type proc struct {
	cmd     *exec.Cmd
	done    chan struct{}
	err     error
	started time.Time

	// A process on a pty: the terminal's two sides and what it printed.
	master, slave *os.File
	mu            sync.Mutex
	out           bytes.Buffer
}

var procs sync.Map // *world → map[string]*proc (only the script's goroutine touches the map)

func scriptProcs(ts *testscript.TestScript) map[string]*proc {
	m, _ := procs.LoadOrStore(getWorld(ts), map[string]*proc{})
	return m.(map[string]*proc)
}

func getProc(ts *testscript.TestScript, name string) *proc {
	p := scriptProcs(ts)[name]
	if p == nil {
		ts.Fatalf("no process %q", name)
	}
	return p
}

func startProc(ts *testscript.TestScript, name string, p *proc) {
	if _, dup := scriptProcs(ts)[name]; dup {
		ts.Fatalf("process %q already started", name)
	}
	p.cmd.Env = scriptEnv(ts)
	p.cmd.Dir = ts.MkAbs(".")
	ts.Check(p.cmd.Start())
	p.started, p.done = time.Now(), make(chan struct{})
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	scriptProcs(ts)[name] = p
	ts.Defer(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Kill()
			<-p.done
		}
		if p.master != nil {
			p.master.Close()
			p.slave.Close()
		}
	})
}

var signals = map[string]syscall.Signal{"INT": syscall.SIGINT, "TERM": syscall.SIGTERM}

// localCmds are the script commands of testdata/local.
var localCmds = map[string]func(ts *testscript.TestScript, neg bool, args []string){
	// pause DURATION: wait that long (a Go duration: 1s, 500ms).
	"pause": func(ts *testscript.TestScript, neg bool, args []string) {
		d, err := time.ParseDuration(args[0])
		ts.Check(err)
		time.Sleep(d)
	},
	// wait-text FILE REGEXP: wait (up to 60s) until FILE holds text
	// matching REGEXP (what a background process printed so far).
	"wait-text": func(ts *testscript.TestScript, neg bool, args []string) {
		re := regexp.MustCompile(args[1])
		waitFor(ts, fmt.Sprintf("%q in %s", args[1], args[0]), func() bool {
			b, err := os.ReadFile(ts.MkAbs(args[0]))
			return err == nil && re.Match(b)
		})
	},
	// mkfifo PATH: make a FIFO (replacing whatever is at PATH).
	"mkfifo": func(ts *testscript.TestScript, neg bool, args []string) {
		p := ts.MkAbs(args[0])
		os.Remove(p)
		ts.Check(syscall.Mkfifo(p, 0o600))
	},
	// bg NAME CMD ARGS...: start CMD in the background with the script's
	// environment; its stdout and stderr go to NAME.stdout and NAME.stderr.
	"bg": func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) < 2 {
			ts.Fatalf("usage: bg NAME CMD ARGS...")
		}
		p := &proc{cmd: exec.Command(args[1], args[2:]...)}
		out, err := os.Create(ts.MkAbs(args[0] + ".stdout"))
		ts.Check(err)
		errf, err := os.Create(ts.MkAbs(args[0] + ".stderr"))
		ts.Check(err)
		p.cmd.Stdout, p.cmd.Stderr = out, errf
		ts.Defer(func() { out.Close(); errf.Close() })
		startProc(ts, args[0], p)
	},
	// bg-pipe NAME CMD ARGS...: as bg, with stdin a pipe that stays open
	// and empty (a writer that never writes).
	"bg-pipe": func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) < 2 {
			ts.Fatalf("usage: bg-pipe NAME CMD ARGS...")
		}
		p := &proc{cmd: exec.Command(args[1], args[2:]...)}
		r, w, err := os.Pipe()
		ts.Check(err)
		out, err := os.Create(ts.MkAbs(args[0] + ".stdout"))
		ts.Check(err)
		errf, err := os.Create(ts.MkAbs(args[0] + ".stderr"))
		ts.Check(err)
		p.cmd.Stdin, p.cmd.Stdout, p.cmd.Stderr = r, out, errf
		ts.Defer(func() { r.Close(); w.Close(); out.Close(); errf.Close() })
		startProc(ts, args[0], p)
	},
	// pty NAME CMD ARGS...: start CMD in a session of its own whose
	// controlling terminal is a new pty; what it prints is kept (and
	// written to NAME.pty).
	"pty": func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) < 2 {
			ts.Fatalf("usage: pty NAME CMD ARGS...")
		}
		master, slave, err := openPTY()
		ts.Check(err)
		p := &proc{cmd: exec.Command(args[1], args[2:]...), master: master, slave: slave}
		p.cmd.Stdin, p.cmd.Stdout, p.cmd.Stderr = slave, slave, slave
		p.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
		startProc(ts, args[0], p)
		transcript := ts.MkAbs(args[0] + ".pty")
		go func() {
			buf := make([]byte, 4096)
			for {
				n, err := master.Read(buf)
				p.mu.Lock()
				p.out.Write(buf[:n])
				os.WriteFile(transcript, p.out.Bytes(), 0o600)
				p.mu.Unlock()
				if err != nil {
					return
				}
			}
		}()
	},
	// expect NAME REGEXP: wait (up to 30s) until the pty of NAME has
	// shown text matching REGEXP.
	"expect": func(ts *testscript.TestScript, neg bool, args []string) {
		p := getProc(ts, args[0])
		re := regexp.MustCompile(args[1])
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			p.mu.Lock()
			ok := re.Match(p.out.Bytes())
			p.mu.Unlock()
			if ok {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		ts.Fatalf("%s never showed %q; it showed:\n%s", args[0], args[1], p.out.String())
	},
	// type NAME TEXT: type TEXT (a Go string literal's content: \x03 is
	// Ctrl-C, \r is Enter) on the pty of NAME.
	"type": func(ts *testscript.TestScript, neg bool, args []string) {
		p := getProc(ts, args[0])
		text, err := strconv.Unquote(`"` + args[1] + `"`)
		ts.Check(err)
		_, err = p.master.Write([]byte(text))
		ts.Check(err)
	},
	// tty-sane NAME: the pty of NAME echoes, reads lines and turns Ctrl-C
	// into a signal, as it did before rekey hid the input.
	"tty-sane": func(ts *testscript.TestScript, neg bool, args []string) {
		p := getProc(ts, args[0])
		tio, err := unix.IoctlGetTermios(int(p.slave.Fd()), unix.TCGETS)
		ts.Check(err)
		if tio.Lflag&unix.ECHO == 0 || tio.Lflag&unix.ICANON == 0 || tio.Lflag&unix.ISIG == 0 {
			ts.Fatalf("the terminal was left with lflag %#o (echo %v, icanon %v, isig %v)", tio.Lflag,
				tio.Lflag&unix.ECHO != 0, tio.Lflag&unix.ICANON != 0, tio.Lflag&unix.ISIG != 0)
		}
	},
	// signal NAME INT|TERM: send the signal to the process NAME.
	"signal": func(ts *testscript.TestScript, neg bool, args []string) {
		p := getProc(ts, args[0])
		sig, ok := signals[args[1]]
		if !ok {
			ts.Fatalf("unknown signal %s", args[1])
		}
		ts.Check(p.cmd.Process.Signal(sig))
		p.started = time.Now() // exited measures from the signal
	},
	// exited NAME SECONDS CODE: the process NAME ends within SECONDS (of
	// its start or its last signal) with exit code CODE, or killed by the
	// signal CODE (INT, TERM); else it is killed and the story fails.
	"exited": func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) != 3 {
			ts.Fatalf("usage: exited NAME SECONDS CODE")
		}
		p := getProc(ts, args[0])
		secs, err := strconv.ParseFloat(args[1], 64)
		ts.Check(err)
		wantSig, bySignal := signals[args[2]]
		want, err := strconv.Atoi(args[2])
		if !bySignal {
			ts.Check(err)
		}
		select {
		case <-p.done:
		case <-time.After(time.Until(p.started.Add(time.Duration(secs * float64(time.Second))))):
			p.cmd.Process.Kill()
			<-p.done
			ts.Fatalf("%s still running %s after it was started or signalled; killed", args[0], args[1])
		}
		ts.Logf("%s ended %v after it was started or signalled", args[0], time.Since(p.started).Round(time.Millisecond))
		got := 0
		var ee *exec.ExitError
		if errors.As(p.err, &ee) {
			got = ee.ExitCode()
		} else if p.err != nil {
			ts.Fatalf("%s: %v", args[0], p.err)
		}
		if bySignal {
			ws, _ := p.cmd.ProcessState.Sys().(syscall.WaitStatus)
			if !ws.Signaled() || ws.Signal() != wantSig {
				ts.Fatalf("%s ended with %v, want killed by %v", args[0], p.cmd.ProcessState, wantSig)
			}
			return
		}
		if got != want {
			ts.Fatalf("%s exited %d, want %d", args[0], got, want)
		}
	},
	// lock-free KEY: nobody holds KEY's rotation lock in Vault.
	"lock-free": func(ts *testscript.TestScript, neg bool, args []string) {
		w := getWorld(ts)
		store := vaultstore.New(w.vault.Client, w.vault.Mount, config.DefaultStatePath)
		l, err := store.ReadLock(context.Background(), args[0])
		ts.Check(err)
		if l.Held == !neg {
			ts.Fatalf("lock of %s: held %v by %s@%s pid %d", args[0], l.Held, l.User, l.Host, l.PID)
		}
	},
	// nobody-owns PATH: give PATH to user nobody, and let every user reach
	// it (the directories above it get r-x for group and others).
	"nobody-owns": func(ts *testscript.TestScript, neg bool, args []string) {
		p := ts.MkAbs(args[0])
		ts.Check(os.Chown(p, nobodyID, nobodyID))
		for d := filepath.Dir(p); d != "/" && d != "."; d = filepath.Dir(d) {
			fi, err := os.Stat(d)
			ts.Check(err)
			if fi.Mode().Perm()&0o001 == 0 {
				ts.Check(os.Chmod(d, fi.Mode().Perm()|0o055))
			}
		}
	},
	// as-nobody CMD ARGS...: run CMD as user nobody (another user on the
	// machine), which must succeed.
	"as-nobody": func(ts *testscript.TestScript, neg bool, args []string) {
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Dir = ts.MkAbs(".")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobodyID, Gid: nobodyID}}
		if out, err := cmd.CombinedOutput(); err != nil {
			ts.Fatalf("as nobody: %v: %v\n%s", args, err, out)
		}
	},
	// unchanged FILE COPY: FILE holds exactly what COPY does (taken before).
	"unchanged": func(ts *testscript.TestScript, neg bool, args []string) {
		a, err := os.ReadFile(ts.MkAbs(args[0]))
		ts.Check(err)
		b, err := os.ReadFile(ts.MkAbs(args[1]))
		ts.Check(err)
		if !bytes.Equal(a, b) {
			ts.Fatalf("%s changed", args[0])
		}
		if fi, err := os.Lstat(ts.MkAbs(args[0])); err != nil || fi.Mode().Type() != 0 {
			ts.Fatalf("%s is no longer a regular file: %v", args[0], err)
		}
	},
	// is-symlink PATH: PATH is (still) a symbolic link.
	"is-symlink": func(ts *testscript.TestScript, neg bool, args []string) {
		fi, err := os.Lstat(ts.MkAbs(args[0]))
		ts.Check(err)
		if (fi.Mode()&fs.ModeSymlink != 0) == neg {
			ts.Fatalf("%s is a symbolic link: %v", args[0], !neg)
		}
	},
}

const nobodyID = 65534

// openPTY opens a new pseudo-terminal pair.
func openPTY() (master, slave *os.File, err error) {
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, nil, err
	}
	fd := int(m.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		m.Close()
		return nil, nil, fmt.Errorf("unlockpt: %w", err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		m.Close()
		return nil, nil, fmt.Errorf("ptsname: %w", err)
	}
	s, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		m.Close()
		return nil, nil, err
	}
	return m, s, nil
}
