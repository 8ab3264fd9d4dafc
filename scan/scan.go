// Package scan finds files that hold a copy of a key: the current version,
// a superseded one or a compromised one. It is what `rekey scan` and the
// containment step of `rekey leak` run.
//
// # What is looked for
//
// Each Needle is one version of a key, given in one of two ways:
//
//   - by value (Needle.Key), for the versions Vault still holds. The key is
//     found anywhere, even inside a longer string.
//   - by keyed hash (Needle.Hash), for the versions Vault has pruned: rekey's
//     records keep, per key, a random salt (MinSaltLen bytes or more; 32 is
//     what rekey uses) and, per version, HashKey(salt, key): the HMAC-SHA-256
//     of the key's bytes and the key's length, never the key. The scan
//     HMACs every key-shaped token of that length and compares. A key is
//     found this way only as a whole token: a maximal run of
//     [A-Za-z0-9_-] in which a '.' may stand between two such characters
//     (Action Network's 32 hex digits, Stripe's sk_live_…, GitHub's ghp_…,
//     Slack's xoxb-…, SendGrid's SG.….…, Vault's hvs.…, JWTs). So
//     "KEY=<key>", "<key>.", `"<key>"`, "?key=<key>&" and "Bearer <key>" are
//     found; "x<key>" and "<key>.json" are not. HashFindable tells, when
//     a version is recorded, whether its hash can find its copies (keys
//     with '/', '+', '~' and the like cannot; they can still be refused
//     by KeyHash.Matches).
//
// Both kinds may be mixed in one scan; Finding.Needle is the index of the
// needle in the slice given, whichever kind it is, and findings of both
// kinds are sorted and de-duplicated alike. A scan that holds only hashes
// needs no read access to the keys. For example, to look for every
// version of a key whose records keep salt and a hash per version:
//
//	needles := []scan.Needle{
//		{Key: current, Label: "main v12 sha256:…", State: "current"},                         // held by Vault
//		{Hash: scan.KeyHash{Salt: salt, Sum: sum, Len: 32}, Label: "main v2 …", State: "compromised"}, // pruned
//	}
//	res, err := scan.Scan(ctx, paths, needles, scan.Options{Logger: log})
//
// and to record a version: h, err := scan.HashKey(salt, key) (store h.Sum
// and h.Len, and the salt once per key), then scan.HashFindable(key) to
// warn when the hash alone cannot find it.
//
// # Encodings
//
// A key is looked for raw and in base64, standard and URL-safe, padded or
// not, at any of the three alignments it can have inside a longer base64
// stream (a whole .env file base64-encoded into a Kubernetes Secret, say).
// By value, through the key's base64 fragments; by hash, by decoding each
// run of base64 characters long enough to hold the key, at each of the
// four alignments the stream can have inside the run, and looking for
// tokens in what it decodes to. A finding names the file, the line, the
// version's label and state, and the encoding; never the text that
// matched or the line around it. Errors, skip reasons and log records do
// not hold key text either.
//
// What is not found: base64 that is wrapped over several lines (PEM, MIME
// mail bodies), hex, other encodings (UTF-16, URL escapes), and anything
// compressed, which includes the objects in a .git directory. .git
// directories are scanned all the same, because .git/config can hold a key
// in a remote's URL; pack files and loose objects are skipped as binary.
//
// # Files
//
// What is skipped, and listed in Result.Skipped: files with a NUL byte in
// their first 8 KiB (binary), files larger than Options.MaxFileSize,
// files that cannot be read, devices, pipes and sockets, and symlinks that
// point outside every root or cannot be resolved. Symlinks are never
// followed during the walk, not even to directories: a symlink whose
// target lies inside a root is passed over quietly, because the walk
// reaches that target under its own path, and a file is reported once.
// A root given on the command line may itself be a symlink; it is
// resolved, and paths are reported under the name given. These rules are
// the same for both kinds of needle.
package scan

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"

	"github.com/rekey-dev/rekey/secret"
)

