package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	vault "github.com/hashicorp/vault/api"
	"github.com/rekey-dev/rekey/internal/testtool"
	"github.com/rogpeppe/go-internal/testscript"
)

// vaultCmds are testscript commands for the stories about Vault setups
// (cas_required, max_versions, least-privilege policies), malformed keys
// and locks across PID namespaces.
var vaultCmds = map[string]func(ts *testscript.TestScript, neg bool, args []string){
	// vault-config SETTING=VALUE...: write the mount's KV v2 settings
	// (<mount>/config), e.g. cas_required=true max_versions=2.
	"vault-config": func(ts *testscript.TestScript, neg bool, args []string) {
		w := getWorld(ts)
		settings := map[string]any{}
		for _, a := range args {
			k, v, ok := strings.Cut(a, "=")
			if !ok {
				ts.Fatalf("usage: vault-config SETTING=VALUE...")
			}
			settings[k] = v
		}
		_, err := w.vault.Client.Logical().Write(w.vault.Mount+"/config", settings)
		ts.Check(err)
	},
	// vault-set-max-versions PATH: the script's VAULT_TOKEN tries, as the
	// vault CLI and API would, to set max_versions=1 on PATH's metadata
	// (which would erase every earlier version): a merge patch (`vault kv
	// metadata patch`) and a write (`vault kv metadata put`). Both must be
	// denied (403); with !, both must succeed.
	"vault-set-max-versions": func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) != 1 {
			ts.Fatalf("usage: vault-set-max-versions PATH")
		}
		w := getWorld(ts)
		c, err := w.vault.Client.Clone()
		ts.Check(err)
		c.SetToken(ts.Getenv("VAULT_TOKEN"))
		ctx := context.Background()
		p := w.vault.Mount + "/metadata/" + args[0]
		_, perr := c.Logical().JSONMergePatch(ctx, p, map[string]any{"max_versions": 1})
		_, werr := c.Logical().WriteWithContext(ctx, p, map[string]any{"max_versions": 1})
		for what, err := range map[string]error{"patch": perr, "write": werr} {
			var re *vault.ResponseError
			denied := errors.As(err, &re) && re.StatusCode == http.StatusForbidden
			if denied == neg {
				ts.Fatalf("%s max_versions of %s: err %v; want denied: %v", what, args[0], err, !neg)
			}
		}
	},
	// vault-token-hcl FILE: set VAULT_TOKEN to a token that holds only the
	// policy in FILE (in the script's work directory; "secret/" is the
	// script's mount), not even Vault's default policy.
	"vault-token-hcl": func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) != 1 {
			ts.Fatalf("usage: vault-token-hcl FILE")
		}
		w := getWorld(ts)
		b, err := os.ReadFile(ts.MkAbs(args[0]))
		ts.Check(err)
		name := "hcl-" + w.vault.Mount + "-" + filepath.Base(args[0])
		ts.Check(w.vault.Client.Sys().PutPolicy(name, strings.ReplaceAll(string(b), `"secret/`, `"`+w.vault.Mount+`/`)))
		sec, err := w.vault.Client.Auth().Token().Create(&vault.TokenCreateRequest{Policies: []string{name}, NoDefaultPolicy: true, TTL: "1h"})
		ts.Check(err)
		ts.Setenv("VAULT_TOKEN", sec.Auth.ClientToken)
	},
	// badkey NAME KIND: write into keys/NAME a fresh random key spoilt by
	// KIND: tab (a tab inside), space, utf8 (bytes that are not UTF-8),
	// escape (a terminal escape sequence), zwsp (a zero-width space).
	"badkey": func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) != 2 {
			ts.Fatalf("usage: badkey NAME tab|space|utf8|escape|zwsp")
		}
		w := getWorld(ts)
		k := w.sim.Generate()
		half := len(k) / 2
		bad := map[string]string{
			"tab":    k[:half] + "\t" + k[half:],
			"space":  k[:half] + " " + k[half:],
			"utf8":   k[:half] + "\xff\xfe" + k[half:],
			"escape": k + "\x1b[2J",
			"zwsp":   k[:half] + "\u200b" + k[half:],
		}[args[1]]
		if bad == "" {
			ts.Fatalf("badkey: unknown kind %s", args[1])
		}
		writeKey(ts, args[0], bad)
	},
}

// canUnsharePID reports whether this process may start a process in a
// PID namespace of its own (root, and a kernel that allows it).
var canUnsharePID = sync.OnceValue(func() bool {
	if _, err := exec.LookPath("unshare"); err != nil {
		return false
	}
	return exec.Command("unshare", "--pid", "--fork", "true").Run() == nil
})

// scriptCondition answers the conditions of TestScripts' stories:
// [pidns]: PID namespaces can be made here (see canUnsharePID). Where
// every test must run (testtool.Required), a missing unshare (util-linux)
// fails the story instead of letting it skip; not being root still skips.
func scriptCondition(cond string) (bool, error) {
	switch cond {
	case "pidns":
		if _, err := exec.LookPath("unshare"); err != nil && testtool.Required() {
			return false, errors.New("unshare not found: install it with `apt-get install -y util-linux`")
		}
		return canUnsharePID(), nil
	}
	return false, fmt.Errorf("unknown condition %q", cond)
}

// policyFiles reads a policy from FILE (a path from the module root) and
// any further files (paths in the script's work directory), as one.
func policyFiles(ts *testscript.TestScript, files []string) string {
	root, err := moduleRoot()
	ts.Check(err)
	var hcl strings.Builder
	for i, f := range files {
		p := filepath.Join(root, f)
		if i > 0 {
			p = ts.MkAbs(f)
		}
		b, err := os.ReadFile(p)
		ts.Check(err)
		hcl.Write(b)
		hcl.WriteString("\n")
	}
	return hcl.String()
}
