// Command vaultdev runs a real, in-memory Vault (v1.14.0 core, KV v2 and
// AppRole) on a loopback port, for rekey's tests and demo. It is not a
// production server: everything lives in memory and dies with the process.
//
// It prints one line of JSON to stdout once ready:
//
//	{"address":"http://127.0.0.1:PORT","token":"..."}
//
// and serves until it receives SIGINT or SIGTERM, or its stdin closes
// (with -exit-on-stdin-eof), so a parent that dies does not leave it behind.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	kv "github.com/hashicorp/vault-plugin-secrets-kv"
	credAppRole "github.com/hashicorp/vault/builtin/credential/approle"
	vaulthttp "github.com/hashicorp/vault/http"
	"github.com/hashicorp/vault/sdk/logical"
	"github.com/hashicorp/vault/vault"
	"github.com/mitchellh/go-testing-interface"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "loopback address to serve on")
	stdinEOF := flag.Bool("exit-on-stdin-eof", false, "exit when stdin closes")
	flag.Parse()
	if err := run(*listen, *stdinEOF); err != nil {
		fmt.Fprintf(os.Stderr, "vaultdev: %v\n", err)
		os.Exit(1)
	}
}

func run(listen string, stdinEOF bool) error {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return fmt.Errorf("listen %q: %w", listen, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("listen %q: only loopback addresses are allowed", listen)
	}

	conf := &vault.CoreConfig{
		LogicalBackends: map[string]logical.Factory{
			"kv": kv.Factory,
		},
		CredentialBackends: map[string]logical.Factory{
			"approle": credAppRole.Factory,
		},
	}
	core, _, token := vault.TestCoreUnsealedWithConfig(&testing.RuntimeT{}, conf)

	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           vaulthttp.Handler.Handler(&vault.HandlerProperties{Core: core}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go srv.Serve(ln)
	addr := "http://" + ln.Addr().String()

	if err := setupKV2(addr, token); err != nil {
		return err
	}

	out, _ := json.Marshal(map[string]string{"address": addr, "token": token})
	fmt.Println(string(out))

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, os.Interrupt, syscall.SIGTERM)
	if stdinEOF {
		go func() {
			io.Copy(io.Discard, os.Stdin)
			stop <- syscall.SIGTERM
		}()
	}
	<-stop
	return srv.Close()
}

// setupKV2 replaces the test core's KV v1 mount at secret/ with KV v2 and
// waits until a write succeeds (KV v2 answers "upgrading" briefly).
func setupKV2(addr, token string) error {
	if err := call(addr, token, "DELETE", "/v1/sys/mounts/secret", nil); err != nil {
		return fmt.Errorf("unmount secret/: %w", err)
	}
	mount := map[string]any{"type": "kv", "options": map[string]string{"version": "2"}}
	if err := call(addr, token, "POST", "/v1/sys/mounts/secret", mount); err != nil {
		return fmt.Errorf("mount secret/ as kv v2: %w", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	probe := map[string]any{"data": map[string]string{"ready": "yes"}}
	for {
		err := call(addr, token, "POST", "/v1/secret/data/vaultdev-ready", probe)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kv v2 never became writable: %w", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return call(addr, token, "DELETE", "/v1/secret/metadata/vaultdev-ready", nil)
}

func call(addr, token, method, path string, body any) error {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, addr+path, r)
	if err != nil {
		return err
	}
	req.Header.Set("X-Vault-Token", token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode >= 300 {
		return errors.New(resp.Status + ": " + string(bytes.TrimSpace(msg)))
	}
	return nil
}