// MinKeyLen is the shortest key that can be scanned for. Shorter strings
// occur by chance in ordinary text.
const MinKeyLen = 8

// DefaultMaxFileSize is the size above which a file is skipped unless
// Options.MaxFileSize says otherwise.
const DefaultMaxFileSize = 32 << 20

// sniffLen is how much of a file is looked at for a NUL byte.
const sniffLen = 8 << 10

// Encodings in Finding.Encoding.
const (
	EncodingRaw    = "raw"
	EncodingBase64 = "base64" // standard or URL-safe, padded or not
)

// Reasons in Skipped.Reason.
const (
	ReasonBinary          = "binary"
	ReasonTooLarge        = "too large"
	ReasonUnreadable      = "unreadable"
	ReasonNotRegular      = "not a regular file"
	ReasonSymlinkOutside  = "symlink outside root"
	ReasonSymlinkDangling = "broken symlink"
)

// Needle is one version of a key to look for: by its value (Key) or, when
// rekey no longer holds the value, by its keyed hash (Hash). Exactly one
// of the two is set.
type Needle struct {
	Key   secret.Key
	Hash  KeyHash // from HashKey, as rekey's records keep it
	Label string  // how findings name it, e.g. "v3 sha256:0123456789ab"; default the fingerprint, or "hmac:…" for a hash
	State string  // "current", "superseded" or "compromised"; copied to findings
}

// Options tune a scan. The zero value is ready to use.
type Options struct {
	// MaxFileSize: larger files are skipped and listed. 0 means
	// DefaultMaxFileSize; a negative value means no limit (memory stays
	// the same either way: files are streamed).
	MaxFileSize int64
	// Workers is how many files are read at once; 0 means GOMAXPROCS.
	Workers int
	// Logger receives debug records: one per skip or symlink passed over,
	// and a summary at the end. nil discards them.
	Logger *slog.Logger
	// FS is the file system the roots are on: nil for this host's, or
	// SFTPFS for another host's.
	FS FS

	chunkSize int // tests shrink it to put chunk boundaries everywhere
}

// Finding is one line of one file that holds one version of a key in one
// encoding. It never holds the matched text.
type Finding struct {
	Path     string // under the root as given
	Line     int    // 1-based; the line where the occurrence starts
	Needle   int    // index of the needle in the slice given to Scan
	Label    string // the needle's label
	State    string // the needle's state
	Encoding string // EncodingRaw or EncodingBase64
}

// Skipped is a file or symlink that was not scanned.
type Skipped struct {
	Path   string
	Reason string // one of the Reason constants
	Detail string // e.g. "permission denied", "40000000 bytes, limit 33554432"
}

// Result is what a scan found. Findings are sorted by path, line, needle
// and encoding; Skipped by path.
type Result struct {
	Findings []Finding
	Skipped  []Skipped
	Files    int   // files read to the end
	Bytes    int64 // bytes read
}

func (o Options) withDefaults() Options {
	if o.MaxFileSize == 0 {
		o.MaxFileSize = DefaultMaxFileSize
	}
	if o.Workers <= 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.FS == nil {
		o.FS = localFS{}
	}
	if o.chunkSize <= 0 {
		o.chunkSize = defaultChunk
	}
	return o
}

