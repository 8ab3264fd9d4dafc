package cli

import (
	"context"
	"fmt"
	"net/url"
	"path"
	"strings"

	"github.com/rekey-dev/rekey/scan"
)

// sshRoot is a scan path on another host: ssh://[user@]host[:port]/path.
type sshRoot struct {
	given  string // as written
	host   string // [user@]host[:port], for the pool
	prefix string // what a remote path is shown after: ssh://[user@]host[:port]
	path   string // absolute, on the host
}

// isSSH reports whether a scan path names another host.
func isSSH(p string) bool { return strings.HasPrefix(p, "ssh://") }

// parseSSHRoot reads ssh://[user@]host[:port]/path.
func parseSSHRoot(p string) (sshRoot, error) {
	u, err := url.Parse(p)
	if err != nil || u.Scheme != "ssh" || u.Host == "" || u.Opaque != "" || u.RawQuery != "" || u.Fragment != "" {
		return sshRoot{}, fmt.Errorf("scan path %q: want ssh://[user@]host[:port]/path", p)
	}
	if u.Path == "" || !path.IsAbs(u.Path) {
		return sshRoot{}, fmt.Errorf("scan path %q: give an absolute path on the host: ssh://host/srv/www", p)
	}
	host := u.Host
	if u.User != nil {
		if _, hasPass := u.User.Password(); hasPass {
			return sshRoot{}, fmt.Errorf("scan path %q: a password in the URL is not accepted; rekey logs in with a key", p)
		}
		host = u.User.Username() + "@" + host
	}
	return sshRoot{given: p, host: host, prefix: "ssh://" + host, path: path.Clean(u.Path)}, nil
}

// scanRemote scans roots on one host (all with the same host) over an
// SFTP session of the run's connection to it, and reports paths as
// ssh://host/path. A host that cannot be reached skips its roots, with
// the reason.
func (a *app) scanRemote(ctx context.Context, roots []sshRoot, sn []scan.Needle) (scan.Result, error) {
	skipAll := func(reason string) scan.Result {
		var res scan.Result
		for _, r := range roots {
			res.Skipped = append(res.Skipped, scan.Skipped{Path: r.given, Reason: scan.ReasonUnreadable, Detail: reason})
		}
		return res
	}
	h, err := a.ssh.Host(roots[0].host)
	if err != nil {
		return skipAll(err.Error()), nil
	}
	c, release, err := h.SFTP(ctx)
	if err != nil {
		return skipAll(err.Error()), nil
	}
	defer release()
	paths := make([]string, len(roots))
	for i, r := range roots {
		paths[i] = r.path
	}
	res, err := scan.Scan(ctx, paths, sn, scan.Options{Logger: a.log, FS: scan.SFTPFS(c)})
	show := func(p string) string { return roots[0].prefix + p }
	for i := range res.Findings {
		res.Findings[i].Path = show(res.Findings[i].Path)
	}
	for i := range res.Skipped {
		res.Skipped[i].Path = show(res.Skipped[i].Path)
	}
	return res, err
}
