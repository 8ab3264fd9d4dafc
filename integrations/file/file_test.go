//go:build unix

package file

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rekey-dev/rekey/config"
	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/integrations"
	"github.com/rekey-dev/rekey/internal/leakcheck"
	"github.com/rekey-dev/rekey/secret"
	"github.com/rekey-dev/rekey/state"
)

func randomKey(t *testing.T) string {
	t.Helper()
	b := make([]byte, 16)
	rand.Read(b)
	return "ak_" + hex.EncodeToString(b)
}

// env is rekey's environment as the tests give it: tokens that must never
// reach a child, and PATH so that /bin/sh finds its tools.
func env(keys ...string) func(string) string {
	vals := map[string]string{
		"PATH":            os.Getenv("PATH"),
		"HOME":            "/home/rekey",
		"VAULT_TOKEN":     "hvs.vault-token-for-tests",
		"SLACK_BOT_TOKEN": "xoxb-slack-token-for-tests",
		"GITHUB_TOKEN":    "ghp_github-token-for-tests",
	}
	for i, k := range keys {
		vals[fmt.Sprintf("REKEY_TEST_KEY_%d", i)] = k
	}
	return func(n string) string { return vals[n] }
}

func newFile(t *testing.T, getenv func(string) string, settings map[string]any) *File {
	t.Helper()
	in := config.Integration{ID: "site-env", Key: "actionnetwork-main", Type: Type, Settings: settings}
	cfg := &config.Config{File: filepath.Join(t.TempDir(), "rekey.yaml"), Integrations: []config.Integration{in}}
	integ, err := New(integrations.Host{Config: cfg, Getenv: getenv}, in)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	f, ok := integ.(*File)
	if !ok {
		t.Fatalf("New gave %T", integ)
	}
	return f
}

// reloadScript writes a script that counts its runs in dir/count and dumps
// its argv, environment and stdin to dir/dump, then exits with code.
func reloadScript(t *testing.T, dir string, code int) string {
	t.Helper()
	path := filepath.Join(dir, fmt.Sprintf("reload-%d.sh", code))
	script := fmt.Sprintf(`#!/bin/sh
echo run >> %[1]s/count
{ echo "argv: $0 $*"; env; echo "stdin:"; cat; } >> %[1]s/dump
exit %[2]d
`, dir, code)
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func runs(t *testing.T, dir string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "count"))
	if errors.Is(err, fs.ErrNotExist) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "run\n")
}

func writeFile(t *testing.T, path, content string, mode fs.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // past the umask
		t.Fatal(err)
	}
}

// leakFree fails the test if any key is in any of the texts.
func leakFree(t *testing.T, what string, text string, keys ...string) {
	t.Helper()
	leakcheck.Assert(t, what, []byte(text), keys...)
}

