package cli

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/rekey-dev/rekey/config"
	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/integrations"
	"github.com/rekey-dev/rekey/scan"
	"github.com/rekey-dev/rekey/secret"
)

// ScanOptions are `rekey scan`'s flags and arguments.
type ScanOptions struct {
	Paths   []string
	Keys    []string
	Suggest bool
}

// NewCmdScan builds `rekey scan PATH... [--key KEY] [--suggest]`.
func NewCmdScan(g *GlobalOptions, s Streams) *cobra.Command {
	o := &ScanOptions{}
	cmd := &cobra.Command{
		Use:   "scan PATH... [--key KEY] [--suggest]",
		Short: "Find files that hold a current, superseded or compromised version of a key",
		Long: `scan reads every file under PATH (raw text and base64) for every version of the
key that Vault retains, and prints path:line, the version and its state:
current, superseded, or compromised (replaced by rekey leak). It never prints
what matched. Binary files, files over 32 MiB, and symlinks out of the tree
are skipped and listed.

--suggest prints, for each copy that no configured file integration accounts
for, an integration entry to paste into the configuration, so that the next
rotation updates that file too.

Exit codes: 0 nothing found but the current version, 3 a superseded or
compromised version found, 1 Vault could not be read, 2 usage or config.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Paths = args
			a, err := load(g, s)
			if err != nil {
				return err
			}
			return scanRun(cmd.Context(), a, o)
		},
	}
	cmd.Flags().StringArrayVar(&o.Keys, "key", nil, "look for this key's versions only (repeatable; default every key)")
	cmd.Flags().BoolVar(&o.Suggest, "suggest", false, "print an integration entry for each copy no integration accounts for")
	return cmd
}

// needleInfo is one version of a key being looked for.
type needleInfo struct {
	Key         string
	Version     int
	Fingerprint string
	State       string // current, superseded or compromised
	value       secret.Key
}

// keyNeedles reads every retained version of k from Vault, with its
// state. A key with no version in Vault has none.
func (a *app) keyNeedles(ctx context.Context, k config.Key) ([]needleInfo, error) {
	versions, current, err := a.store.Versions(ctx, k.VaultPath)
	if errors.Is(err, failure.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	st, _, err := a.store.KeyState(ctx, k.ID)
	if err != nil {
		return nil, err
	}
	var out []needleInfo
	for _, v := range versions {
		n := needleInfo{Key: k.ID, Version: v.Version, Fingerprint: v.Fingerprint(), State: string(integrations.VersionSuperseded), value: v.Key}
		if c, ok := st.Compromised[v.Version]; ok && c.Fingerprint == n.Fingerprint {
			n.State = string(integrations.VersionCompromised)
		}
		if v.Version == current {
			n.State = string(integrations.VersionCurrent)
		}
		out = append(out, n)
	}
	return out, nil
}

// copyDoc is one copy of a key a scan found. It never holds the match.
type copyDoc struct {
	Path        string `json:"path"`
	Line        int    `json:"line"`
	Key         string `json:"key"`
	Version     int    `json:"version"`
	Fingerprint string `json:"fingerprint"`
	State       string `json:"state"`
	Encoding    string `json:"encoding"`
}

type skippedDoc struct {
	Path   string `json:"path"`
	Reason string `json:"reason"`
	Detail string `json:"detail,omitempty"`
}

// scanReport is what a scan of some paths found.
type scanReport struct {
	Paths   []string     `json:"paths"`
	Copies  []copyDoc    `json:"copies"`
	Skipped []skippedDoc `json:"skipped,omitempty"`
	Files   int          `json:"files"`
	Bytes   int64        `json:"bytes"`
	// Error says why the scan could not run or did not finish.
	Error string `json:"error,omitempty"`

	findings []scan.Finding
	needles  []needleInfo // indexed by Finding.Needle
}

// runScan looks for needles under roots. Needles too short to scan for
// are left out with a warning.
func (a *app) runScan(ctx context.Context, roots []string, needles []needleInfo) *scanReport {
	rep := &scanReport{Paths: roots, Copies: []copyDoc{}}
	var sn []scan.Needle
	for _, n := range needles {
		if len(n.value.Reveal()) < scan.MinKeyLen {
			a.log.Warn("version too short to scan for", "key", n.Key, "version", n.Version, "fingerprint", n.Fingerprint)
			continue
		}
		rep.needles = append(rep.needles, n)
		sn = append(sn, scan.Needle{Key: n.value, Label: fmt.Sprintf("%s v%d %s", n.Key, n.Version, n.Fingerprint), State: n.State})
	}
	if len(sn) == 0 {
		rep.Error = "no version of a key to look for"
		return rep
	}
	res, err := a.scanRoots(ctx, roots, sn)
	if err != nil {
		rep.Error = err.Error()
	}
	rep.findings, rep.Files, rep.Bytes = res.Findings, res.Files, res.Bytes
	for _, f := range res.Findings {
		n := rep.needles[f.Needle]
		rep.Copies = append(rep.Copies, copyDoc{Path: f.Path, Line: f.Line, Key: n.Key, Version: n.Version, Fingerprint: n.Fingerprint, State: f.State, Encoding: f.Encoding})
	}
	for _, s := range res.Skipped {
		rep.Skipped = append(rep.Skipped, skippedDoc{Path: s.Path, Reason: s.Reason, Detail: s.Detail})
	}
	return rep
}

// scanRoots scans the local roots, then those on each other host
// (ssh://), and merges what was found, sorted by path.
func (a *app) scanRoots(ctx context.Context, roots []string, sn []scan.Needle) (scan.Result, error) {
	var local []string
	var hosts []string
	remote := map[string][]sshRoot{}
	var all scan.Result
	for _, r := range roots {
		if !isSSH(r) {
			local = append(local, r)
			continue
		}
		sr, err := parseSSHRoot(r)
		if err != nil {
			all.Skipped = append(all.Skipped, scan.Skipped{Path: r, Reason: scan.ReasonUnreadable, Detail: err.Error()})
			continue
		}
		if remote[sr.host] == nil {
			hosts = append(hosts, sr.host)
		}
		remote[sr.host] = append(remote[sr.host], sr)
	}
	merge := func(res scan.Result) {
		all.Findings = append(all.Findings, res.Findings...)
		all.Skipped = append(all.Skipped, res.Skipped...)
		all.Files += res.Files
		all.Bytes += res.Bytes
	}
	var firstErr error
	if len(local) > 0 || len(hosts) == 0 {
		res, err := scan.Scan(ctx, local, sn, scan.Options{Logger: a.log})
		merge(res)
		firstErr = err
	}
	for _, h := range hosts {
		res, err := a.scanRemote(ctx, remote[h], sn)
		merge(res)
		if firstErr == nil {
			firstErr = err
		}
	}
	slices.SortStableFunc(all.Findings, func(x, y scan.Finding) int {
		return cmp.Or(strings.Compare(x.Path, y.Path), cmp.Compare(x.Line, y.Line), cmp.Compare(x.Needle, y.Needle), strings.Compare(x.Encoding, y.Encoding))
	})
	slices.SortStableFunc(all.Skipped, func(x, y scan.Skipped) int { return strings.Compare(x.Path, y.Path) })
	return all, firstErr
}

// earlier reports whether the scan found a version that is not current.
func (r *scanReport) earlier() bool {
	for _, c := range r.Copies {
		if c.State != string(integrations.VersionCurrent) {
			return true
		}
	}
	return false
}

// printCopies prints each copy as path:line, then a summary of what was
// found and skipped. Binary files are counted, the other skips listed.
func (r *scanReport) printCopies(w io.Writer, indent string, verbose bool) {
	for _, c := range r.Copies {
		enc := ""
		if c.Encoding != scan.EncodingRaw {
			enc = " (" + c.Encoding + ")"
		}
		fmt.Fprintf(w, "%s%s:%d: %s version %d %s %s%s\n", indent, c.Path, c.Line, c.Key, c.Version, c.Fingerprint, c.State, enc)
	}
	files := map[string]bool{}
	for _, c := range r.Copies {
		files[c.Path] = true
	}
	fmt.Fprintf(w, "%s%s in %s (%d files read).\n", indent, plural(len(r.Copies), "copy", "copies"), plural(len(files), "file", "files"), r.Files)
	if len(r.Skipped) == 0 {
		return
	}
	byReason := map[string]int{}
	for _, s := range r.Skipped {
		byReason[s.Reason]++
	}
	var parts []string
	for reason, n := range byReason {
		parts = append(parts, fmt.Sprintf("%d %s", n, reason))
	}
	sort.Strings(parts)
	fmt.Fprintf(w, "%sSkipped %s: %s.\n", indent, plural(len(r.Skipped), "file", "files"), strings.Join(parts, ", "))
	for _, s := range r.Skipped {
		if s.Reason == scan.ReasonBinary && !verbose {
			continue
		}
		detail := ""
		if s.Detail != "" {
			detail = ": " + s.Detail
		}
		fmt.Fprintf(w, "%s  %s: %s%s\n", indent, s.Path, s.Reason, detail)
	}
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// suggestion is a ready-to-paste integration entry for a copy that no
// configured integration accounts for, or why none can be made.
type suggestion struct {
	Path    string `json:"path"`
	Line    int    `json:"line"`
	Key     string `json:"key"`
	Version int    `json:"version"`
	State   string `json:"state"`
	Entry   string `json:"entry,omitempty"`
	Format  string `json:"format,omitempty"`
	Field   string `json:"field,omitempty"`
	// Why no entry was made, when Entry is empty.
	Why string `json:"why,omitempty"`
}

// suggest makes one suggestion per file and key among the copies that
// no file integration of that key accounts for.
func (a *app) suggest(r *scanReport) []suggestion {
	managed := map[string]map[string]bool{} // key id → clean paths
	for _, in := range a.cfg.Integrations {
		if in.Type != "file" {
			continue
		}
		p, _ := in.Settings["path"].(string)
		if p == "" {
			continue
		}
		if managed[in.Key] == nil {
			managed[in.Key] = map[string]bool{}
		}
		managed[in.Key][samePath(p)] = true
	}
	out := []suggestion{}
	done := map[string]bool{}
	// Raw findings first: they are the ones an entry can be made for.
	order := make([]int, len(r.findings))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(i, j int) bool {
		fi, fj := r.findings[order[i]], r.findings[order[j]]
		if fi.Path != fj.Path {
			return fi.Path < fj.Path
		}
		return fi.Encoding == scan.EncodingRaw && fj.Encoding != scan.EncodingRaw
	})
	for _, i := range order {
		f := r.findings[i]
		n := r.needles[f.Needle]
		id := n.Key + "\x00" + samePath(f.Path)
		if managed[n.Key][samePath(f.Path)] || done[id] {
			continue
		}
		done[id] = true
		sg := suggestion{Path: f.Path, Line: f.Line, Key: n.Key, Version: n.Version, State: f.State}
		if isSSH(f.Path) {
			sg.Why = "it is on another host: add a file integration with host and the file's path there"
			out = append(out, sg)
			continue
		}
		content, err := os.ReadFile(f.Path)
		if err != nil {
			sg.Why = "could not read it again: " + errorDetail(err)
			out = append(out, sg)
			continue
		}
		s, ok := scan.Suggest(f, n.value, content)
		switch {
		case ok:
			sg.Entry, sg.Format, sg.Field = s.Entry(n.Key), s.Format, s.Field
		case f.Encoding != scan.EncodingRaw:
			sg.Why = "it holds the key in " + f.Encoding + ": update it by hand, or with an exec integration"
		default:
			sg.Why = "the key is part of a longer value, or the format is not dotenv, json, yaml or a file holding only the key: update it by hand, or with an exec integration"
		}
		out = append(out, sg)
	}
	return out
}

// samePath is p made absolute and clean, with symlinks resolved when it
// exists, so that two names of one file compare equal.
func samePath(p string) string {
	if abs, err := filepath.Abs(p); err == nil {
		p = abs
	}
	if real, err := filepath.EvalSymlinks(p); err == nil {
		p = real
	}
	return filepath.Clean(p)
}

// errorDetail is an error without the path it names.
func errorDetail(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

func printSuggestions(w io.Writer, sgs []suggestion) {
	if len(sgs) == 0 {
		fmt.Fprintln(w, "\nEvery copy found is in a file an integration manages.")
		return
	}
	fmt.Fprintln(w, "\nCopies no integration accounts for. To have rotations update them, add under integrations: in the configuration:")
	for _, s := range sgs {
		fmt.Fprintf(w, "  # %s:%d holds %s version %d (%s)\n", s.Path, s.Line, s.Key, s.Version, s.State)
		if s.Entry == "" {
			fmt.Fprintf(w, "  # no entry suggested: %s\n", s.Why)
			continue
		}
		for l := range strings.SplitSeq(s.Entry, "\n") {
			fmt.Fprintf(w, "  %s\n", l)
		}
	}
}

type scanDoc struct {
	Keys []string `json:"keys"`
	*scanReport
	Suggestions []suggestion `json:"suggestions,omitzero"`
	ExitCode    int          `json:"exit_code"`
}

func scanRun(ctx context.Context, a *app, o *ScanOptions) error {
	keys, err := a.selectKeys(o.Keys...)
	if err != nil {
		return err
	}
	if err := a.connectVault(ctx); err != nil {
		return err
	}
	var needles []needleInfo
	var ids []string
	for _, k := range keys {
		ns, err := a.keyNeedles(ctx, k)
		if err != nil {
			return exit(ExitStopped, fmt.Errorf("read the versions of %s: %w", k.ID, err), "nothing was scanned")
		}
		if len(ns) == 0 {
			fmt.Fprintf(a.s.Err, "rekey: warning: %s has no version in Vault; not looked for\n", k.ID)
			continue
		}
		needles = append(needles, ns...)
		ids = append(ids, k.ID)
	}
	if len(needles) == 0 {
		return exit(ExitStopped, errors.New("no key has a version in Vault to look for"), "")
	}
	rep := a.runScan(ctx, o.Paths, needles)
	if rep.Error != "" && rep.findings == nil && rep.Files == 0 {
		return exit(ExitStopped, errors.New(rep.Error), "")
	}
	code := ExitOK
	if rep.earlier() {
		code = ExitDegraded
	}
	var sgs []suggestion
	if o.Suggest {
		sgs = a.suggest(rep)
	}
	if a.json() {
		if o.Suggest && sgs == nil {
			sgs = []suggestion{}
		}
		writeJSON(a.s.Out, scanDoc{Keys: ids, scanReport: rep, Suggestions: sgs, ExitCode: code})
		return silent(code)
	}
	rep.printCopies(a.s.Out, "", a.g.Verbose)
	if rep.Error != "" {
		fmt.Fprintf(a.s.Err, "rekey: warning: the scan did not finish: %s\n", rep.Error)
	}
	if o.Suggest {
		printSuggestions(a.s.Out, sgs)
	}
	if code == ExitDegraded {
		fmt.Fprintln(a.s.Out, "Superseded or compromised versions found: replace them with the current version, or delete them.")
	}
	return silent(code)
}
