package scan

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/rekey-dev/rekey/internal/leakcheck"
)

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Skipf("symlinks not available: %v", err)
	}
}

// tree builds a directory with copies of the keys in many places, and one
// outside it that must stay unseen. It returns the root and the outside
// directory.
func tree(t *testing.T) (string, string) {
	t.Helper()
	base := t.TempDir()
	root := filepath.Join(base, "srv")
	outside := filepath.Join(base, "elsewhere")
	write(t, filepath.Join(outside, "copy.txt"), keyCur+"\n")
	write(t, filepath.Join(outside, "sub", "more.txt"), keyLeak+"\n")

	write(t, filepath.Join(root, "www", ".env"), "# site\nDEBUG=0\nACTION_NETWORK_API_KEY="+keyLeak+"\n")
	write(t, filepath.Join(root, "www", "config.json"), "{\n  \"an\": {\"key\": \""+keyOld+"\"}\n}\n")
	write(t, filepath.Join(root, "k8s", "secret.yaml"), "kind: Secret\ndata:\n  key: "+
		base64.StdEncoding.EncodeToString([]byte(keyCur))+"\n  env: "+
		base64.URLEncoding.EncodeToString([]byte("X="+keyOld+"\n"))+"\n")
	write(t, filepath.Join(root, "repo", ".git", "config"), "[remote \"origin\"]\n\turl = https://"+keyLeak+"@git.example/x\n")
	write(t, filepath.Join(root, "clean.txt"), strings.Repeat("nothing to see\n", 100))
	write(t, filepath.Join(root, "image.png"), "\x89PNG\r\n\x1a\n\x00\x00"+keyCur)
	write(t, filepath.Join(root, "late-nul.log"), strings.Repeat("a", sniffLen)+"\x00\n"+keyCur+"\n")
	write(t, filepath.Join(root, "big.log"), strings.Repeat("log line\n", 2000)+keyCur)

	symlink(t, filepath.Join(outside, "copy.txt"), filepath.Join(root, "out-file"))
	symlink(t, outside, filepath.Join(root, "out-dir"))
	symlink(t, filepath.Join(root, "www", ".env"), filepath.Join(root, "alias.env")) // inside: not twice
	symlink(t, "..", filepath.Join(root, "www", "up"))                               // dir loop
	symlink(t, "loop-b", filepath.Join(root, "loop-a"))
	symlink(t, "loop-a", filepath.Join(root, "loop-b"))
	symlink(t, "nowhere", filepath.Join(root, "dangling"))
	return root, outside
}