func TestApplyFormats(t *testing.T) {
	for _, tc := range []struct {
		format, field string
		content       string // OLD stands for the old key
	}{
		{FormatDotenv, "ACTION_NETWORK_API_KEY", "# site\r\nexport DB=postgres://x\r\nACTION_NETWORK_API_KEY='OLD' # rotated by rekey\r\nDEBUG=0\r\n"},
		{FormatDotenv, "ACTION_NETWORK_API_KEY", "A=1\nACTION_NETWORK_API_KEY=\"OLD\"\nB=2"},
		{FormatJSON, "actionnetwork.api_key", "{\n  \"name\": \"site\",\n  \"actionnetwork\": {\"api_key\": \"OLD\", \"list\": 3}\n}\n"},
		{FormatJSON, "keys.0.value", `{"keys":[{"value":"OLD"}]}`},
		{FormatYAML, "actionnetwork.api_key", "# site\nactionnetwork:\n  api_key: OLD   # the key\n  list: 3\nother: [1, 2]\n"},
		{FormatYAML, "keys.0.value", "keys:\n- value: 'OLD'\n"},
		{FormatRaw, "", "OLD\n"},
		{FormatRaw, "", "OLD"},
	} {
		t.Run(tc.format+"/"+tc.field, func(t *testing.T) {
			t.Parallel()
			oldKey, newKey := randomKey(t), randomKey(t)
			dir := t.TempDir()
			path := filepath.Join(dir, "target")
			before := strings.ReplaceAll(tc.content, "OLD", oldKey)
			want := strings.ReplaceAll(tc.content, "OLD", newKey)
			writeFile(t, path, before, 0o640)
			settings := map[string]any{"path": path, "format": tc.format, "reload": []string{reloadScript(t, dir, 0)}}
			if tc.field != "" {
				settings["field"] = tc.field
			}
			f := newFile(t, env(oldKey, newKey), settings)
			ctx := context.Background()

			held, err := f.Read(ctx)
			if err != nil || !held.Equal(secret.New(oldKey)) {
				t.Fatalf("Read before: %v, %v", held, err)
			}
			res, err := f.Apply(ctx, integrations.ApplyRequest{Key: secret.New(newKey)})
			if err != nil {
				leakFree(t, "Apply error", err.Error(), oldKey, newKey)
				t.Fatalf("Apply: %v", err)
			}
			if !res.Changed || res.At.IsZero() {
				t.Errorf("Apply result %+v, want Changed", res)
			}
			got, _ := os.ReadFile(path)
			if string(got) != want {
				t.Errorf("file after Apply:\n got %q\nwant %q", got, want)
			}
			st1, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if st1.Mode() != 0o640 {
				t.Errorf("mode %v, want 0640", st1.Mode())
			}
			if held, err := f.Read(ctx); err != nil || !held.Equal(secret.New(newKey)) {
				t.Errorf("Read after: %v, %v", held, err)
			}
			if n := runs(t, dir); n != 1 {
				t.Errorf("reload ran %d times, want 1", n)
			}

			res, err = f.Apply(ctx, integrations.ApplyRequest{Key: secret.New(newKey)})
			if err != nil || res.Changed {
				t.Fatalf("second Apply: %+v, %v; want unchanged", res, err)
			}
			st2, _ := os.Stat(path)
			if !os.SameFile(st1, st2) || !st1.ModTime().Equal(st2.ModTime()) {
				t.Errorf("second Apply replaced the file")
			}
			if n := runs(t, dir); n != 1 {
				t.Errorf("reload ran %d times after the second Apply, want 1", n)
			}
			if names := dirNames(t, dir); !slices.Equal(names, []string{"count", "dump", "reload-0.sh", "target"}) {
				t.Errorf("directory holds %v", names)
			}

			dump, _ := os.ReadFile(filepath.Join(dir, "dump"))
			leakcheck.Assert(t, "reload argv, environment and stdin", dump, oldKey, newKey)
			for _, token := range []string{"VAULT_TOKEN", "SLACK_BOT_TOKEN", "GITHUB_TOKEN", "REKEY_TEST_KEY", "vault-token", "slack-token", "github-token"} {
				if strings.Contains(string(dump), token) {
					t.Errorf("reload environment holds %s", token)
				}
			}
			if !strings.Contains(string(dump), "PATH=") {
				t.Errorf("reload environment has no PATH:\n%s", dump)
			}
		})
	}
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

func TestApplyMode(t *testing.T) {
	for _, tc := range []struct {
		name string
		mode any
		want fs.FileMode
	}{
		{"kept", nil, 0o644},
		{"set", "0600", 0o600},
		{"set without leading zero", "640", 0o640},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := randomKey(t)
			path := filepath.Join(t.TempDir(), "key")
			writeFile(t, path, "old\n", 0o644)
			settings := map[string]any{"path": path, "format": "raw"}
			if tc.mode != nil {
				settings["mode"] = tc.mode
			}
			f := newFile(t, env(), settings)
			if _, err := f.Apply(context.Background(), integrations.ApplyRequest{Key: secret.New(key)}); err != nil {
				t.Fatal(err)
			}
			st, _ := os.Stat(path)
			if st.Mode() != tc.want {
				t.Errorf("mode %v, want %v", st.Mode(), tc.want)
			}
		})
	}
}

// failIntact checks that Apply failed with class, left the file as it was
// and left no temporary file beside it.
func failIntact(t *testing.T, f *File, dir, before string, class error, keys ...string) {
	t.Helper()
	_, err := f.Apply(context.Background(), integrations.ApplyRequest{Key: secret.New(keys[len(keys)-1])})
	if err == nil {
		t.Fatal("Apply succeeded")
	}
	leakFree(t, "Apply error", err.Error(), keys...)
	if !errors.Is(err, class) {
		t.Errorf("error %v, want %v", err, class)
	}
	if !strings.Contains(err.Error(), f.path) {
		t.Errorf("error %q does not name the file", err)
	}
	got, rerr := os.ReadFile(f.path)
	if rerr != nil || string(got) != before {
		t.Errorf("file after a failed Apply: %q, %v", got, rerr)
	}
	for _, n := range dirNames(t, dir) {
		if strings.Contains(n, ".rekey-") {
			t.Errorf("temporary file %s left behind", n)
		}
	}
}