// Scan walks roots (files or directories) and reports every file that
// holds a needle. Problems with single files are listed in Result.Skipped,
// not returned as errors. The error is non-nil when the needles are
// unusable (none; a key shorter than MinKeyLen; a needle with both or
// neither of Key and Hash; a hash with a salt shorter than MinSaltLen or
// a length outside MinKeyLen to MaxHashedKeyLen) or when ctx ends; in
// the latter case the Result holds what was found until then.
func Scan(ctx context.Context, roots []string, needles []Needle, opts Options) (Result, error) {
	m, err := compile(needles)
	if err != nil {
		return Result{}, err
	}
	opts = opts.withDefaults()
	log := opts.Logger

	var (
		mu  sync.Mutex
		res Result
	)
	skip := func(path, reason, detail string) {
		log.Debug("scan: skipped", "path", path, "reason", reason, "detail", detail)
		mu.Lock()
		res.Skipped = append(res.Skipped, Skipped{Path: path, Reason: reason, Detail: detail})
		mu.Unlock()
	}

	jobs := make(chan job, 4*opts.Workers)
	var wg sync.WaitGroup
	for range opts.Workers {
		wg.Go(func() {
			w := &worker{m: m, opts: opts, buf: make([]byte, opts.chunkSize+m.carry), hs: m.hashed.newState(), skip: skip}
			for j := range jobs {
				found, n, ok := w.scanFile(ctx, j)
				mu.Lock()
				res.Findings = append(res.Findings, found...)
				res.Bytes += n
				if ok {
					res.Files++
				}
				mu.Unlock()
			}
		})
	}
	walkRoots(ctx, opts.FS, resolveRoots(opts.FS, roots, skip), jobs, skip, log)
	close(jobs)
	wg.Wait()

	sortResult(&res)
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("scan: %w", err)
	}
	log.Debug("scan: done", "files", res.Files, "bytes", res.Bytes,
		"findings", len(res.Findings), "skipped", len(res.Skipped))
	return res, nil
}

// ScanReader reads r to the end and reports where it holds a needle;
// findings carry name as their Path. It applies no binary or size rule:
// that is Scan's business. Memory stays bounded whatever r's length.
func ScanReader(ctx context.Context, name string, r io.Reader, needles []Needle) ([]Finding, error) {
	m, err := compile(needles)
	if err != nil {
		return nil, err
	}
	return scanReader(ctx, m, name, r, defaultChunk)
}

func scanReader(ctx context.Context, m *matcher, name string, r io.Reader, chunk int) ([]Finding, error) {
	c := newCollector(m, name)
	if _, err := m.scanStream(ctx, r, make([]byte, chunk+m.carry), c, m.hashed.newState()); err != nil {
		return nil, fmt.Errorf("scan: read %s: %w", name, err)
	}
	sortFindings(c.out)
	return c.out, nil
}

func sortFindings(f []Finding) {
	slices.SortFunc(f, func(a, b Finding) int {
		return cmp.Or(
			strings.Compare(a.Path, b.Path),
			cmp.Compare(a.Line, b.Line),
			cmp.Compare(a.Needle, b.Needle),
			strings.Compare(a.Encoding, b.Encoding),
		)
	})
}

func sortResult(r *Result) {
	sortFindings(r.Findings)
	slices.SortFunc(r.Skipped, func(a, b Skipped) int {
		return cmp.Or(strings.Compare(a.Path, b.Path), strings.Compare(a.Reason, b.Reason))
	})
}

// job is one regular file found by the walk.
type job struct {
	path    string // to open: under the resolved root
	display string // to report: under the root as given
}

type worker struct {
	m    *matcher
	opts Options
	buf  []byte
	hs   *hashState // nil without hashed needles
	head [sniffLen]byte
	skip func(path, reason, detail string)
}

