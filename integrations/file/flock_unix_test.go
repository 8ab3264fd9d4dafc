//go:build unix

package file

import (
	"context"
	"encoding/json"
	"fmt"
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
)

// flockChild is what TestFlockChild is told to do.
type flockChild struct {
	Path, Field, Reload, Start string
	Rounds                     int
}

// Two rekey processes rotating two keys whose integrations share one .env
// (each its own variable, each with a reload) at the same time: each
// process's read-rewrite-rename-reload runs while the other's does not
// (the reload finds no other reload running), every write succeeds, and
// each variable ends holding its process's last key. The processes are
// copies of this test binary (TestFlockChild).
func TestTwoProcessesOnOneFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, ".env")
	writeFile(t, path, "# site\nA_KEY=old-a\nB_KEY=old-b\n", 0o640)
	// The reload holds a directory for a moment: a reload that finds it
	// held ran while another process was between its read and its reload.
	reload := filepath.Join(dir, "reload.sh")
	writeFile(t, reload, "#!/bin/sh\nmkdir "+filepath.Join(dir, "inside")+" || exit 1\nsleep 0.02\nrmdir "+filepath.Join(dir, "inside")+"\n", 0o755)
	start := filepath.Join(dir, "start")

	type result struct {
		out []byte
		err error
	}
	results := map[string]*result{}
	var wg sync.WaitGroup
	for _, field := range []string{"A_KEY", "B_KEY"} {
		js, _ := json.Marshal(flockChild{Path: path, Field: field, Reload: reload, Start: start, Rounds: 15})
		cmd := exec.Command(os.Args[0], "-test.run=^TestFlockChild$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), "REKEY_FLOCK_CHILD="+string(js))
		r := &result{}
		results[field] = r
		wg.Go(func() { r.out, r.err = cmd.CombinedOutput() })
	}
	time.Sleep(200 * time.Millisecond) // both children waiting for start
	writeFile(t, start, "", 0o600)
	wg.Wait()

	content, _ := os.ReadFile(path)
	for field, r := range results {
		var last string
		for _, line := range strings.Split(string(r.out), "\n") {
			if v, ok := strings.CutPrefix(line, "LAST "); ok {
				last = v
			}
			if strings.HasPrefix(line, "ROUND ") && !strings.HasSuffix(line, " ok") {
				t.Errorf("%s: %s", field, line)
			}
		}
		if r.err != nil || last == "" {
			t.Fatalf("%s: the child failed (%v):\n%s", field, r.err, r.out)
		}
		v, err := readDotenv(content, field)
		if err != nil || secret.New(v).Fingerprint() != last {
			t.Errorf("%s holds %s (%v), want the last key its process wrote, %s", field, secret.New(v).Fingerprint(), err, last)
		}
	}
	if !strings.HasPrefix(string(content), "# site\n") {
		t.Errorf("the comment was lost: %q", content)
	}
	if names := dirNames(t, dir); len(names) != 3 {
		t.Errorf("directory holds %v", names)
	}
}

// TestFlockChild is one process of TestTwoProcessesOnOneFile: once the
// start file exists, it applies a fresh key to its variable Rounds times
// and prints each round's outcome and the last key's fingerprint.
func TestFlockChild(t *testing.T) {
	js := os.Getenv("REKEY_FLOCK_CHILD")
	if js == "" {
		t.Skip("a child of TestTwoProcessesOnOneFile")
	}
	var c flockChild
	if err := json.Unmarshal([]byte(js), &c); err != nil {
		t.Fatal(err)
	}
	f := newFile(t, env(), map[string]any{"path": c.Path, "format": "dotenv", "field": c.Field, "reload": []string{c.Reload}})
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		if _, err := os.Stat(c.Start); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("never started")
		}
	}
	var last secret.Key
	for round := range c.Rounds {
		k := secret.New(randomKey(t))
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		_, err := f.Apply(ctx, integrations.ApplyRequest{Key: k})
		cancel()
		if err != nil {
			leakcheck.Assert(t, "Apply error", []byte(err.Error()), k.Reveal())
			fmt.Printf("ROUND %d %s\n", round, strings.ReplaceAll(err.Error(), "\n", " "))
			continue
		}
		fmt.Printf("ROUND %d ok\n", round)
		last = k
	}
	fmt.Printf("LAST %s\n", last.Fingerprint())
}

// A file another process holds locked (a rekey stuck in a reload) is
// waited for as long as the context allows, then left as it was: a
// transient failure, retried later.
func TestLockedFileIsWaitedFor(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, ".env")
	writeFile(t, path, "KEY=old\n", 0o600)
	other, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := syscall.Flock(int(other.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	f := newFile(t, env(), map[string]any{"path": path, "format": "dotenv", "field": "KEY"})
	key := randomKey(t)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	began := time.Now()
	_, err = f.Apply(ctx, integrations.ApplyRequest{Key: secret.New(key)})
	if !failure.IsTransient(err) || !strings.Contains(err.Error(), "another process") || !strings.Contains(err.Error(), path) {
		t.Fatalf("Apply on a locked file: %v; want transient, naming the file", err)
	}
	if d := time.Since(began); d > 2*time.Second {
		t.Errorf("Apply returned %v after its context ended", d)
	}
	if got, _ := os.ReadFile(path); string(got) != "KEY=old\n" {
		t.Errorf("the locked file was written: %q", got)
	}
	// Unlocked, the next Apply writes.
	syscall.Flock(int(other.Fd()), syscall.LOCK_UN)
	if _, err := f.Apply(context.Background(), integrations.ApplyRequest{Key: secret.New(key)}); err != nil {
		t.Fatalf("Apply once unlocked: %v", err)
	}
}
