//go:build unix

package file

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/integrations"
	"github.com/rekey-dev/rekey/internal/leakcheck"
)

// preflightOf returns f's Preflight, failing the test when File is none.
func preflightOf(t *testing.T, in integrations.Integration) func(context.Context) error {
	t.Helper()
	pf, ok := in.(integrations.Preflighter)
	if !ok {
		t.Fatalf("%T is not an integrations.Preflighter", in)
	}
	return pf.Preflight
}

// snapshot is what a preflight must leave as it was: the directory's
// names and, for each, its content, inode and time.
func snapshot(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	for _, n := range dirNames(t, dir) {
		p := filepath.Join(dir, n)
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		fmt.Fprintf(&b, "%s %v %d %d:%d %s", n, fi.Mode(), st.Ino, st.Uid, st.Gid, fi.ModTime())
		if fi.Mode().IsRegular() {
			c, _ := os.ReadFile(p)
			fmt.Fprintf(&b, " %q", c)
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// Preflight of a local file proves what a write needs and writes nothing:
// each case a file that Apply would write (nil) or one it would fail on,
// with the class and the words that say what is wrong.
func TestPreflightLocal(t *testing.T) {
	key := randomKey(t)
	for _, tc := range []struct {
		name     string
		content  string // @K stands for the key
		settings map[string]any
		setup    func(t *testing.T, dir string) // after the file is written
		class    error                          // nil: ready
		says     []string
	}{
		{name: "dotenv with reload", content: "A=1\nKEY=@K\n", settings: map[string]any{"format": "dotenv", "field": "KEY", "reload": []string{"RELOAD"}}},
		{name: "json with mode", content: `{"an": {"key": "@K"}}`, settings: map[string]any{"format": "json", "field": "an.key", "mode": "0600"}},
		{name: "yaml", content: "an:\n  key: @K\n", settings: map[string]any{"format": "yaml", "field": "an.key"}},
		{name: "raw", content: "@K\n", settings: map[string]any{"format": "raw"}},
		{name: "dotenv variable missing, appended", content: "A=1\n", settings: map[string]any{"format": "dotenv", "field": "KEY"}},
		{name: "reload with PATH lookup", content: "KEY=@K\n", settings: map[string]any{"format": "dotenv", "field": "KEY", "reload": []string{"true"}}},

		{name: "missing file", settings: map[string]any{"format": "dotenv", "field": "KEY"},
			setup: func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, "target")) },
			class: failure.ErrNotFound, says: []string{"target"}},
		{name: "symbolic link", content: "KEY=@K\n", settings: map[string]any{"format": "dotenv", "field": "KEY"},
			setup: func(t *testing.T, dir string) {
				os.Rename(filepath.Join(dir, "target"), filepath.Join(dir, "real"))
				os.Symlink("real", filepath.Join(dir, "target"))
			},
			class: failure.ErrUnauthorized, says: []string{"symbolic link", "follow_symlinks"}},
		{name: "FIFO", settings: map[string]any{"format": "dotenv", "field": "KEY"},
			setup: func(t *testing.T, dir string) {
				os.Remove(filepath.Join(dir, "target"))
				syscall.Mkfifo(filepath.Join(dir, "target"), 0o600)
			},
			class: failure.ErrInvalid, says: []string{"not a regular file", "FIFO"}},
		{name: "json field missing", content: `{"an": {}, "other": "@K"}`, settings: map[string]any{"format": "json", "field": "an.key"},
			class: failure.ErrInvalid, says: []string{"an.key", "not found"}},
		{name: "yaml block scalar", content: "an:\n  key: |\n    @K\n", settings: map[string]any{"format": "yaml", "field": "an.key"},
			class: failure.ErrInvalid, says: []string{"an.key", "block scalar"}},
		{name: "dotenv quote never closed", content: "A='x\nKEY=@K\n", settings: map[string]any{"format": "dotenv", "field": "KEY"},
			class: failure.ErrInvalid, says: []string{"quote never closed"}},
		{name: "reload not found", content: "KEY=@K\n", settings: map[string]any{"format": "dotenv", "field": "KEY", "reload": []string{"/nonexistent/reload-site", "now"}},
			class: failure.ErrInvalid, says: []string{"reload", "/nonexistent/reload-site not found"}},
		{name: "reload not in PATH", content: "KEY=@K\n", settings: map[string]any{"format": "dotenv", "field": "KEY", "reload": []string{"rekey-no-such-reload"}},
			class: failure.ErrInvalid, says: []string{"reload", `"rekey-no-such-reload" not found in PATH`}},
		{name: "reload not executable", content: "KEY=@K\n", settings: map[string]any{"format": "dotenv", "field": "KEY", "reload": []string{"NOEXEC"}},
			class: failure.ErrUnauthorized, says: []string{"reload", "not executable"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "target")
			writeFile(t, path, strings.ReplaceAll(tc.content, "@K", key), 0o640)
			tools := t.TempDir()
			writeFile(t, filepath.Join(tools, "reload.sh"), "#!/bin/sh\nexit 0\n", 0o755)
			writeFile(t, filepath.Join(tools, "noexec.sh"), "#!/bin/sh\nexit 0\n", 0o644)
			settings := map[string]any{"path": path}
			for k, v := range tc.settings {
				if argv, ok := v.([]string); ok {
					argv = slices.Clone(argv)
					for i, a := range argv {
						argv[i] = strings.NewReplacer("RELOAD", filepath.Join(tools, "reload.sh"), "NOEXEC", filepath.Join(tools, "noexec.sh")).Replace(a)
					}
					v = argv
				}
				settings[k] = v
			}
			if tc.setup != nil {
				tc.setup(t, dir)
			}
			f := newFile(t, env(), settings)
			before := snapshot(t, dir)
			err := preflightOf(t, f)(context.Background())
			if after := snapshot(t, dir); after != before {
				t.Errorf("the preflight changed the directory:\nbefore:\n%safter:\n%s", before, after)
			}
			if tc.class == nil {
				if err != nil {
					t.Fatalf("Preflight: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Preflight passed, want %v", tc.class)
			}
			leakcheck.Assert(t, "Preflight error", []byte(err.Error()), key)
			if !errors.Is(err, tc.class) || !strings.Contains(err.Error(), path) {
				t.Errorf("error %q: want %v naming %s", err, tc.class, path)
			}
			for _, s := range tc.says {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not say %q", err, s)
				}
			}
		})
	}
}

