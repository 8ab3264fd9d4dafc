// Command rekey-demo runs a complete local demonstration of rekey: a real
// Vault dev server, an Action Network simulator, example integrations in a
// temporary folder (one of them a .env on a server reached over SSH, a
// real sshd on loopback, when sshd is installed), a planned rotation, a
// leak response, and on the console what Slack would have received. It
// cleans up after itself.
//
//	go run ./cmd/rekey-demo        (or scripts/demo)
package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/rekey-dev/rekey/internal/ansim"
	"github.com/rekey-dev/rekey/internal/cli"
	"github.com/rekey-dev/rekey/internal/vaulttest"
	"github.com/rekey-dev/rekey/secret"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "rekey-demo: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	step("Starting a real Vault dev server (tools/vaultdev; the first build takes a few minutes)")
	bin, err := vaulttest.Binary()
	if err != nil {
		return err
	}
	srv, err := vaulttest.Start(bin)
	if err != nil {
		return err
	}
	os.Setenv("VAULT_ADDR", srv.Addr)
	os.Setenv("VAULT_TOKEN", srv.Token)
	fmt.Printf("Vault at %s\n", srv.Addr)

	step("Starting an Action Network simulator")
	sim := ansim.New()
	an := httptest.NewServer(sim)
	defer an.Close()
	oldKey := sim.Generate()
	fmt.Printf("Action Network simulator at %s; the list's key is %s\n", an.URL, secret.New(oldKey).Fingerprint())

	dir, err := os.MkdirTemp("", "rekey-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	step("Starting a server reached over SSH (a real sshd on loopback)")
	host := startHost(dir)
	if host != nil {
		defer host.close()
	}

	step("Seeding example integrations in " + dir)
	cfgPath, err := seed(dir, an.URL+"/api/v2/", oldKey, host)
	if err != nil {
		return err
	}
	fmt.Println(indent(mustRead(cfgPath)))

	step("Storing the current key in Vault (as an operator would once)")
	if err := storeInitial(srv, oldKey); err != nil {
		return err
	}

	var printed bytes.Buffer // what the last command printed
	rekey := func(args ...string) int {
		fmt.Printf("\n$ rekey %s\n", strings.Join(args, " "))
		in, _ := os.Open(os.DevNull)
		defer in.Close()
		printed.Reset()
		w := io.MultiWriter(os.Stdout, &printed)
		code := cli.Main(append(args, "--config", cfgPath), cli.Streams{In: in, Out: w, Err: w})
		fmt.Printf("(exit %d)\n", code)
		return code
	}

	step("Before: is everything ready?")
	rekey("check")

	step("A planned rotation")
	fmt.Println("The owner clicks REVOKE & GENERATE NEW KEY in Action Network: the old key dies at once.")
	sim.Revoke(oldKey)
	newKey := sim.Generate()
	keyFile := filepath.Join(dir, "new-key")
	if err := os.WriteFile(keyFile, []byte(newKey+"\n"), 0o600); err != nil {
		return err
	}
	rekey("rotate", "actionnetwork-main", "--reason", "scheduled", "--yes", "--new-key-file", keyFile)

	step("CallHub's admin is no Slack user: the operator passes the one-time hand-off code on, privately")
	code := codeRE.FindString(printed.String())
	if code == "" {
		return fmt.Errorf("the rotation printed no hand-off code for CallHub")
	}
	codeFile := filepath.Join(dir, "handoff-code")
	if err := os.WriteFile(codeFile, []byte(code+"\n"), 0o600); err != nil {
		return err
	}
	fmt.Println("Dana opens it once (it needs only VAULT_ADDR, no Vault token), pastes the key in CallHub, and confirms:")
	rekey("reveal", "--code-file", codeFile)
	rekey("status", "actionnetwork-main")
	fmt.Println("\nA second opening is refused and alerts the team (someone else may have the code):")
	rekey("reveal", "--code-file", codeFile)
	rekey("confirm", "actionnetwork-main", "callhub", "--note", "pasted in CallHub settings")
	rekey("status", "actionnetwork-main")

	step("What changed in the site's .env (values shown as fingerprints)")
	fmt.Println(indent(redact(mustRead(filepath.Join(dir, "site", ".env")), oldKey, newKey)))
	if host != nil {
		step("What changed in web1's .env, rewritten over SFTP (values shown as fingerprints)")
		fmt.Println(indent(redact(mustRead(filepath.Join(dir, "web1", ".env")), oldKey, newKey)))
	}

	if err := leakDemo(dir, sim, newKey, rekey); err != nil {
		return err
	}
	step("Done; removing " + dir + " and stopping Vault")
	return nil
}

func step(s string) { fmt.Printf("\n=== %s\n", s) }

// codeRE finds a hand-off code (a Vault response-wrapping token) in what
// rekey printed for the operator.
var codeRE = regexp.MustCompile(`hvs\.[A-Za-z0-9_-]{20,}`)

func indent(s string) string {
	return "    " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n    ")
}

func mustRead(p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	return string(b)
}

// redact replaces keys with their fingerprints, for showing files.
func redact(s string, keys ...string) string {
	for _, k := range keys {
		s = strings.ReplaceAll(s, k, "<"+secret.New(k).Fingerprint()+">")
	}
	return s
}