func TestApplyReadOnlyDirectory(t *testing.T) {
	oldKey, newKey := randomKey(t), randomKey(t)
	before := "KEY=" + oldKey + "\n"
	var dir string
	if os.Geteuid() == 0 {
		// A read-only directory does not stop root; a read-only file system does.
		dir = tmpfs(t, "size=1m")
		writeFile(t, filepath.Join(dir, ".env"), before, 0o600)
		remountReadOnly(t, dir)
	} else {
		dir = t.TempDir()
		writeFile(t, filepath.Join(dir, ".env"), before, 0o600)
		os.Chmod(dir, 0o555)
		t.Cleanup(func() { os.Chmod(dir, 0o755) })
	}
	f := newFile(t, env(), map[string]any{"path": filepath.Join(dir, ".env"), "format": "dotenv", "field": "KEY"})
	failIntact(t, f, dir, before, failure.ErrUnauthorized, oldKey, newKey)
}

func TestApplyDiskFull(t *testing.T) {
	dir := tmpfs(t, "size=16k")
	oldKey, newKey := randomKey(t), randomKey(t)
	before := "{\"api_key\": \"" + oldKey + "\"}\n"
	writeFile(t, filepath.Join(dir, "app.json"), before, 0o600)
	filler, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := filler.Write(make([]byte, 512)); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	filler.Close()
	f := newFile(t, env(), map[string]any{"path": filepath.Join(dir, "app.json"), "format": "json", "field": "api_key"})
	failIntact(t, f, dir, before, failure.ErrInvalid, oldKey, newKey)
}

func TestApplyReloadClasses(t *testing.T) {
	for _, tc := range []struct {
		code  int
		class error
	}{
		{1, failure.ErrInvalid},
		{75, failure.ErrTransient},
		{77, failure.ErrUnauthorized},
	} {
		t.Run(fmt.Sprint(tc.code), func(t *testing.T) {
			oldKey, newKey := randomKey(t), randomKey(t)
			dir := t.TempDir()
			path := filepath.Join(dir, ".env")
			before := "KEY=" + oldKey + "\n"
			writeFile(t, path, before, 0o640)
			failing := newFile(t, env(oldKey, newKey), map[string]any{"path": path, "format": "dotenv", "field": "KEY", "reload": []string{reloadScript(t, dir, tc.code)}})
			failIntact(t, failing, dir, before, tc.class, oldKey, newKey)
			if runs(t, dir) != 1 {
				t.Fatalf("reload ran %d times", runs(t, dir))
			}

			// The file was put back, so the next Apply writes and reloads again.
			working := newFile(t, env(oldKey, newKey), map[string]any{"path": path, "format": "dotenv", "field": "KEY", "reload": []string{reloadScript(t, dir, 0)}})
			res, err := working.Apply(context.Background(), integrations.ApplyRequest{Key: secret.New(newKey)})
			if err != nil || !res.Changed {
				t.Fatalf("Apply after the failure: %+v, %v", res, err)
			}
			if runs(t, dir) != 2 {
				t.Errorf("reload ran %d times, want 2", runs(t, dir))
			}
			dump, _ := os.ReadFile(filepath.Join(dir, "dump"))
			leakcheck.Assert(t, "reload dump", dump, oldKey, newKey)
		})
	}
}

func TestApplyReloadCancelled(t *testing.T) {
	oldKey, newKey := randomKey(t), randomKey(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "key")
	writeFile(t, path, oldKey+"\n", 0o600)
	f := newFile(t, env(), map[string]any{"path": path, "format": "raw", "reload": []string{"sleep", "30"}})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := f.Apply(ctx, integrations.ApplyRequest{Key: secret.New(newKey)})
	if !errors.Is(err, context.DeadlineExceeded) || !failure.IsTransient(err) {
		t.Fatalf("error %v, want a transient deadline", err)
	}
	leakFree(t, "Apply error", err.Error(), oldKey, newKey)
	if got, _ := os.ReadFile(path); string(got) != oldKey+"\n" {
		t.Errorf("file not put back after a cancelled reload")
	}
}

