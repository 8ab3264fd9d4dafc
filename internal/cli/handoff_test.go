package cli

import (
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	vault "github.com/hashicorp/vault/api"

	"github.com/rekey-dev/rekey/internal/ansim"
	"github.com/rekey-dev/rekey/internal/leakcheck"
	"github.com/rekey-dev/rekey/internal/vaulttest"
)

var codeRE = regexp.MustCompile(`hvs\.[A-Za-z0-9_-]{20,}`)

// An owner who is no Slack user gets the code through the operator: it
// is printed on stderr once the rotation is done, as it is (the redactor,
// which knows it, would hide it), and never on stdout, in --output json or
// in Vault's records. `rekey reveal --code-file` then opens it.
func TestHandoffOnTheOperatorsTerminal(t *testing.T) {
	env := vaulttest.New(t)
	sim := ansim.New()
	an := httptest.NewServer(sim)
	defer an.Close()
	old, key := sim.Generate(), sim.Generate()
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cfg := write("rekey.yaml", `
vault: {mount: `+env.Mount+`}
rotation: {timeout: 10s, retries: 1}
serve: {public_url: "https://rekey.greens.example"}
keys:
  - {id: an, provider: actionnetwork, provider_url: "`+an.URL+`/api/v2/", vault_path: an/main}
integrations:
  - id: voteamerica
    key: an
    type: manual
    owner: "Dana at VoteAmerica"
    instructions: "VoteAmerica → Partner settings → Action Network key"
    handoff: {ttl: 1h}
`)
	t.Setenv("VAULT_ADDR", env.Addr)
	t.Setenv("VAULT_TOKEN", env.Token)
	if _, err := env.Client.KVv2(env.Mount).Put(t.Context(), "an/main", map[string]any{"api_key": old}); err != nil {
		t.Fatal(err)
	}
	run := func(stdin string, args ...string) (int, string, string) {
		t.Helper()
		in, err := os.Open(write("stdin", stdin))
		if err != nil {
			t.Fatal(err)
		}
		defer in.Close()
		var out, errs bytes.Buffer
		code := Main(append(args, "--config", cfg), Streams{In: in, Out: &out, Err: &errs})
		return code, out.String(), errs.String()
	}

	code, stdout, stderr := run("", "rotate", "an", "--yes", "--new-key-file", write("new", key), "--output", "json")
	if code != ExitDegraded {
		t.Fatalf("rotate: exit %d\n%s\n%s", code, stdout, stderr)
	}
	var doc outcomeDoc
	if err := json.Unmarshal([]byte(stdout), &doc); err != nil {
		t.Fatalf("stdout is not the outcome's JSON: %v", err)
	}
	if r := doc.Integrations[0]; r.State != "pending" || !strings.Contains(r.Reason, "printed on the operator's terminal, to pass on to Dana at VoteAmerica") {
		t.Fatalf("voteamerica: %s: %s", r.State, r.Reason)
	}
	codes := codeRE.FindAllString(stderr, -1)
	if len(codes) != 2 || codes[0] != codes[1] { // the code, and the page's link
		t.Fatalf("stderr holds %d codes, want the one code twice (alone, and in the page's link):\n%s", len(codes), stderr)
	}
	handoff := codes[0]
	if !strings.Contains(stderr, "Hand-off code for voteamerica (owner Dana at VoteAmerica; key an,") ||
		!strings.Contains(stderr, "https://rekey.greens.example/handoff#"+handoff) {
		t.Fatalf("stderr:\n%s", stderr)
	}
	leakcheck.Assert(t, "stdout (JSON)", []byte(stdout), handoff, key, old)
	leakcheck.Assert(t, "stderr", []byte(stderr), key, old)
	leakcheck.Assert(t, "Vault's records", env.Dump(t, "rekey/"), handoff, key, old)

	code, stdout, stderr = run("", "reveal", "--code-file", write("code", handoff+"\n"))
	if code != ExitOK || !strings.Contains(stdout, "\n"+key+"\n") || !strings.Contains(stdout, "VoteAmerica → Partner settings") {
		t.Fatalf("reveal: exit %d\n%s\n%s", code, stdout, stderr)
	}
	leakcheck.Assert(t, "reveal's stderr", []byte(stderr), handoff, key)
	leakcheck.Assert(t, "reveal's stdout", []byte(stdout), handoff, old)

	// The code holds no more; the link form is read too.
	code, _, stderr = run("https://rekey.greens.example/handoff#"+handoff+"\n", "reveal")
	if code != ExitStopped || !strings.Contains(stderr, "was already opened") {
		t.Fatalf("second reveal: exit %d\n%s", code, stderr)
	}
	leakcheck.Assert(t, "second reveal's stderr", []byte(stderr), handoff, key)

	// A code on the command line is refused: it would be in argv.
	code, stdout, stderr = run("", "reveal", handoff)
	if code != ExitUsage || !strings.Contains(stderr, "reveal takes no arguments") {
		t.Fatalf("reveal with the code as an argument: exit %d, want %d\n%s", code, ExitUsage, stderr)
	}
	leakcheck.Assert(t, "the refusal", []byte(stdout+stderr), handoff)
}

