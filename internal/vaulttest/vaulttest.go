// Package vaulttest gives tests a real Vault: the tools/vaultdev server
// (Vault 1.14 core, KV v2, AppRole) on loopback.
//
// One server is shared per run: scripts/test starts one and exports
// REKEY_TEST_VAULT_ADDR and REKEY_TEST_VAULT_TOKEN; without them, the
// first test in a test binary builds tools/vaultdev once (cached by
// content) and starts a server that dies with the binary. Each test gets
// its own KV v2 mount, so tests never see each other's data.
package vaulttest

import (
	"os"
	"sync"
	"testing"

	vault "github.com/hashicorp/vault/api"

	"github.com/rekey-dev/rekey/internal/vaultdev"
)

// Server is a running vaultdev.
type Server = vaultdev.Server

// Env is one test's view of the shared server: its own KV v2 mount.
type Env = vaultdev.Env

// Start runs a vaultdev binary and waits until it is ready.
func Start(bin string) (*Server, error) { return vaultdev.Start(bin) }

// Binary builds tools/vaultdev once and returns its path.
func Binary() (string, error) { return vaultdev.Binary() }

var (
	once   sync.Once
	shared *Server
	err0   error
)

// Shared returns the run's server, starting one if needed.
func Shared(t testing.TB) *Server {
	t.Helper()
	once.Do(func() {
		if a, tok := os.Getenv("REKEY_TEST_VAULT_ADDR"), os.Getenv("REKEY_TEST_VAULT_TOKEN"); a != "" && tok != "" {
			shared = &Server{Addr: a, Token: tok}
			return
		}
		bin, err := Binary()
		if err != nil {
			err0 = err
			return
		}
		shared, err0 = Start(bin)
	})
	if err0 != nil {
		t.Fatalf("vaulttest: %v", err0)
	}
	return shared
}

// New gives the test a fresh KV v2 mount on the shared server.
func New(t testing.TB) *Env {
	t.Helper()
	env, cleanup, err := Shared(t).NewEnv()
	if err != nil {
		t.Fatalf("vaulttest: %v", err)
	}
	t.Cleanup(cleanup)
	return env
}

// NewClient returns a client for addr with retries off, as tests want.
func NewClient(t testing.TB, addr, token string) *vault.Client {
	t.Helper()
	cfg := vault.DefaultConfig()
	cfg.Address = addr
	cfg.MaxRetries = 0
	c, err := vault.NewClient(cfg)
	if err != nil {
		t.Fatalf("vaulttest: client: %v", err)
	}
	c.SetToken(token)
	return c
}
