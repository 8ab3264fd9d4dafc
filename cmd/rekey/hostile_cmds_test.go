package main

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"os"
	"strings"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/rekey-dev/rekey/internal/hostile"
)

// vaultJSONCanary starts what a vault-json server quotes: rekey keeps
// Vault's own JSON messages (redacted), so that quote may be printed, and
// is not one of the bytes the leak check looks for.
const vaultJSONCanary = "vault-json-canary-77e1"

var hostileCmds = map[string]func(ts *testscript.TestScript, neg bool, args []string){
	// hostile MODE VAR: start a server that answers every request the way
	//   MODE says (internal/hostile: bad-status, bad-header, bad-location,
	//   redirect, unsolicited, vault-json), quoting the request, and set
	//   $VAR to its URL. Its canary joins the leak check's secrets (but a
	//   vault-json server's, whose quote rekey keeps as Vault's message).
	// hostile MODE VAR UPSTREAM PATH: the same, but only for writes (PUT,
	//   POST) to a path containing PATH; every other request is forwarded
	//   to UPSTREAM (a proxy at VAULT_ADDR that turns on the key's write).
	"hostile": func(ts *testscript.TestScript, neg bool, args []string) {
		w := getWorld(ts)
		if len(args) != 2 && len(args) != 4 {
			ts.Fatalf("usage: hostile MODE VAR [UPSTREAM PATH]")
		}
		mode, err := hostile.ParseMode(args[0])
		ts.Check(err)
		var opts hostile.Options
		if len(args) == 4 {
			path := args[3]
			opts.Upstream = args[2]
			opts.Hostile = func(r *http.Request) bool {
				return (r.Method == http.MethodPut || r.Method == http.MethodPost) && strings.Contains(r.URL.Path, path)
			}
		}
		if mode == hostile.VaultJSON {
			opts.Canary = vaultJSONCanary
		} else {
			w.addSecret(hostile.Canary)
		}
		srv, err := hostile.Start(mode, opts)
		ts.Check(err)
		ts.Defer(srv.Close)
		ts.Setenv(args[1], srv.URL)
	},
	// token VAR: set $VAR to a new random token; the leak check looks for it.
	"token": func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) != 1 {
			ts.Fatalf("usage: token VAR")
		}
		b := make([]byte, 16)
		rand.Read(b)
		tok := "tok-" + hex.EncodeToString(b)
		getWorld(ts).addSecret(tok)
		ts.Setenv(args[0], tok)
	},
	// unescape FILE: turn each @{ into ${ in FILE, so a configuration
	// made with envsubst can still hold a ${VAR} for rekey to expand.
	"unescape": func(ts *testscript.TestScript, neg bool, args []string) {
		b, err := os.ReadFile(ts.MkAbs(args[0]))
		ts.Check(err)
		ts.Check(os.WriteFile(ts.MkAbs(args[0]), []byte(strings.ReplaceAll(string(b), "@{", "${")), 0o600))
	},
}
