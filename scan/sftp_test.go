package scan

import (
	"context"
	"path/filepath"
	"reflect"
	"syscall"
	"testing"
	"time"

	"github.com/rekey-dev/rekey/internal/leakcheck"
	"github.com/rekey-dev/rekey/internal/sshpool"
	"github.com/rekey-dev/rekey/internal/sshtest"
)

// A tree scanned over SFTP (a real sshd on loopback) gives what the same
// tree scanned locally gives: the same findings, and the same files
// skipped for the same reasons (too large, binary, symlinks out of the
// root, broken or looping, a FIFO), with the walk and the limits of one
// scanner.
func TestScanOverSFTPMatchesLocal(t *testing.T) {
	srv := sshtest.Start(t, sshtest.Options{})
	root, _ := tree(t)
	if err := syscall.Mkfifo(filepath.Join(root, "www", "pipe"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := sshpool.New(sshpool.Options{KnownHosts: srv.KnownHosts, IdentityFile: srv.Identity, Home: t.TempDir(), Getenv: func(string) string { return "" }})
	defer p.Close()
	h, err := p.Host(srv.Target(0))
	if err != nil {
		t.Fatal(err)
	}
	c, release, err := h.SFTP(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer release()

	opts := Options{MaxFileSize: 10000}
	local, err := Scan(context.Background(), []string{root}, testNeedles(), opts)
	if err != nil {
		t.Fatal(err)
	}
	opts.FS = SFTPFS(c)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	remote, err := Scan(ctx, []string{root}, testNeedles(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(local.Findings) == 0 || !reflect.DeepEqual(remote.Findings, local.Findings) {
		t.Errorf("findings over SFTP:\n got %+v\nwant %+v", remote.Findings, local.Findings)
	}
	type skip struct{ path, reason string }
	reasons := func(ss []Skipped) (out []skip) {
		for _, s := range ss {
			out = append(out, skip{s.Path, s.Reason})
		}
		return out
	}
	if !reflect.DeepEqual(reasons(remote.Skipped), reasons(local.Skipped)) {
		t.Errorf("skipped over SFTP:\n got %+v\nwant %+v", remote.Skipped, local.Skipped)
	}
	if remote.Files != local.Files || remote.Bytes != local.Bytes {
		t.Errorf("read %d files, %d bytes over SFTP; %d, %d locally", remote.Files, remote.Bytes, local.Files, local.Bytes)
	}
	leakcheck.Assert(t, "skipped", []byte(fmtSkipped(remote.Skipped)), allKeys...)
}

func fmtSkipped(ss []Skipped) string {
	var s string
	for _, x := range ss {
		s += x.Path + " " + x.Reason + " " + x.Detail + "\n"
	}
	return s
}
