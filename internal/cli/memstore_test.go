package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/rekey-dev/rekey/internal/leakcheck"
	"github.com/rekey-dev/rekey/secret"
	"github.com/rekey-dev/rekey/store/memstore"
)

// The command line's logic on the in-memory store: what each command does
// and says, in milliseconds. The same stories against a real Vault, and
// what only Vault shows (policies, cas_required, pruning, a sealed or
// unreachable Vault), are cmd/rekey's testscripts.

// cliWorld is a key in a memory store, held by two files and a person.
type cliWorld struct {
	t        *testing.T
	dir      string
	cfg      string
	store    *memstore.Store
	old, new secret.Key
	outputs  bytes.Buffer // everything every command printed
}

func newCLIWorld(t *testing.T) *cliWorld {
	w := &cliWorld{t: t, dir: t.TempDir(), store: memstore.New(memstore.Options{}),
		old: secret.New("an-old-0123456789abcdef0123456789"), new: secret.New("an-new-fedcba9876543210fedcba9876")}
	if _, err := w.store.WriteKey(context.Background(), "an/main", w.old, 0, nil); err != nil {
		t.Fatal(err)
	}
	w.hold(w.old)
	if err := os.WriteFile(filepath.Join(w.dir, "new-key"), []byte(w.new.Reveal()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(w.dir, "old-key"), []byte(w.old.Reveal()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	w.cfg = filepath.Join(w.dir, "rekey.yaml")
	yaml := strings.ReplaceAll(`vault: {mount: mem}
keys:
  - {id: an, provider: none, vault_path: an/main, owner: "<@UOWNER>", rotate_every: 90d}
integrations:
  - {id: site-env, key: an, type: file, path: DIR/site.env, format: dotenv, field: AN_KEY}
  - {id: widget, key: an, type: file, path: DIR/widget.json, format: json, field: actionnetwork.api_key}
  - {id: callhub, key: an, type: manual, owner: "<@UCALL>", instructions: "CallHub → Settings → paste the key"}
`, "DIR", w.dir)
	if err := os.WriteFile(w.cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		leakcheck.Assert(t, "everything rekey printed", w.outputs.Bytes(), w.old.Reveal(), w.new.Reveal())
		leakcheck.Assert(t, "rekey's records", w.store.Dump(), w.old.Reveal(), w.new.Reveal())
	})
	return w
}

func (w *cliWorld) hold(k secret.Key) {
	w.t.Helper()
	if err := os.WriteFile(filepath.Join(w.dir, "site.env"), []byte("APP=site\nAN_KEY="+k.Reveal()+"\n"), 0o600); err != nil {
		w.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(w.dir, "widget.json"), []byte(`{"actionnetwork": {"api_key": "`+k.Reveal()+`"}, "theme": "green"}`+"\n"), 0o600); err != nil {
		w.t.Fatal(err)
	}
}

func (w *cliWorld) holds(file string) string {
	b, err := os.ReadFile(filepath.Join(w.dir, file))
	if err != nil {
		w.t.Fatal(err)
	}
	switch {
	case bytes.Contains(b, []byte(w.new.Reveal())):
		return "new"
	case bytes.Contains(b, []byte(w.old.Reveal())):
		return "old"
	}
	return "neither"
}

// rekey runs the command line with args against the memory store and
// returns its exit code, stdout and stderr.
func (w *cliWorld) rekey(args ...string) (int, string, string) {
	w.t.Helper()
	in, err := os.Open(os.DevNull)
	if err != nil {
		w.t.Fatal(err)
	}
	defer in.Close()
	var out, errs bytes.Buffer
	code := run(append(args, "--config", w.cfg), Streams{In: in, Out: &out, Err: &errs}, w.store)
	w.outputs.Write(out.Bytes())
	w.outputs.Write(errs.Bytes())
	return code, out.String(), errs.String()
}

func (w *cliWorld) want(what string, code int, out string, wantCode int, patterns ...string) {
	w.t.Helper()
	if code != wantCode {
		w.t.Fatalf("%s: exit %d, want %d; output:\n%s", what, code, wantCode, out)
	}
	for _, p := range patterns {
		neg := strings.HasPrefix(p, "!")
		matched := regexp.MustCompile(strings.TrimPrefix(p, "!")).MatchString(out)
		if matched == neg {
			w.t.Errorf("%s: output %s %q:\n%s", what, map[bool]string{true: "matches", false: "does not match"}[neg], strings.TrimPrefix(p, "!"), out)
		}
	}
}

// A rotation, the person's confirmation, status, an audit that finds a
// file put back, resume: each command's exit code and what it says.
func TestRotateConfirmStatusAuditResume(t *testing.T) {
	w := newCLIWorld(t)
	code, out, errs := w.rekey("rotate", "an", "--yes", "--new-key-file", filepath.Join(w.dir, "new-key"))
	w.want("rotate", code, out+errs, ExitDegraded,
		`Now: \S+|Until rekey has the new key, these integrations are broken: site-env, widget, callhub`,
		`version 2 \(sha256:\w{12}\) is in Vault, replacing version 1`,
		`current +site-env +file`, `current +widget +file`, `pending +callhub +manual`,
		`2 of 3 integrations current\.`, `callhub: <@UCALL> updates it by hand, then: rekey confirm an callhub`)
	if w.holds("site.env") != "new" || w.holds("widget.json") != "new" {
		t.Fatalf("after rotate: site.env holds %s, widget.json %s", w.holds("site.env"), w.holds("widget.json"))
	}

	code, out, _ = w.rekey("confirm", "an", "callhub", "--note", "pasted in CallHub")
	w.want("confirm", code, out, ExitOK, `Recorded: callhub of an confirmed\. State: current`)

	code, out, _ = w.rekey("status", "an")
	w.want("status", code, out, ExitOK, `version 2 +sha256:\w{12}`, `rotate every 90d: due \d{4}-\d\d-\d\d`,
		`last rotation \S+ \(manual\)`, `exact +current +site-env`, `person +current +callhub`,
		`versions: 2 versions on record, all still in Vault`)

	code, out, _ = w.rekey("audit", "an")
	w.want("audit", code, out, ExitOK, `All 3 integrations current\.`, `no earlier audit on record`)

	w.hold(w.old) // someone restores yesterday's backup
	code, out, _ = w.rekey("audit", "an")
	w.want("audit after a restore", code, out, ExitDegraded, `stale +site-env +file .*\[changed: was current\]`,
		`stale +widget`, `1 of 3 integrations current\.`)

	code, out, errs = w.rekey("resume", "an")
	w.want("resume", code, out+errs, ExitOK, `3 of 3 integrations current\.`)
	if w.holds("site.env") != "new" || w.holds("widget.json") != "new" {
		t.Fatalf("after resume: site.env holds %s, widget.json %s", w.holds("site.env"), w.holds("widget.json"))
	}

	code, out, _ = w.rekey("audit", "an", "--output", "json")
	w.want("audit --output json", code, out, ExitOK, `"all_current": true`, `"previous": "stale"`)
}

// When the store's credentials may not write one of the records a
// rotation writes, check names it and exits 1, and a rotation stops
// before anybody is told to click: nothing changed.
func TestDeniedRecordStopsBeforeTheClick(t *testing.T) {
	w := newCLIWorld(t)
	w.store.Deny("mem/data/rekey/keys/an/journals/", "read", "create", "update")
	code, out, _ := w.rekey("check", "an")
	w.want("check", code, out, ExitStopped,
		`FAIL write +mem/data/rekey/keys/an/journals/\S+/000000 \(the rotation's journal parts\): token lacks read, create, update`,
		`Not ready`, `!Ready\.`)

	code, out, errs := w.rekey("rotate", "an", "--yes", "--new-key-file", filepath.Join(w.dir, "new-key"))
	w.want("rotate", code, out+errs, ExitStopped,
		`cannot make every write a rotation makes: \S+/journals/\S+ \(the rotation's journal parts\): token lacks read, create, update; nothing was changed and nobody was told`,
		`!Now:`, `!REVOKE`)
	if cur, err := w.store.ReadKey(context.Background(), "an/main"); err != nil || cur.Version != 1 {
		t.Fatalf("the store is at version %d (%v) after a rotation that stopped", cur.Version, err)
	}
	if w.holds("site.env") != "old" {
		t.Fatal("an integration was changed by a rotation that stopped")
	}
}

// A leak: the leaked version is marked compromised, status says so, and
// the leaked key pasted again later is refused.
func TestLeakMarksCompromisedAndRefusesItAgain(t *testing.T) {
	w := newCLIWorld(t)
	code, out, errs := w.rekey("leak", "an", "--yes", "--new-key-file", filepath.Join(w.dir, "new-key"), "--recheck-for", "0s")
	w.want("leak", code, out+errs, ExitDegraded, `LEAK of an declared`, `Version 1 is marked compromised`,
		`pending +callhub`, `Incident timeline:`, `leak declared`)

	code, out, _ = w.rekey("status", "an")
	w.want("status", code, out, ExitOK, `compromised versions: \[1\]`, `leak declared .*not contained yet: the leaked key is not confirmed dead; callhub pending`)

	code, out, errs = w.rekey("rotate", "an", "--yes", "--new-key-file", filepath.Join(w.dir, "old-key"))
	w.want("rotate with the leaked key", code, out+errs, ExitStopped, `new key refused: it is version 1 \(sha256:\w{12}\), an earlier version of this key`)
	if cur, _ := w.store.ReadKey(context.Background(), "an/main"); cur.Version != 2 {
		t.Fatalf("the store is at version %d after the leaked key was refused", cur.Version)
	}
}