func TestScanTree(t *testing.T) {
	root, _ := tree(t)
	var logs bytes.Buffer
	res, err := Scan(context.Background(), []string{root}, testNeedles(), Options{
		MaxFileSize: 10000,
		Logger:      slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	n := testNeedles()
	p := func(rel string) string { return filepath.Join(root, rel) }
	f := func(rel string, line, needle int, enc string) Finding {
		return Finding{Path: p(rel), Line: line, Needle: needle, Label: n[needle].Label, State: n[needle].State, Encoding: enc}
	}
	wantFindings := []Finding{
		f("k8s/secret.yaml", 3, 0, EncodingBase64),
		f("k8s/secret.yaml", 4, 1, EncodingBase64),
		f("late-nul.log", 2, 0, EncodingRaw),
		f("repo/.git/config", 2, 2, EncodingRaw),
		f("www/.env", 3, 2, EncodingRaw),
		f("www/config.json", 2, 1, EncodingRaw),
	}
	if !reflect.DeepEqual(res.Findings, wantFindings) {
		t.Errorf("findings:\n got %+v\nwant %+v", res.Findings, wantFindings)
	}
	wantSkipped := []Skipped{
		{p("big.log"), ReasonTooLarge, fmt.Sprintf("%d bytes, limit 10000", 2000*9+len(keyCur))},
		{p("dangling"), ReasonSymlinkDangling, "no such file or directory"},
		{p("image.png"), ReasonBinary, ""},
		{p("loop-a"), ReasonSymlinkDangling, "too many links"},
		{p("loop-b"), ReasonSymlinkDangling, "too many links"},
		{p("out-dir"), ReasonSymlinkOutside, ""},
		{p("out-file"), ReasonSymlinkOutside, ""},
	}
	if !reflect.DeepEqual(res.Skipped, wantSkipped) {
		t.Errorf("skipped:\n got %+v\nwant %+v", res.Skipped, wantSkipped)
	}
	if res.Files != 6 {
		t.Errorf("files = %d, want 6", res.Files)
	}
	if res.Bytes <= 0 {
		t.Errorf("bytes = %d", res.Bytes)
	}
	j, _ := json.Marshal(res)
	leakcheck.Assert(t, "result", fmt.Appendf(j, "%#v", res), allKeys...)
	leakcheck.Assert(t, "log", logs.Bytes(), allKeys...)
	if !strings.Contains(logs.String(), "too many links") {
		t.Errorf("debug log says nothing of the loop:\n%s", logs.String())
	}
}

func TestScanWorkersAndChunksAgree(t *testing.T) {
	root, _ := tree(t)
	want, err := Scan(context.Background(), []string{root}, testNeedles(), Options{Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(want.Findings) != 7 { // big.log is scanned under the default limit
		t.Fatalf("%d findings: %+v", len(want.Findings), want.Findings)
	}
	for _, o := range []Options{{Workers: 4}, {Workers: 16, chunkSize: 1}, {Workers: 2, chunkSize: 7}, {Workers: 3, chunkSize: 100}} {
		got, err := Scan(context.Background(), []string{root}, testNeedles(), o)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("workers %d, chunk %d:\n got %+v\nwant %+v", o.Workers, o.chunkSize, got, want)
		}
	}
}

func TestScanRoots(t *testing.T) {
	root, outside := tree(t)
	ctx := context.Background()
	scan := func(roots ...string) Result {
		t.Helper()
		res, err := Scan(ctx, roots, testNeedles(), Options{})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	paths := func(r Result) []string {
		var out []string
		for _, f := range r.Findings {
			out = append(out, f.Path)
		}
		return out
	}

	t.Run("a file", func(t *testing.T) {
		env := filepath.Join(root, "www", ".env")
		if got := paths(scan(env)); !reflect.DeepEqual(got, []string{env}) {
			t.Errorf("got %v", got)
		}
	})
	t.Run("a symlink to a directory, reported under its name", func(t *testing.T) {
		link := filepath.Join(t.TempDir(), "site")
		symlink(t, filepath.Join(root, "www"), link)
		want := []string{filepath.Join(link, ".env"), filepath.Join(link, "config.json")}
		if got := paths(scan(link)); !reflect.DeepEqual(got, want) {
			t.Errorf("got %v, want %v", got, want)
		}
	})
	t.Run("nested roots read once", func(t *testing.T) {
		a, b := scan(root), scan(filepath.Join(root, "www"), root, root+"/")
		if !reflect.DeepEqual(a, b) {
			t.Errorf("got %+v, want %+v", b, a)
		}
	})
	t.Run("a second root makes its symlinks inside", func(t *testing.T) {
		res := scan(root, outside)
		for _, s := range res.Skipped {
			if s.Reason == ReasonSymlinkOutside {
				t.Errorf("skipped %+v although its target is a root", s)
			}
		}
		want := []string{filepath.Join(outside, "copy.txt"), filepath.Join(outside, "sub", "more.txt")}
		if got := paths(res); !reflect.DeepEqual(got[:2], want) {
			t.Errorf("got %v", got)
		}
	})
	t.Run("a missing root is listed", func(t *testing.T) {
		missing := filepath.Join(root, "no-such-dir")
		res := scan(missing, filepath.Join(root, "www"))
		want := []Skipped{
			{missing, ReasonUnreadable, "no such file or directory"},
			{filepath.Join(root, "www", "up"), ReasonSymlinkOutside, ""}, // .. is outside www
		}
		if !reflect.DeepEqual(res.Skipped, want) || len(res.Findings) != 2 {
			t.Errorf("got %+v", res)
		}
	})
	t.Run("relative root", func(t *testing.T) {
		t.Chdir(root)
		want := []string{"www/.env", "www/config.json"}
		if got := paths(scan("www")); !reflect.DeepEqual(got, want) {
			t.Errorf("got %v, want %v", got, want)
		}
	})
}

func TestScanSpecialFiles(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no FIFOs")
	}
	root := t.TempDir()
	write(t, filepath.Join(root, "a.txt"), keyCur)
	if err := mkfifo(filepath.Join(root, "pipe")); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	res, err := Scan(context.Background(), []string{root}, testNeedles(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := []Skipped{{filepath.Join(root, "pipe"), ReasonNotRegular, ""}}
	if !reflect.DeepEqual(res.Skipped, want) || len(res.Findings) != 1 {
		t.Errorf("got %+v", res)
	}
	// A file replaced by a pipe between the walk and the open must not
	// block the scan.
	w := &worker{m: mustCompile(t, testNeedles()), opts: Options{}.withDefaults(), skip: func(p, r, d string) {
		want := Skipped{filepath.Join(root, "pipe"), ReasonNotRegular, ""}
		if got := (Skipped{p, r, d}); got != want {
			t.Errorf("skipped %+v, want %+v", got, want)
		}
	}}
	if _, _, ok := w.scanFile(context.Background(), job{filepath.Join(root, "pipe"), filepath.Join(root, "pipe")}); ok {
		t.Error("a pipe was read")
	}
}

func TestScanUnreadable(t *testing.T) {
	if runtime.GOOS == "windows" || os.Geteuid() == 0 {
		t.Skip("needs a user that file modes apply to")
	}
	root := t.TempDir()
	write(t, filepath.Join(root, "locked", "a.txt"), keyCur)
	write(t, filepath.Join(root, "secret.txt"), keyCur)
	for _, p := range []string{filepath.Join(root, "secret.txt"), filepath.Join(root, "locked")} {
		if err := os.Chmod(p, 0); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Chmod(p, 0o755) })
	}
	res, err := Scan(context.Background(), []string{root}, testNeedles(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := []Skipped{
		{filepath.Join(root, "locked"), ReasonUnreadable, "permission denied"},
		{filepath.Join(root, "secret.txt"), ReasonUnreadable, "permission denied"},
	}
	if !reflect.DeepEqual(res.Skipped, want) {
		t.Errorf("got %+v, want %+v", res.Skipped, want)
	}
}

func TestScanHonoursContext(t *testing.T) {
	root, _ := tree(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res, err := Scan(ctx, []string{root}, testNeedles(), Options{})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if len(res.Findings) != 0 || res.Files != 0 {
		t.Errorf("scanned after cancel: %+v", res)
	}

	// Cancelled half way: a logger that cancels on the first skip.
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	for i := range 200 {
		write(t, filepath.Join(root, "many", fmt.Sprintf("%03d.txt", i)), keyCur)
	}
	log := slog.New(cancelHandler{cancel})
	res, err = Scan(ctx, []string{root}, testNeedles(), Options{Workers: 1, Logger: log})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if res.Files >= 200 {
		t.Errorf("read %d files after cancel", res.Files)
	}
}

type cancelHandler struct{ cancel context.CancelFunc }

func (h cancelHandler) Enabled(context.Context, slog.Level) bool  { return true }
func (h cancelHandler) Handle(context.Context, slog.Record) error { h.cancel(); return nil }
func (h cancelHandler) WithAttrs([]slog.Attr) slog.Handler        { return h }
func (h cancelHandler) WithGroup(string) slog.Handler             { return h }

func TestScanRefusesBadNeedles(t *testing.T) {
	_, err := Scan(context.Background(), []string{t.TempDir()}, nil, Options{})
	if err == nil {
		t.Fatal("no error without needles")
	}
}