// A token that may not wrap is found by the preflight, and the rotation
// stops there, before anyone is told to click: nothing changes.
func TestRotateStopsWhenTheTokenMayNotWrap(t *testing.T) {
	env := vaulttest.New(t)
	sim := ansim.New()
	an := httptest.NewServer(sim)
	defer an.Close()
	old, key := sim.Generate(), sim.Generate()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "rekey.yaml")
	os.WriteFile(cfg, []byte(`
vault: {mount: `+env.Mount+`}
keys:
  - {id: an, provider: actionnetwork, provider_url: "`+an.URL+`/api/v2/", vault_path: an/main}
integrations:
  - {id: callhub, key: an, type: manual, owner: "Dana", handoff: {ttl: 1h}}
`), 0o600)
	newKey := filepath.Join(dir, "new")
	os.WriteFile(newKey, []byte(key), 0o600)
	if _, err := env.Client.KVv2(env.Mount).Put(t.Context(), "an/main", map[string]any{"api_key": old}); err != nil {
		t.Fatal(err)
	}
	// Everything configs/vault-policy.hcl grants but sys/wrapping/wrap,
	// and no default policy (which grants it).
	m := env.Mount
	policy := `
path "` + m + `/data/an/main" { capabilities = ["read", "update"] }
path "` + m + `/metadata/an/main" { capabilities = ["read", "patch"] }
path "` + m + `/data/rekey/*" { capabilities = ["create", "read", "update"] }
path "` + m + `/metadata/rekey/*" { capabilities = ["list"] }
path "` + m + `/config" { capabilities = ["read"] }
path "sys/capabilities-self" { capabilities = ["update"] }
`
	if err := env.Client.Sys().PutPolicy("nowrap-"+m, policy); err != nil {
		t.Fatal(err)
	}
	sec, err := env.Client.Auth().Token().Create(&vault.TokenCreateRequest{NoDefaultPolicy: true, Policies: []string{"nowrap-" + m}, TTL: "1h"})
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("VAULT_ADDR", env.Addr)
	t.Setenv("VAULT_TOKEN", sec.Auth.ClientToken)
	in, _ := os.Open(os.DevNull)
	defer in.Close()
	var out, errs bytes.Buffer
	code := Main([]string{"rotate", "an", "--yes", "--new-key-file", newKey, "--config", cfg}, Streams{In: in, Out: &out, Err: &errs})
	if code != ExitStopped || !strings.Contains(out.String(), "FAIL write     sys/wrapping/wrap (hand-off codes (Vault response wrapping)): token lacks update") ||
		!strings.Contains(errs.String(), "nothing was changed and nobody was told") {
		t.Fatalf("exit %d\n%s\n%s", code, out.String(), errs.String())
	}
	if strings.Contains(out.String(), "Now:") {
		t.Fatal("the owner was told to click")
	}
	if v, err := env.Client.KVv2(env.Mount).Get(t.Context(), "an/main"); err != nil || v.VersionMetadata.Version != 1 {
		t.Fatalf("Vault changed: %v", err)
	}
}
