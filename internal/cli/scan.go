package cli

import (
	"cmp"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/rekey-dev/rekey/config"
	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/integrations"
	"github.com/rekey-dev/rekey/records"
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

// needleInfo is one version of a key being looked for: by its value
// when Vault holds it and this token may read it, else (hash set) by the
// keyed hash in rekey's history.
type needleInfo struct {
	Key         string
	Version     int
	Fingerprint string
	State       string // current, superseded or compromised
	value       secret.Key
	hash        *hashedVersion
}

// hashedVersion is a version known only by its keyed hash.
type hashedVersion struct {
	salt   []byte
	sum    []byte // HMAC-SHA-256(salt, key)
	length int
}

func (n needleInfo) label() string {
	return fmt.Sprintf("%s v%d %s", n.Key, n.Version, n.Fingerprint)
}

// keyNeedles returns every version of k that rekey knows of: those Vault
// holds, by value, and those it no longer holds (pruned, deleted,
// destroyed), by their keyed hash from rekey's history. A token that may
// read rekey's records but not the key's data looks for every version by
// its hash. A key with no version anywhere has none.
func (a *app) keyNeedles(ctx context.Context, k config.Key) ([]needleInfo, error) {
	h, _, err := a.store.History(ctx, k.ID)
	if err != nil && !errors.Is(err, failure.ErrNotFound) {
		return nil, err
	}
	versions, current, err := a.store.Versions(ctx, k.VaultPath)
	switch {
	case errors.Is(err, failure.ErrNotFound):
		versions = nil
	case errors.Is(err, failure.ErrUnauthorized) && h != nil:
		a.log.Debug("scan: the key's data is not readable with this token; looking for every version by its keyed hash", "key", k.ID)
		versions = nil
	case err != nil:
		return nil, err
	}
	st, _, err := a.store.KeyState(ctx, k.ID)
	if err != nil {
		return nil, err
	}
	var out []needleInfo
	held := map[string]bool{} // fingerprints of versions looked for by value
	for _, v := range versions {
		n := needleInfo{Key: k.ID, Version: v.Version, Fingerprint: v.Fingerprint(), State: string(integrations.VersionSuperseded), value: v.Key}
		if c, ok := st.Compromised[v.Version]; ok && c.Fingerprint == n.Fingerprint {
			n.State = string(integrations.VersionCompromised)
		}
		if h != nil {
			if hv, ok := h.Find(v.Key); ok && hv.Standing == records.StandingCompromised {
				n.State = string(integrations.VersionCompromised)
			}
		}
		if v.Version == current && n.State != string(integrations.VersionCompromised) {
			n.State = string(integrations.VersionCurrent)
		}
		held[n.Fingerprint] = true
		out = append(out, n)
	}
	if h == nil {
		return out, nil
	}
	salt, err := h.SaltBytes()
	if err != nil {
		return nil, fmt.Errorf("the history of %s: %w", k.ID, err)
	}
	for _, v := range h.Versions {
		if held[v.Fingerprint] {
			continue
		}
		sum, err := hex.DecodeString(v.Hash)
		if err != nil {
			return nil, fmt.Errorf("the history of %s: version %d: its hash is not hex", k.ID, v.Version)
		}
		out = append(out, needleInfo{Key: k.ID, Version: v.Version, Fingerprint: v.Fingerprint, State: string(v.Standing),
			hash: &hashedVersion{salt: salt, sum: sum, length: v.Length}})
	}
	return out, nil
}

// hashedNeedles builds the scan needles for versions known only by their
// keyed hash (salt, HMAC-SHA-256, length: records.KeyedHash is
// scan.HashKey's HMAC). A hash of the wrong size is an error, and runScan
// then lists these versions as not looked for.
func hashedNeedles(ns []needleInfo) ([]scan.Needle, error) {
	out := make([]scan.Needle, 0, len(ns))
	for _, n := range ns {
		h := scan.KeyHash{Salt: n.hash.salt, Len: n.hash.length, Fingerprint: n.Fingerprint}
		if len(n.hash.sum) != len(h.Sum) {
			return nil, fmt.Errorf("%s: its keyed hash is %d bytes, not %d", n.label(), len(n.hash.sum), len(h.Sum))
		}
		copy(h.Sum[:], n.hash.sum)
		out = append(out, scan.Needle{Hash: h, Label: n.label(), State: n.State})
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
	// NotLookedFor lists versions that could not be looked for, and
	// NotLookedForWhy says why.
	NotLookedFor    []string `json:"not_looked_for,omitempty"`
	NotLookedForWhy string   `json:"not_looked_for_why,omitempty"`
	// Error says why the scan could not run or did not finish.
	Error string `json:"error,omitempty"`

	findings []scan.Finding
	needles  []needleInfo // indexed by Finding.Needle
}

// runScan looks for needles under roots: by value, or by keyed hash.
// Needles too short to scan for are left out with a warning; versions
// that cannot be looked for are listed in NotLookedFor.
func (a *app) runScan(ctx context.Context, roots []string, needles []needleInfo) *scanReport {
	rep := &scanReport{Paths: roots, Copies: []copyDoc{}}
	var sn []scan.Needle
	var hashed []needleInfo
	for _, n := range needles {
		if n.hash != nil {
			hashed = append(hashed, n)
			continue
		}
		if n.value.Len() < scan.MinKeyLen {
			a.log.Warn("version too short to scan for", "key", n.Key, "version", n.Version, "fingerprint", n.Fingerprint)
			continue
		}
		rep.needles = append(rep.needles, n)
		sn = append(sn, scan.Needle{Key: n.value, Label: n.label(), State: n.State})
	}
	hn, err := hashedNeedles(hashed)
	if err != nil {
		for _, n := range hashed {
			rep.NotLookedFor = append(rep.NotLookedFor, n.label()+" "+n.State)
		}
		rep.NotLookedForWhy = err.Error()
	} else {
		rep.needles = append(rep.needles, hashed...)
		sn = append(sn, hn...)
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

// missedEarlier reports whether a superseded or compromised version could
// not be looked for.
func (r *scanReport) missedEarlier() bool {
	for _, l := range r.NotLookedFor {
		if !strings.HasSuffix(l, " "+string(integrations.VersionCurrent)) {
			return true
		}
	}
	return false
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
		fmt.Fprintf(w, "%s%s:%d: %s version %d %s %s%s\n", indent, printable(c.Path), c.Line, c.Key, c.Version, c.Fingerprint, c.State, enc)
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
			detail = ": " + printable(s.Detail)
		}
		fmt.Fprintf(w, "%s  %s: %s%s\n", indent, printable(s.Path), s.Reason, detail)
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
		if n.value.IsZero() {
			sg.Why = "Vault no longer holds this version (it was found by its keyed hash): delete the copy, or replace it with the current version by hand"
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
		case !utf8.ValidString(f.Path):
			sg.Why = "its name is not UTF-8, which a YAML configuration cannot hold: update it by hand, or rename it"
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
		fmt.Fprintf(w, "  # %s:%d holds %s version %d (%s)\n", printable(s.Path), s.Line, s.Key, s.Version, s.State)
		if s.Entry == "" {
			fmt.Fprintf(w, "  # no entry suggested: %s\n", printable(s.Why))
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
	if len(rep.NotLookedFor) > 0 {
		fmt.Fprintf(a.s.Err, "rekey: warning: not looked for: %s (%s)\n", strings.Join(rep.NotLookedFor, ", "), rep.NotLookedForWhy)
	}
	if rep.Error != "" && rep.findings == nil && rep.Files == 0 {
		return exit(ExitStopped, errors.New(rep.Error), "")
	}
	code := ExitOK
	switch {
	case rep.earlier():
		code = ExitDegraded
	case rep.missedEarlier():
		// Not finding what was not looked for is no clean tree.
		code = ExitStopped
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
		fmt.Fprintf(a.s.Err, "rekey: warning: the scan did not finish: %s\n", printable(rep.Error))
	}
	if o.Suggest {
		printSuggestions(a.s.Out, sgs)
	}
	if code == ExitDegraded {
		fmt.Fprintln(a.s.Out, "Superseded or compromised versions found: replace them with the current version, or delete them.")
	}
	if code == ExitStopped {
		return exit(code, fmt.Errorf("%s could not be looked for: the scan cannot say the tree holds no earlier version", plural(len(rep.NotLookedFor), "version", "versions")), "")
	}
	return silent(code)
}