// scanFile reads one file. ok is false when it was skipped or not read to
// the end.
func (w *worker) scanFile(ctx context.Context, j job) (found []Finding, n int64, ok bool) {
	if ctx.Err() != nil {
		return nil, 0, false
	}
	f, size, err := w.opts.FS.OpenRegular(j.path)
	if err != nil {
		if errors.Is(err, errNotRegular) {
			w.skip(j.display, ReasonNotRegular, "")
		} else {
			w.skip(j.display, ReasonUnreadable, errDetail(err))
		}
		return nil, 0, false
	}
	defer f.Close()
	limit := w.opts.MaxFileSize
	if limit > 0 && size > limit {
		w.skip(j.display, ReasonTooLarge, fmt.Sprintf("%d bytes, limit %d", size, limit))
		return nil, 0, false
	}
	var r io.Reader = f
	if limit > 0 {
		r = io.LimitReader(f, limit) // the file may grow while it is read
	}
	h, err := io.ReadFull(r, w.head[:])
	if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
		w.skip(j.display, ReasonUnreadable, errDetail(err))
		return nil, 0, false
	}
	if bytes.IndexByte(w.head[:h], 0) >= 0 {
		w.skip(j.display, ReasonBinary, "")
		return nil, 0, false
	}
	c := newCollector(w.m, j.display)
	n, err = w.m.scanStream(ctx, io.MultiReader(bytes.NewReader(w.head[:h]), r), w.buf, c, w.hs)
	if err != nil {
		if ctx.Err() == nil {
			w.skip(j.display, ReasonUnreadable, errDetail(err))
		}
		return c.out, n, false // what was found is still true
	}
	return c.out, n, true
}

var errNotRegular = errors.New("not a regular file")

// errDetail is what an error says without the path it names (the path is
// already in Skipped.Path).
func errDetail(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	var le *os.LinkError
	if errors.As(err, &le) {
		return le.Err.Error()
	}
	return strings.TrimPrefix(err.Error(), "EvalSymlinks: ")
}

type root struct {
	given string // as the caller wrote it
	real  string // absolute, symlinks resolved
}

// resolveRoots resolves each root and drops those inside another one, so
// that no file is read twice.
func resolveRoots(fsys FS, roots []string, skip func(path, reason, detail string)) []root {
	var out []root
	for _, r := range roots {
		real, err := fsys.EvalSymlinks(r)
		if err != nil {
			skip(r, ReasonUnreadable, errDetail(err))
			continue
		}
		out = append(out, root{given: r, real: real})
	}
	// Outer roots first, then drop every root inside an earlier one.
	slices.SortStableFunc(out, func(a, b root) int { return cmp.Compare(len(a.real), len(b.real)) })
	kept := out[:0]
	for _, r := range out {
		if !slices.ContainsFunc(kept, func(k root) bool { return within(r.real, k.real) }) {
			kept = append(kept, r)
		}
	}
	return kept
}

// within reports whether path p is dir or lies under it. Both are clean
// absolute paths.
func within(p, dir string) bool {
	if p == dir {
		return true
	}
	if !strings.HasSuffix(dir, string(filepath.Separator)) {
		dir += string(filepath.Separator)
	}
	return strings.HasPrefix(p, dir)
}

func walkRoots(ctx context.Context, fsys FS, roots []root, jobs chan<- job, skip func(path, reason, detail string), log *slog.Logger) {
	for _, rt := range roots {
		display := func(p string) string {
			rel, err := filepath.Rel(rt.real, p)
			if err != nil || rel == "." {
				return rt.given
			}
			return filepath.Join(rt.given, rel)
		}
		err := walk(fsys, rt.real, func(p string, d fs.DirEntry, err error) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err != nil {
				// A directory that cannot be listed, or a file gone since.
				skip(display(p), ReasonUnreadable, errDetail(err))
				return nil
			}
			switch t := d.Type(); {
			case t&fs.ModeSymlink != 0:
				target, err := fsys.EvalSymlinks(p)
				switch {
				case err != nil:
					skip(display(p), ReasonSymlinkDangling, errDetail(err))
				case !slices.ContainsFunc(roots, func(r root) bool { return within(target, r.real) }):
					skip(display(p), ReasonSymlinkOutside, "")
				default:
					log.Debug("scan: symlink not followed; its target is scanned under its own path", "path", display(p))
				}
			case d.IsDir():
			case t.IsRegular():
				select {
				case jobs <- job{path: p, display: display(p)}:
				case <-ctx.Done():
					return ctx.Err()
				}
			default:
				skip(display(p), ReasonNotRegular, "")
			}
			return nil
		})
		if err != nil {
			return // only ctx ends a walk; Scan reports it
		}
	}
}
