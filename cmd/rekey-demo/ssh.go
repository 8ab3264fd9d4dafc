package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/rekey-dev/rekey/internal/sshtest"
)

// demoHost is a server on loopback reached over SSH: a real sshd the demo
// starts with a host key, a client key and a known_hosts of its own.
type demoHost struct {
	srv      *sshtest.Server
	cleanups []func()
	dir      string
	n        int
}

// startHost starts sshd, or says why it cannot and returns nil: the demo
// then carries on without a host.
func startHost(dir string) (h *demoHost) {
	if sshtest.Find() == "" {
		fmt.Println("sshd is not installed (apt-get install -y openssh-server): the demo goes on without a server over SSH.")
		return nil
	}
	h = &demoHost{dir: dir}
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(demoFatal); !ok {
				panic(r)
			}
			fmt.Printf("sshd could not be started (%v): the demo goes on without a server over SSH.\n", r)
			h.close()
			h = nil
		}
	}()
	h.srv = sshtest.Start(h, sshtest.Options{})
	fmt.Printf("sshd on %s, host key %s, trusted by %s\n", h.srv.Addrs[0], h.srv.Fingerprint(), h.srv.KnownHosts)
	return h
}

func (h *demoHost) close() {
	for i := len(h.cleanups) - 1; i >= 0; i-- {
		h.cleanups[i]()
	}
	h.cleanups = nil
}

// sshtest.T, for a program rather than a test.

type demoFatal string

func (h *demoHost) Helper()                   {}
func (h *demoHost) Fatal(args ...any)         { panic(demoFatal(fmt.Sprint(args...))) }
func (h *demoHost) Fatalf(f string, a ...any) { panic(demoFatal(fmt.Sprintf(f, a...))) }
func (h *demoHost) Cleanup(f func())          { h.cleanups = append(h.cleanups, f) }
func (h *demoHost) TempDir() string {
	h.n++
	d := filepath.Join(h.dir, fmt.Sprintf("sshd-%d", h.n))
	if err := os.MkdirAll(d, 0o700); err != nil {
		h.Fatal(err)
	}
	return d
}
