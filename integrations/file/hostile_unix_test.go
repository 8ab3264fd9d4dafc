//go:build unix

package file

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/integrations"
	"github.com/rekey-dev/rekey/internal/leakcheck"
	"github.com/rekey-dev/rekey/secret"
	"github.com/rekey-dev/rekey/state"
)

// nobody is the unprivileged user the symlink tests act as.
const nobody = 65534

// needRoot skips a test that must give files to another user.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("acting as another user (nobody) needs root; run the tests as root to see it")
	}
}

// hostileTree makes, under a temporary directory that every user may
// traverse, www/ owned by nobody holding a .env owned by nobody, and
// rootonly/secret, a root-owned file in a directory only root may enter.
func hostileTree(t *testing.T, env string) (www, rootFile string) {
	t.Helper()
	base := t.TempDir()
	for _, d := range []string{base, filepath.Dir(base)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	www = filepath.Join(base, "www")
	if err := os.Mkdir(www, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(www, ".env"), env, 0o640)
	for _, p := range []string{www, filepath.Join(www, ".env")} {
		if err := os.Chown(p, nobody, nobody); err != nil {
			t.Fatal(err)
		}
	}
	root := filepath.Join(base, "rootonly")
	if err := os.Mkdir(root, 0o700); err != nil {
		t.Fatal(err)
	}
	rootFile = filepath.Join(root, "secret")
	writeFile(t, rootFile, "ROOT_ONLY=1\n", 0o600)
	return www, rootFile
}

// asNobody runs argv as user nobody, as another user on the machine would.
func asNobody(t *testing.T, argv ...string) {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("as nobody: %v: %v\n%s", argv, err, out)
	}
}

// unchanged checks that path still has the content, mode and time it had.
func unchanged(t *testing.T, path string, before os.FileInfo, content string) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil || string(got) != content {
		t.Errorf("%s now holds %q (%v), want %q", path, got, err, content)
	}
	now, err := os.Lstat(path)
	if err != nil || !os.SameFile(now, before) || now.Mode() != before.Mode() || !now.ModTime().Equal(before.ModTime()) {
		t.Errorf("%s was replaced or changed: %v", path, err)
	}
}

// A directory owned by nobody; after the preflight read, nobody swaps the
// .env for a symlink to a root-owned file. Rekey, running as root, must
// refuse, leave the root-owned file as it was, and say which path.
func TestSymlinkSwappedInByAnotherUserIsRefused(t *testing.T) {
	needRoot(t)
	for _, format := range []string{"dotenv", "raw"} {
		t.Run(format, func(t *testing.T) {
			oldKey, newKey := randomKey(t), randomKey(t)
			content := "KEY=" + oldKey + "\n"
			settings := map[string]any{"format": format}
			if format == "dotenv" {
				settings["field"] = "KEY"
			} else {
				content = oldKey + "\n"
			}
			www, rootFile := hostileTree(t, content)
			path := filepath.Join(www, ".env")
			settings["path"] = path
			f := newFile(t, env(), settings)
			ctx := context.Background()
			if held, err := f.Read(ctx); err != nil || !held.Equal(secret.New(oldKey)) {
				t.Fatalf("preflight read: %v", err)
			}
			before, _ := os.Lstat(rootFile)

			asNobody(t, "ln", "-sfn", rootFile, path)

			_, err := f.Apply(ctx, integrations.ApplyRequest{Key: secret.New(newKey)})
			if err == nil {
				t.Fatal("Apply wrote through a symlink another user swapped in")
			}
			leakcheck.Assert(t, "Apply error", []byte(err.Error()), oldKey, newKey)
			if !errors.Is(err, failure.ErrUnauthorized) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "symbolic link") {
				t.Errorf("error %q: want unauthorized, naming %s and the symbolic link", err, path)
			}
			unchanged(t, rootFile, before, "ROOT_ONLY=1\n")
			if fi, err := os.Lstat(path); err != nil || fi.Mode()&os.ModeSymlink == 0 {
				t.Errorf("the link itself was replaced: %v", err)
			}
			want := integrations.Expect{Current: secret.New(newKey).Fingerprint(), Versions: map[string]integrations.VersionState{secret.New(newKey).Fingerprint(): integrations.VersionCurrent}}
			st := integrations.Observe(ctx, f, want)
			if st.State == state.Current || !strings.Contains(st.Reason, path) {
				t.Errorf("state after the swap: %+v, want not current, naming %s", st, path)
			}
			leakcheck.Assert(t, "state", []byte(st.Reason), oldKey, newKey)
		})
	}
}