func TestApplyErrors(t *testing.T) {
	oldKey, newKey := randomKey(t), randomKey(t)
	dir := t.TempDir()
	for _, tc := range []struct {
		name, format, field, content string
		noFile                       bool
		class                        error
		mention                      []string
	}{
		{name: "missing file", format: "dotenv", field: "KEY", noFile: true, class: failure.ErrNotFound},
		{name: "missing json field", format: "json", field: "actionnetwork.api_key", content: `{"actionnetwork": {}}`, class: failure.ErrInvalid, mention: []string{"actionnetwork.api_key", "not found"}},
		{name: "missing yaml field", format: "yaml", field: "a.b", content: "a: {c: OLD}\n", class: failure.ErrInvalid, mention: []string{"a.b"}},
		{name: "bad json", format: "json", field: "k", content: `{"k": "OLD",}`, class: failure.ErrInvalid, mention: []string{"not valid JSON"}},
		{name: "bad yaml", format: "yaml", field: "k", content: "k: [OLD\n", class: failure.ErrInvalid, mention: []string{"not valid YAML"}},
		{name: "json number", format: "json", field: "k", content: `{"k": 1}`, class: failure.ErrInvalid, mention: []string{"not a string"}},
		{name: "a directory", format: "raw", content: "dir", class: failure.ErrInvalid, mention: []string{"not a regular file"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-"))
			switch {
			case tc.noFile:
			case tc.content == "dir":
				os.Mkdir(path, 0o755)
			default:
				writeFile(t, path, strings.ReplaceAll(tc.content, "OLD", oldKey), 0o600)
			}
			settings := map[string]any{"path": path, "format": tc.format}
			if tc.field != "" {
				settings["field"] = tc.field
			}
			f := newFile(t, env(), settings)
			_, err := f.Apply(context.Background(), integrations.ApplyRequest{Key: secret.New(newKey)})
			if !errors.Is(err, tc.class) {
				t.Fatalf("Apply error %v, want %v", err, tc.class)
			}
			leakFree(t, "Apply error", err.Error(), oldKey, newKey)
			for _, m := range append(tc.mention, path) {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not say %q", err, m)
				}
			}
			_, err = f.Read(context.Background())
			if err == nil {
				t.Fatal("Read succeeded")
			}
			leakFree(t, "Read error", err.Error(), oldKey, newKey)
		})
	}
}

func TestReadMissing(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, format, field, content string
		class                        error
	}{
		{"no file", "raw", "", "", failure.ErrNotFound},
		{"empty raw file", "raw", "", "\n", failure.ErrNotFound},
		{"dotenv variable missing", "dotenv", "KEY", "A=1\n", failure.ErrNotFound},
		{"dotenv variable empty", "dotenv", "KEY", "KEY=\n", failure.ErrNotFound},
		{"json field missing", "json", "a.k", `{"a": {}}`, failure.ErrNotFound},
		{"json null", "json", "k", `{"k": null}`, failure.ErrNotFound},
		{"yaml null", "yaml", "k", "k: ~\n", failure.ErrNotFound},
		{"yaml list", "yaml", "k", "k: [1]\n", failure.ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-"))
			if tc.name != "no file" {
				writeFile(t, path, tc.content, 0o600)
			}
			settings := map[string]any{"path": path, "format": tc.format}
			if tc.field != "" {
				settings["field"] = tc.field
			}
			_, err := newFile(t, env(), settings).Read(context.Background())
			if !errors.Is(err, tc.class) {
				t.Fatalf("Read error %v, want %v", err, tc.class)
			}
		})
	}
}

func TestApplyAppendsMissingDotenvVariable(t *testing.T) {
	key := randomKey(t)
	path := filepath.Join(t.TempDir(), ".env")
	writeFile(t, path, "export A=1", 0o600)
	f := newFile(t, env(), map[string]any{"path": path, "format": "dotenv", "field": "KEY"})
	if _, err := f.Apply(context.Background(), integrations.ApplyRequest{Key: secret.New(key)}); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); string(got) != "export A=1\nexport KEY="+key+"\n" {
		t.Errorf("file %q", got)
	}
}

func TestApplyFollowsSymlink(t *testing.T) {
	oldKey, newKey := randomKey(t), randomKey(t)
	dir := t.TempDir()
	target := filepath.Join(dir, "real.env")
	link := filepath.Join(dir, ".env")
	writeFile(t, target, "KEY="+oldKey+"\n", 0o600)
	if err := os.Symlink("real.env", link); err != nil {
		t.Fatal(err)
	}
	f := newFile(t, env(), map[string]any{"path": link, "format": "dotenv", "field": "KEY", "follow_symlinks": true})
	if _, err := f.Apply(context.Background(), integrations.ApplyRequest{Key: secret.New(newKey)}); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Lstat(link); err != nil || st.Mode()&fs.ModeSymlink == 0 {
		t.Errorf("the link was replaced: %v, %v", st, err)
	}
	if got, _ := os.ReadFile(target); string(got) != "KEY="+newKey+"\n" {
		t.Errorf("target holds %q", got)
	}
}

func TestApplyKeepsOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("giving a file to another user needs root")
	}
	newKey := randomKey(t)
	path := filepath.Join(t.TempDir(), ".env")
	writeFile(t, path, "KEY=old\n", 0o640)
	if err := os.Chown(path, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	f := newFile(t, env(), map[string]any{"path": path, "format": "dotenv", "field": "KEY"})
	if _, err := f.Apply(context.Background(), integrations.ApplyRequest{Key: secret.New(newKey)}); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(path)
	sys := st.Sys().(*syscall.Stat_t)
	if sys.Uid != 65534 || sys.Gid != 65534 || st.Mode() != 0o640 {
		t.Errorf("owner %d:%d mode %v, want 65534:65534 0640", sys.Uid, sys.Gid, st.Mode())
	}
}

func TestReplaceRefusesAChangedFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "key")
	writeFile(t, path, "old\n", 0o600)
	f := newFile(t, env(), map[string]any{"path": path, "format": "raw"})
	l, err := f.open(context.Background(), true)
	if err != nil {
		t.Fatal(err)
	}
	defer l.close()
	// Another writer replaces the file after rekey read it.
	writeFile(t, path+".new", "theirs\n", 0o600)
	os.Rename(path+".new", path)

	_, err = l.replace([]byte("ours\n"), 0o600, l.st)
	if !errors.Is(err, failure.ErrConflict) {
		t.Fatalf("error %v, want a conflict", err)
	}
	if got, _ := os.ReadFile(path); string(got) != "theirs\n" {
		t.Errorf("file holds %q", got)
	}
	if names := dirNames(t, dir); !slices.Equal(names, []string{"key"}) {
		t.Errorf("directory holds %v", names)
	}
}

func TestApplyHonoursContext(t *testing.T) {
	key := randomKey(t)
	path := filepath.Join(t.TempDir(), "key")
	writeFile(t, path, "old\n", 0o600)
	f := newFile(t, env(), map[string]any{"path": path, "format": "raw"})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := f.Apply(ctx, integrations.ApplyRequest{Key: secret.New(key)}); !errors.Is(err, context.Canceled) {
		t.Errorf("Apply error %v, want cancelled", err)
	}
	if _, err := f.Read(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Read error %v, want cancelled", err)
	}
	if got, _ := os.ReadFile(path); string(got) != "old\n" {
		t.Errorf("file changed")
	}
}

func TestApplyRefusesBadKeys(t *testing.T) {
	path := filepath.Join(t.TempDir(), ".env")
	writeFile(t, path, "KEY=old\n", 0o600)
	f := newFile(t, env(), map[string]any{"path": path, "format": "dotenv", "field": "KEY"})
	for _, k := range []string{"", "two\nlines"} {
		_, err := f.Apply(context.Background(), integrations.ApplyRequest{Key: secret.New(k)})
		if !errors.Is(err, failure.ErrInvalid) {
			t.Errorf("Apply(%v) error %v, want invalid", secret.New(k), err)
		}
		if err != nil {
			leakFree(t, "Apply error", err.Error(), "two\nlines")
		}
	}
}

