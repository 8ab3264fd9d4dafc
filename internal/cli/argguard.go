package cli

import (
	"context"
	"os"
	"strings"
	"sync"

	"github.com/rekey-dev/rekey/records"
	"github.com/rekey-dev/rekey/secret"
)

// argGuard keeps a key typed in the wrong place (as the KEY or INTEGRATION
// argument, the value of --reason, --output or --note, any argument) out
// of everything rekey prints, logs, posts and records. An argument looks
// like a key when it has the shape of one (keyShaped), or, once Vault has
// been read, when it is a version of a configured key or has the length
// and alphabet of one (a new key, not stored yet, has the shape of the old
// ones). Each such argument is given to the run's secret.Redactor, which
// every byte written to stdout and stderr passes.
type argGuard struct {
	red *secret.Redactor

	mu      sync.Mutex
	pending []string // arguments that might be a key: compared once Vault is read
	known   onRecord
	shapes  map[secret.Shape]bool
	learned bool
	// lookup reads every version of every configured key; load sets it.
	lookup func(ctx context.Context) onRecord
	// ids are the configured key and integration ids: arguments that are
	// not keys.
	ids map[string]bool
}

// newArgGuard looks at the command line: arguments of a key's shape are
// redacted at once; others long enough to be a key wait for Vault.
func newArgGuard(args []string, red *secret.Redactor) *argGuard {
	g := &argGuard{red: red, shapes: map[secret.Shape]bool{}}
	for _, a := range args {
		if strings.HasPrefix(a, "-") {
			_, v, ok := strings.Cut(a, "=")
			if !ok {
				continue // a flag's name; its value is the next argument
			}
			a = v
		}
		if _, err := os.Lstat(a); err == nil {
			continue // a file that exists: a path (--config, scan's PATH), not a key
		}
		switch {
		case keyShaped(a):
			g.red.Add(a)
		case len(a) >= 8 && !strings.ContainsAny(a, " \t\n"):
			g.pending = append(g.pending, a)
		}
	}
	return g
}

// keyShaped reports whether s has the shape of an API key or a token: at
// least 20 characters of letters, digits and -_.+/=~, with both letters
// and digits and a run of at least 16 letters and digits. Ids such as
// actionnetwork-main, UUIDs and words are not; hex and base64 keys are.
func keyShaped(s string) bool {
	if len(s) < 20 || len(s) > 4096 {
		return false
	}
	run, longest := 0, 0
	letters, digits := false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
			letters = true
			run++
		case c >= '0' && c <= '9':
			digits = true
			run++
		case strings.IndexByte("-_.+/=~", c) >= 0:
			run = 0
		default:
			return false
		}
		longest = max(longest, run)
	}
	return letters && digits && longest >= 16
}

// onRecord is what rekey knows of the configured keys' versions: the
// values Vault retains, and rekey's history of every version it stored or
// replaced (keyed hashes, pruned versions included).
type onRecord struct {
	keys      []secret.Key
	histories []*records.History
}

// holds reports whether k is one of the versions on record.
func (r onRecord) holds(k secret.Key) bool {
	for _, v := range r.keys {
		if v.Equal(k) {
			return true
		}
	}
	for _, h := range r.histories {
		if _, ok := h.Find(k); ok {
			return true
		}
	}
	return false
}

// configure tells the guard the configured ids (never keys) and how to
// read the keys' versions from Vault.
func (g *argGuard) configure(ids []string, lookup func(context.Context) onRecord) {
	if g == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.ids = map[string]bool{}
	for _, id := range ids {
		g.ids[id] = true
	}
	g.lookup = lookup
}

// settle reads the keys' versions from Vault, once, when an argument is
// still to be compared with them; where Vault cannot be reached, the
// shape test is all there is.
func (g *argGuard) settle(ctx context.Context) {
	if g == nil {
		return
	}
	g.mu.Lock()
	need := !g.learned && g.lookup != nil && slicesAny(g.pending, func(a string) bool { return !g.ids[a] })
	g.mu.Unlock()
	if need {
		g.learn(ctx)
	}
}

// learn reads the keys' versions from Vault (once) and hides every
// pending argument that is one of them or has the shape of one.
func (g *argGuard) learn(ctx context.Context) {
	if g == nil {
		return
	}
	g.mu.Lock()
	if g.learned || g.lookup == nil {
		g.mu.Unlock()
		return
	}
	g.learned = true
	lookup := g.lookup
	g.mu.Unlock()
	known := lookup(ctx)
	g.mu.Lock()
	defer g.mu.Unlock()
	g.known = known
	for _, k := range known.keys {
		g.shapes[k.Shape()] = true
	}
	for _, a := range g.pending {
		if !g.ids[a] && g.knownLocked(a) {
			g.red.Add(a)
		}
	}
}

// knownLocked reports whether s is a version on record or has the shape
// of one Vault retains.
func (g *argGuard) knownLocked(s string) bool {
	return g.shapes[secret.ShapeOf(s)] || g.known.holds(secret.New(s))
}

// looksLikeKey reports whether s looks like a key, as far as the guard
// knows (call learn first to compare with Vault's versions).
func (g *argGuard) looksLikeKey(s string) bool {
	if keyShaped(s) {
		return true
	}
	if g == nil {
		return false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return !g.ids[s] && g.knownLocked(s)
}

// holdsKey reports whether text (a note) holds something that looks like
// a key, and redacts that part from all output.
func (g *argGuard) holdsKey(text string) bool {
	found := false
	for _, tok := range strings.FieldsFunc(text, func(r rune) bool { return strings.ContainsRune(" \t\r\n\"'`,;:()[]{}<>|", r) }) {
		cands := []string{tok}
		if k, v, ok := strings.Cut(tok, "="); ok {
			cands = append(cands, k, v, strings.TrimRight(v, "="))
		}
		for _, c := range cands {
			if c != "" && g.looksLikeKey(c) {
				found = true
				if g != nil {
					g.red.Add(tok, c)
				}
				break
			}
		}
	}
	return found
}

func slicesAny(s []string, f func(string) bool) bool {
	for _, x := range s {
		if f(x) {
			return true
		}
	}
	return false
}