// With follow_symlinks, a link is followed only into the directory's own
// tree, to a regular file owned by the directory's owner.
func TestFollowSymlinksStaysInTheTree(t *testing.T) {
	needRoot(t)
	oldKey, newKey := randomKey(t), randomKey(t)
	for _, tc := range []struct {
		name   string
		link   func(www, rootFile string) string // the link's target
		prep   func(t *testing.T, www string)
		ok     bool
		reason string
	}{
		{name: "into a release directory", link: func(www, _ string) string { return "releases/1/.env" }, ok: true},
		{name: "absolute, inside the tree", link: func(www, _ string) string { return filepath.Join(www, "releases/1/.env") }, ok: true},
		{name: "to a root-owned file outside", link: func(_, rootFile string) string { return rootFile }, reason: "outside"},
		{name: "up and out", link: func(_, rootFile string) string { return "../rootonly/secret" }, reason: "outside"},
		{name: "up and back in", link: func(_, _ string) string { return "releases/../releases/1/.env" }, reason: "outside"},
		{
			name:   "to a root-owned file inside",
			link:   func(_, _ string) string { return "releases/1/.env" },
			prep:   func(t *testing.T, www string) { os.Chown(filepath.Join(www, "releases/1/.env"), 0, 0) },
			reason: "owned by",
		},
		{
			name:   "beside it, owned by root",
			link:   func(_, _ string) string { return "real.env" },
			prep:   func(t *testing.T, www string) { writeFile(t, filepath.Join(www, "real.env"), "KEY=x\n", 0o600) },
			reason: "owned by",
		},
		{
			name:   "through a directory that is a link",
			link:   func(_, _ string) string { return "current/.env" },
			prep:   func(t *testing.T, www string) { asNobody(t, "ln", "-s", "releases/1", filepath.Join(www, "current")) },
			reason: "symbolic link",
		},
		{
			name:   "to a link",
			link:   func(_, _ string) string { return "releases/1/link" },
			prep:   func(t *testing.T, www string) { asNobody(t, "ln", "-s", ".env", filepath.Join(www, "releases/1/link")) },
			reason: "symbolic link",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			www, rootFile := hostileTree(t, "")
			rel := filepath.Join(www, "releases/1")
			asNobody(t, "mkdir", "-p", rel)
			asNobody(t, "sh", "-c", "printf 'KEY=%s\\n' \"$1\" > \"$2\"", "sh", oldKey, filepath.Join(rel, ".env"))
			if tc.prep != nil {
				tc.prep(t, www)
			}
			path := filepath.Join(www, ".env")
			os.Remove(path)
			asNobody(t, "ln", "-s", tc.link(www, rootFile), path)
			rootBefore, _ := os.Lstat(rootFile)
			targetBefore, _ := os.ReadFile(filepath.Join(rel, ".env"))

			f := newFile(t, env(), map[string]any{"path": path, "format": "dotenv", "field": "KEY", "follow_symlinks": true})
			_, err := f.Apply(context.Background(), integrations.ApplyRequest{Key: secret.New(newKey)})
			unchanged(t, rootFile, rootBefore, "ROOT_ONLY=1\n")
			if tc.ok {
				if err != nil {
					t.Fatalf("Apply: %v", err)
				}
				if got, _ := os.ReadFile(filepath.Join(rel, ".env")); string(got) != "KEY="+newKey+"\n" {
					t.Errorf("target holds %q", got)
				}
				if fi, err := os.Lstat(path); err != nil || fi.Mode()&os.ModeSymlink == 0 {
					t.Errorf("the link was replaced")
				}
				return
			}
			if err == nil {
				t.Fatal("Apply followed the link")
			}
			leakcheck.Assert(t, "Apply error", []byte(err.Error()), oldKey, newKey)
			if !errors.Is(err, failure.ErrUnauthorized) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tc.reason) {
				t.Errorf("error %q: want unauthorized, naming %s, saying %q", err, path, tc.reason)
			}
			if got, _ := os.ReadFile(filepath.Join(rel, ".env")); !bytes.Equal(got, targetBefore) {
				t.Errorf("target changed to %q", got)
			}
		})
	}
}