func TestNew(t *testing.T) {
	for _, tc := range []struct {
		name     string
		settings map[string]any
		field    string // the field the error names; "" for no error
	}{
		{"dotenv", map[string]any{"path": "/srv/.env", "format": "dotenv", "field": "KEY", "reload": []string{"systemctl", "reload", "site"}, "mode": "0600"}, ""},
		{"raw", map[string]any{"path": "key.txt", "format": "raw"}, ""},
		{"no path", map[string]any{"format": "raw"}, "path"},
		{"no format", map[string]any{"path": "/x"}, "format"},
		{"unknown format", map[string]any{"path": "/x", "format": "toml"}, "format"},
		{"raw with field", map[string]any{"path": "/x", "format": "raw", "field": "k"}, "field"},
		{"dotenv without field", map[string]any{"path": "/x", "format": "dotenv"}, "field"},
		{"bad variable name", map[string]any{"path": "/x", "format": "dotenv", "field": "A B"}, "field"},
		{"json without field", map[string]any{"path": "/x", "format": "json"}, "field"},
		{"empty path step", map[string]any{"path": "/x", "format": "yaml", "field": "a..b"}, "field"},
		{"empty reload", map[string]any{"path": "/x", "format": "raw", "reload": []string{}}, "reload"},
		{"reload not a list", map[string]any{"path": "/x", "format": "raw", "reload": "systemctl reload site"}, "reload"},
		{"mode as a number", map[string]any{"path": "/x", "format": "raw", "mode": 384}, "mode"},
		{"mode not octal", map[string]any{"path": "/x", "format": "raw", "mode": "0900"}, "mode"},
		{"mode too wide", map[string]any{"path": "/x", "format": "raw", "mode": "07777"}, "mode"},
		{"unknown field", map[string]any{"path": "/x", "format": "raw", "owner_env": "X"}, "owner_env"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := config.Integration{ID: "site-env", Key: "k", Type: Type, Settings: tc.settings}
			cfg := &config.Config{File: "/etc/rekey/rekey.yaml", Integrations: []config.Integration{in}}
			integ, err := New(integrations.Host{Config: cfg}, in)
			if tc.field == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				if integ.ID() != "site-env" {
					t.Errorf("ID %q", integ.ID())
				}
				if _, ok := integ.(integrations.Reader); !ok {
					t.Errorf("a file integration is not a Reader")
				}
				return
			}
			var ce *config.Error
			if !errors.As(err, &ce) {
				t.Fatalf("error %v (%T), want a *config.Error", err, err)
			}
			if ce.Field != tc.field || ce.File != cfg.File || !strings.Contains(ce.Item, "site-env") {
				t.Errorf("error names %q %q %q, want field %q", ce.File, ce.Item, ce.Field, tc.field)
			}
		})
	}
}

func TestNewRelativePath(t *testing.T) {
	in := config.Integration{ID: "k", Key: "k", Type: Type, Settings: map[string]any{"path": "secrets/key", "format": "raw"}}
	cfg := &config.Config{File: "/etc/rekey/rekey.yaml", Integrations: []config.Integration{in}}
	integ, err := New(integrations.Host{Config: cfg}, in)
	if err != nil {
		t.Fatal(err)
	}
	if p := integ.(*File).path; p != "/etc/rekey/secrets/key" {
		t.Errorf("path %q, want it beside the configuration", p)
	}
}

func TestObserve(t *testing.T) {
	oldKey, newKey := randomKey(t), randomKey(t)
	path := filepath.Join(t.TempDir(), ".env")
	writeFile(t, path, "KEY="+oldKey+"\n", 0o600)
	f := newFile(t, env(), map[string]any{"path": path, "format": "dotenv", "field": "KEY"})
	want := integrations.Expect{
		Current: secret.New(newKey).Fingerprint(),
		Versions: map[string]integrations.VersionState{
			secret.New(newKey).Fingerprint(): integrations.VersionCurrent,
			secret.New(oldKey).Fingerprint(): integrations.VersionSuperseded,
		},
	}
	ctx := context.Background()
	if s := integrations.Observe(ctx, f, want); s.State != state.Stale {
		t.Errorf("before Apply: %+v, want stale", s)
	}
	if _, err := f.Apply(ctx, integrations.ApplyRequest{Key: secret.New(newKey)}); err != nil {
		t.Fatal(err)
	}
	s := integrations.Observe(ctx, f, want)
	if s.State != state.Current {
		t.Errorf("after Apply: %+v, want current", s)
	}
	leakFree(t, "status", fmt.Sprintf("%+v", s), oldKey, newKey)
	os.Remove(path)
	if s := integrations.Observe(ctx, f, want); s.State != state.Failing {
		t.Errorf("file gone: %+v, want failing", s)
	}
}

func TestStaleTempFilesAreSwept(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, ".env")
	if err := os.WriteFile(p, []byte("K=old-key-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(dir, "..env.rekey-12345") // as createTemp names them
	fresh := filepath.Join(dir, "..env.rekey-67890")
	other := filepath.Join(dir, ".other.rekey-1")
	for _, f := range []string{stale, fresh, other} {
		if err := os.WriteFile(f, []byte("K=old-key-0123456789\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	long := time.Now().Add(-time.Hour)
	os.Chtimes(stale, long, long)
	os.Chtimes(other, long, long)
	d, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	sweepTemps(int(d.Fd()), ".env")
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Error("a temporary file left an hour ago is still there")
	}
	for _, f := range []string{fresh, other} {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("%s was removed: %v", filepath.Base(f), err)
		}
	}
}