// A file on a read-only file system: root may write anywhere else, so
// only the preflight's probe beside the file finds it.
func TestPreflightReadOnlyFileSystem(t *testing.T) {
	dir := tmpfs(t, "size=1m")
	key := randomKey(t)
	path := filepath.Join(dir, ".env")
	writeFile(t, path, "KEY="+key+"\n", 0o600)
	remountReadOnly(t, dir)
	f := newFile(t, env(), map[string]any{"path": path, "format": "dotenv", "field": "KEY"})
	err := preflightOf(t, f)(context.Background())
	if err == nil {
		t.Fatal("Preflight passed on a read-only file system")
	}
	leakcheck.Assert(t, "Preflight error", []byte(err.Error()), key)
	if !errors.Is(err, failure.ErrUnauthorized) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "read-only file system") {
		t.Errorf("error %q: want unauthorized naming %s and the read-only file system", err, path)
	}
}

// What a process that is not root meets: a directory it may not write,
// and a file whose owner it cannot give the new copy. The preflight runs
// in a copy of this test binary started as nobody.
func TestPreflightAsAnotherUser(t *testing.T) {
	needRoot(t)
	key := randomKey(t)
	for _, tc := range []struct {
		name      string
		dirOwner  int // the file is owned by nobody unless fileOwner says
		fileOwner int
		says      string
	}{
		{"directory not writable", 0, nobody, "permission denied"},
		{"owner cannot be kept", nobody, 0, "owner"},
		{"ready", nobody, nobody, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			www, _ := hostileTree(t, "KEY="+key+"\n")
			path := filepath.Join(www, ".env")
			os.Chmod(path, 0o644)
			os.Chown(www, tc.dirOwner, tc.dirOwner)
			os.Chown(path, tc.fileOwner, tc.fileOwner)
			before := snapshot(t, www)
			class, msg := preflightAsNobody(t, map[string]any{"path": path, "format": "dotenv", "field": "KEY"})
			if after := snapshot(t, www); after != before {
				t.Errorf("the preflight changed the directory:\nbefore:\n%safter:\n%s", before, after)
			}
			leakcheck.Assert(t, "Preflight error", []byte(msg), key)
			if tc.says == "" {
				if class != "ok" {
					t.Fatalf("Preflight as nobody: %s: %s", class, msg)
				}
				return
			}
			if class != "unauthorized" || !strings.Contains(msg, path) || !strings.Contains(msg, tc.says) {
				t.Errorf("Preflight as nobody: %s: %q; want unauthorized naming %s, saying %q", class, msg, path, tc.says)
			}
		})
	}
}

// preflightAsNobody runs the preflight of a file integration with
// settings in a copy of this test binary started as user nobody, and
// returns the class of its error ("ok" for none) and its message.
func preflightAsNobody(t *testing.T, settings map[string]any) (class, msg string) {
	t.Helper()
	bin := filepath.Join(filepath.Dir(filepath.Dir(settings["path"].(string))), "file.test")
	src, err := os.Open(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(bin, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	dst.Close()
	js, _ := json.Marshal(settings)
	cmd := exec.Command(bin, "-test.run=^TestPreflightChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), "REKEY_PREFLIGHT_CHILD="+string(js), "TMPDIR=/tmp", "HOME=/")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	out, err := cmd.CombinedOutput()
	for _, line := range strings.Split(string(out), "\n") {
		if rest, ok := strings.CutPrefix(line, "PREFLIGHT "); ok {
			class, msg, _ = strings.Cut(rest, " ")
			return class, msg
		}
	}
	t.Fatalf("the child printed no result (%v):\n%s", err, out)
	return "", ""
}

// TestPreflightChild is the child of preflightAsNobody.
func TestPreflightChild(t *testing.T) {
	js := os.Getenv("REKEY_PREFLIGHT_CHILD")
	if js == "" {
		t.Skip("the child of TestPreflightAsAnotherUser")
	}
	if os.Geteuid() != nobody {
		t.Fatalf("running as uid %d, not nobody", os.Geteuid())
	}
	var settings map[string]any
	if err := json.Unmarshal([]byte(js), &settings); err != nil {
		t.Fatal(err)
	}
	err := preflightOf(t, newFile(t, env(), settings))(context.Background())
	class := "ok"
	switch {
	case err == nil:
	case errors.Is(err, failure.ErrUnauthorized):
		class = "unauthorized"
	case errors.Is(err, failure.ErrInvalid):
		class = "invalid"
	case errors.Is(err, failure.ErrNotFound):
		class = "notfound"
	default:
		class = "other"
	}
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	fmt.Printf("PREFLIGHT %s %s\n", class, strings.ReplaceAll(msg, "\n", " "))
}