func TestSymlinkRefusedWithoutFollow(t *testing.T) {
	oldKey, newKey := randomKey(t), randomKey(t)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "real.env"), "KEY="+oldKey+"\n", 0o600)
	if err := os.Symlink("real.env", filepath.Join(dir, ".env")); err != nil {
		t.Fatal(err)
	}
	f := newFile(t, env(), map[string]any{"path": filepath.Join(dir, ".env"), "format": "dotenv", "field": "KEY"})
	_, err := f.Apply(context.Background(), integrations.ApplyRequest{Key: secret.New(newKey)})
	if !errors.Is(err, failure.ErrUnauthorized) || !strings.Contains(err.Error(), "follow_symlinks") {
		t.Fatalf("Apply error %v: want unauthorized with a hint at follow_symlinks", err)
	}
	if _, err := f.Read(context.Background()); !errors.Is(err, failure.ErrUnauthorized) {
		t.Errorf("Read error %v, want unauthorized", err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "real.env")); string(got) != "KEY="+oldKey+"\n" {
		t.Errorf("target changed")
	}
}

// A FIFO (or a device) at the path must not hang Apply or Read: it is
// refused at once, whatever the context says.
func TestFIFOIsRefusedAtOnce(t *testing.T) {
	oldKey, newKey := randomKey(t), randomKey(t)
	dir := t.TempDir()
	fifo := filepath.Join(dir, ".env")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatalf("mkfifo: %v", err)
	}
	for _, path := range []string{fifo, "/dev/null"} {
		f := newFile(t, env(), map[string]any{"path": path, "format": "dotenv", "field": "KEY"})
		done := make(chan error, 2)
		go func() {
			_, err := f.Apply(context.Background(), integrations.ApplyRequest{Key: secret.New(newKey)})
			done <- err
			_, err = f.Read(context.Background())
			done <- err
		}()
		for _, what := range []string{"Apply", "Read"} {
			select {
			case err := <-done:
				if !errors.Is(err, failure.ErrInvalid) || !strings.Contains(err.Error(), "not a regular file") || !strings.Contains(err.Error(), path) {
					t.Errorf("%s on %s: error %v, want invalid: not a regular file", what, path, err)
				}
				if err != nil {
					leakcheck.Assert(t, what+" error", []byte(err.Error()), oldKey, newKey)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("%s on %s still blocked after 10s", what, path)
			}
		}
	}
}

// Two integrations writing two variables of one .env at once: both values
// land, every time.
func TestTwoIntegrationsOnOneFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, ".env")
	writeFile(t, path, "# site\nA_KEY=old-a\nB_KEY=old-b\n", 0o640)
	// b's reload fails on odd rounds, so it puts its file back while a may
	// be waiting to write: a's value must survive that too.
	fail := filepath.Join(dir, "fail")
	reload := filepath.Join(dir, "reload.sh")
	writeFile(t, reload, "#!/bin/sh\n[ -e "+fail+" ] && exit 1\nexit 0\n", 0o755)
	a := newFile(t, env(), map[string]any{"path": path, "format": "dotenv", "field": "A_KEY"})
	b := newFile(t, env(), map[string]any{"path": path, "format": "dotenv", "field": "B_KEY", "reload": []string{reload}})
	var keys []string
	for round := range 20 {
		ka, kb := randomKey(t), randomKey(t)
		keys = append(keys, ka, kb)
		bFails := round%2 == 1
		if bFails {
			writeFile(t, fail, "", 0o600)
		} else {
			os.Remove(fail)
		}
		var wg sync.WaitGroup
		var errA, errB error
		wg.Go(func() { _, errA = a.Apply(context.Background(), integrations.ApplyRequest{Key: secret.New(ka)}) })
		wg.Go(func() { _, errB = b.Apply(context.Background(), integrations.ApplyRequest{Key: secret.New(kb)}) })
		wg.Wait()
		if errA != nil {
			t.Fatalf("round %d: a: %v", round, errA)
		}
		if (errB != nil) != bFails {
			t.Fatalf("round %d: b: %v (its reload fails: %v)", round, errB, bFails)
		}
		if errB != nil {
			leakcheck.Assert(t, "b's error", []byte(errB.Error()), keys...)
		}
		content, _ := os.ReadFile(path)
		if v, err := readDotenv(content, "A_KEY"); err != nil || v != ka {
			t.Fatalf("round %d: A_KEY lost its update (b's reload fails: %v)", round, bFails)
		}
		v, err := readDotenv(content, "B_KEY")
		if !bFails && (err != nil || v != kb) {
			t.Fatalf("round %d: B_KEY lost its update", round)
		}
		if bFails && v == kb {
			t.Fatalf("round %d: B_KEY kept a value whose reload failed", round)
		}
		if !strings.HasPrefix(string(content), "# site\n") {
			t.Fatalf("round %d: the comment was lost", round)
		}
	}
	if names := dirNames(t, dir); len(names) != 2 && len(names) != 3 {
		t.Errorf("directory holds %v", names)
	}
}
