package scan

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"slices"
	"strings"

	"github.com/rekey-dev/rekey/secret"
)

// MinSaltLen is the shortest salt a KeyHash may have. rekey's records use
// 32 random bytes per key.
const MinSaltLen = 16

// fpLen is how many bytes of SHA-256 a fingerprint shows.
const fpLen = 6

// MaxHashedKeyLen is the longest key that a hashed needle can find. It
// bounds how much of each chunk is carried over to the next.
const MaxHashedKeyLen = 1024

// KeyHash is what rekey's records keep of one version of a key instead of
// the key: the key's random salt, HMAC-SHA-256(Salt, key bytes) and the
// key's length. It finds copies of that version (Needle.Hash) and tells
// whether a key is that version (Matches), without holding it.
type KeyHash struct {
	Salt []byte            // at least MinSaltLen bytes; the same for every version of a key
	Sum  [sha256.Size]byte // HMAC-SHA-256(Salt, key bytes)
	Len  int               // the key's length in bytes
	// Fingerprint is the key's fingerprint (secret.Key.Fingerprint:
	// "sha256:" and 12 hex digits), which rekey shows and records anyway.
	// Optional: with it, a scan HMACs only the tokens whose SHA-256 starts
	// the same way, which makes it faster; without it, every token of the
	// right length is HMAC'd. A wrong one hides the version from scans.
	Fingerprint string
}

// HashKey returns the KeyHash of key under salt. Records and scans must
// both use it, so that they agree on what is hashed.
func HashKey(salt []byte, key secret.Key) (KeyHash, error) {
	if len(salt) < MinSaltLen {
		return KeyHash{}, fmt.Errorf("scan: salt of %d bytes is too short (at least %d)", len(salt), MinSaltLen)
	}
	if key.IsZero() {
		return KeyHash{}, errors.New("scan: cannot hash an empty key")
	}
	h := KeyHash{Salt: slices.Clone(salt), Len: key.Len(), Fingerprint: key.Fingerprint()}
	mac := hmac.New(sha256.New, salt)
	mac.Write([]byte(key.Reveal())) // hashing has to read the bytes; they go no further
	mac.Sum(h.Sum[:0])
	return h, nil
}

// Matches reports whether key is the version h was made from. The
// comparison takes the same time whatever the key.
func (h KeyHash) Matches(key secret.Key) bool {
	if h.IsZero() || key.Len() != h.Len {
		return false
	}
	mac := hmac.New(sha256.New, h.Salt)
	mac.Write([]byte(key.Reveal()))
	return subtle.ConstantTimeCompare(mac.Sum(nil), h.Sum[:]) == 1
}

// IsZero reports whether h holds no hash.
func (h KeyHash) IsZero() bool { return h.Len == 0 && len(h.Salt) == 0 }

// label is how findings name a hashed needle that has no Label: the start
// of its HMAC, which says nothing about the key without the salt.
func (h KeyHash) label() string { return "hmac:" + hex.EncodeToString(h.Sum[:6]) }

// HashFindable reports whether a scan by hash alone can find copies of
// key: nil when it can, else why not (never the key). A key qualifies
// when it is MinKeyLen to MaxHashedKeyLen bytes of the key alphabet
// ([A-Za-z0-9_-], with '.' only between two of those), as Action Network
// keys (32 hex digits) and most API keys are. The hash of any key still
// serves to refuse it (KeyHash.Matches); only scanning needs the shape.
func HashFindable(key secret.Key) error {
	v := key.Reveal() // read for its shape only
	switch {
	case len(v) < MinKeyLen:
		return fmt.Errorf("scan: key %s is shorter than %d bytes", key.Fingerprint(), MinKeyLen)
	case len(v) > MaxHashedKeyLen:
		return fmt.Errorf("scan: key %s is longer than %d bytes", key.Fingerprint(), MaxHashedKeyLen)
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if class[c]&clsKey != 0 {
			continue
		}
		if c == '.' && i > 0 && i+1 < len(v) && class[v[i-1]]&clsKey != 0 && class[v[i+1]]&clsKey != 0 {
			continue
		}
		return fmt.Errorf("scan: key %s holds characters outside [A-Za-z0-9_-] (or a '.' that is not between two of them): "+
			"copies of it can be found only while its value is known", key.Fingerprint())
	}
	return nil
}

// Byte classes. Every byte with a class is in a run that find walks.
const (
	clsKey = 1 << iota // [A-Za-z0-9_-]: a key's characters
	clsB64             // [A-Za-z0-9+/_-]: base64, standard or URL-safe
	clsDot             // '.': in a key, between two key characters
)

// class maps a byte to its classes; sextet maps a base64 character of
// either alphabet to its six bits.
var class, sextet = func() (cls, sx [256]uint8) {
	const b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	for i := range 64 {
		cls[b64[i]] |= clsB64
		sx[b64[i]] = uint8(i)
		if i < 62 {
			cls[b64[i]] |= clsKey
		}
	}
	cls['-'] |= clsKey | clsB64
	cls['_'] |= clsKey | clsB64
	cls['.'] |= clsDot
	sx['-'], sx['_'] = 62, 63
	return cls, sx
}()

// hashGroup is the hashed needles that share one salt (the versions of
// one key).
type hashGroup struct {
	salt []byte
	lens []bool               // by length: some needle of this group has it
	sums map[[32]byte][]int32 // HMAC → needle indexes
	// filtered: every needle of the group has a fingerprint, so a token
	// whose SHA-256 starts with none of them is not HMAC'd.
	filtered bool
}

// hashMatcher finds the copies of hashed needles: key-shaped tokens whose
// length is one of the needles' lengths are HMAC'd and looked up, raw and
// inside decoded base64 runs. Built once per scan, read concurrently.
//
// A token is a maximal run of [A-Za-z0-9_-] in which a '.' may stand
// between two such characters (so "hvs.CAES…" and JWTs are one token, and a
// key ending a sentence is still found). Tokens and base64 runs lie in runs
// of [A-Za-z0-9_.+/-]; the search samples one byte in every minLen, and
// only a sample that lands in such a run of minLen bytes or more makes the
// run be walked, once, for its tokens and base64 runs. Ordinary words are
// shorter than any key: a sample in one costs the bytes before it and one
// more. Inside a base64 run, decoded bytes are computed on demand (each
// from two characters) at each of the four alignments the stream can have
// in the run, and sampled in the same way: a run of binary base64 costs a
// few lookups per sample, and no run is decoded whole.
//
// A token of a hashed length is SHA-256'd and compared with the needles'
// fingerprints (when they all have one), and HMAC'd with each salt only
// when one matches; the HMAC decides.
type hashMatcher struct {
	groups []hashGroup
	prints map[[fpLen]byte]bool // the needles' fingerprints
	lens   []bool               // by length: some hashed needle has it
	minLen int
	maxLen int
	minRun int // shortest base64 run that can hold minLen bytes
	carry  int // bytes each chunk keeps of the previous one
}

func compileHashed(needles []Needle) (*hashMatcher, error) {
	h := &hashMatcher{minLen: MaxHashedKeyLen + 1}
	for i, n := range needles {
		if n.Hash.IsZero() {
			continue
		}
		hs := n.Hash
		switch {
		case len(hs.Salt) < MinSaltLen:
			return nil, fmt.Errorf("scan: hashed needle %d (%s): salt of %d bytes is too short (at least %d)", i, n.Label, len(hs.Salt), MinSaltLen)
		case hs.Len < MinKeyLen || hs.Len > MaxHashedKeyLen:
			return nil, fmt.Errorf("scan: hashed needle %d (%s): a key of %d bytes cannot be scanned for by its hash (%d to %d)",
				i, n.Label, hs.Len, MinKeyLen, MaxHashedKeyLen)
		}
		fp, hasFP := [fpLen]byte{}, hs.Fingerprint != ""
		if hasFP {
			b, err := hex.DecodeString(strings.TrimPrefix(hs.Fingerprint, "sha256:"))
			if err != nil || len(b) != fpLen || !strings.HasPrefix(hs.Fingerprint, "sha256:") {
				return nil, fmt.Errorf("scan: hashed needle %d (%s): fingerprint %q is not \"sha256:\" and %d hex digits", i, n.Label, hs.Fingerprint, 2*fpLen)
			}
			fp = [fpLen]byte(b)
		}
		gi := slices.IndexFunc(h.groups, func(g hashGroup) bool { return string(g.salt) == string(hs.Salt) })
		if gi < 0 {
			gi = len(h.groups)
			h.groups = append(h.groups, hashGroup{salt: slices.Clone(hs.Salt), lens: make([]bool, MaxHashedKeyLen+1), sums: map[[32]byte][]int32{}, filtered: true})
		}
		g := &h.groups[gi]
		g.filtered = g.filtered && hasFP
		if hasFP {
			if h.prints == nil {
				h.prints = map[[fpLen]byte]bool{}
			}
			h.prints[fp] = true
		}
		g.lens[hs.Len] = true
		g.sums[hs.Sum] = append(g.sums[hs.Sum], int32(i))
		h.minLen = min(h.minLen, hs.Len)
		h.maxLen = max(h.maxLen, hs.Len)
	}
	if len(h.groups) == 0 {
		return nil, nil
	}
	h.lens = make([]bool, h.maxLen+1)
	for gi := range h.groups {
		g := &h.groups[gi]
		g.lens = g.lens[:h.maxLen+1]
		for l, ok := range g.lens {
			h.lens[l] = h.lens[l] || ok
		}
	}
	h.minRun = (4*h.minLen + 2) / 3
	// A raw token is decided from its bytes and two on each side; a
	// base64 one from the characters of its bytes and two decoded bytes on
	// each side (4/3 as many), plus up to three characters of alignment
	// at each end and the character that ends the run; and a margin.
	h.carry = 4*(h.maxLen+4)/3 + 16
	return h, nil
}

// hashState is a stream's scratch: one per worker, reused across files.
type hashState struct {
	h    *hashMatcher
	macs []hash.Hash // one per group
	sum  [sha256.Size]byte
	tok  []byte // a decoded token
	occ  []occurrence
}

// occurrence is one copy of one needle, in offsets of the current chunk.
type occurrence struct {
	needle int
	enc    encoding
	s, e   int
}

func (h *hashMatcher) newState() *hashState {
	if h == nil {
		return nil
	}
	st := &hashState{h: h, tok: make([]byte, h.maxLen)}
	for _, g := range h.groups {
		st.macs = append(st.macs, hmac.New(sha256.New, g.salt))
	}
	return st
}

// check hashes tok and records an occurrence for every needle it is.
func (st *hashState) check(tok []byte, s, e int, enc encoding) {
	printed := -1 // whether tok's SHA-256 starts like a fingerprint; -1 not known yet
	for gi := range st.h.groups {
		g := &st.h.groups[gi]
		if !g.lens[len(tok)] {
			continue
		}
		if g.filtered {
			if printed < 0 {
				sum := sha256.Sum256(tok)
				printed = 0
				if st.h.prints[[fpLen]byte(sum[:fpLen])] {
					printed = 1
				}
			}
			if printed == 0 {
				continue
			}
		}
		mac := st.macs[gi]
		mac.Reset()
		mac.Write(tok)
		mac.Sum(st.sum[:0])
		for _, n := range g.sums[st.sum] {
			st.occ = append(st.occ, occurrence{needle: int(n), enc: enc, s: s, e: e})
		}
	}
}

// find reports to c every copy of a hashed needle in d that was not
// decided in an earlier chunk. d[:from] is what the last chunk kept; base
// is d[0]'s file offset; final says d ends the stream.
//
// A token is decided once the bytes around it are known: two on each side
// (a '.' next to it may or may not belong to it), or the start or end of
// the stream. It is reported by the first chunk that holds all of them,
// which is the one where its window ends after from.
func (st *hashState) find(d []byte, from int, base int64, final bool, c *collector) {
	st.occ = st.occ[:0]
	h := st.h
	n, m := len(d), h.minLen
	// Key tokens and base64 runs lie in runs of [A-Za-z0-9_.+/-]; one of
	// minLen bytes or more holds one of the samples d[lo+m-1].
	lo := 0 // every run that starts in d[:lo] is handled
	for p := m - 1; p < n; p = lo + m - 1 {
		if class[d[p]] == 0 {
			lo = p + 1
			continue
		}
		s := p
		for s > 0 && class[d[s-1]] != 0 {
			s--
		}
		if s+m-1 < n && class[d[s+m-1]] == 0 {
			// Too short, as is any run that starts before d[s+m-1].
			lo = s + m
			continue
		}
		lo = st.walk(d, s, from, final) + 1
	}
	// A raw copy and a base64 copy of one key never overlap here, so
	// (unlike keyed needles) no base64 copy is dropped for a raw one: the
	// base64 of key characters holds no '+' or '/' (each six bits of them
	// are at most 61), so a raw token that shares characters with the
	// base64 of a key holds all of its inner characters, more than the
	// key's length.
	for _, o := range st.occ {
		c.add(span{needle: o.needle, s: base + int64(o.s), e: base + int64(o.e), line: c.lineOf(o.s) + 1}, o.enc)
	}
}

// walk goes through the run of [A-Za-z0-9_.+/-] that starts at d[i],
// splitting it into key tokens (at '+', '/' and a '.' not between two key
// characters) and base64 runs (at '.'), and returns where the run ends.
func (st *hashState) walk(d []byte, i, from int, final bool) int {
	n := len(d)
	ts, bs := i, i // where the current token and base64 run start
	for {
		for i < n && class[d[i]]&clsKey != 0 {
			i++
		}
		if i < n {
			switch d[i] {
			case '.':
				if i > ts && i+1 < n && class[d[i+1]]&clsKey != 0 {
					st.base64(d, bs, i, from, final) // the token goes on
				} else {
					st.token(d, ts, i, from, final)
					st.base64(d, bs, i, from, final)
					ts = i + 1
				}
				i++
				bs = i
				continue
			case '+', '/':
				st.token(d, ts, i, from, final)
				i++
				ts = i
				continue
			}
		}
		st.token(d, ts, i, from, final)
		st.base64(d, bs, i, from, final)
		return i
	}
}

// token looks up the token d[s:e].
func (st *hashState) token(d []byte, s, e, from int, final bool) {
	h := st.h
	// Its left side is in d: a token that ends after from-2 starts after
	// from-2-maxLen, which is beyond d[1] (carry is that long).
	l := e - s
	if l < h.minLen || l > h.maxLen || !h.lens[l] ||
		(e+2 > len(d) && !final) || // its right side is not read yet
		e+2 <= from { // decided in the chunk before
		return
	}
	st.check(d[s:e], s, e, encRaw)
}

// base64 looks for tokens in what the base64 run d[rs:re] decodes to.
func (st *hashState) base64(d []byte, rs, re, from int, final bool) {
	n := len(d)
	if re+1 <= from {
		return // ended in the part of the last chunk kept: decided there
	}
	if re-rs < st.h.minRun {
		return
	}
	// A run at d[0] may have begun in an earlier chunk, and its stream
	// before d[0]; it is taken to start here all the same. That matters
	// only to tokens in its first few characters, and their windows end in
	// the part of the earlier chunk that d holds (carry is that long):
	// they were decided there, and are not reported again.
	closedRight := re < n || final
	for a := range 4 {
		st.findDecoded(d, rs+a, re, closedRight, from)
	}
}

// dec is the j-th byte decoded from the base64 characters starting at
// d[q].
func dec(d []byte, q, j int) byte {
	k := q + j/3*4 + j%3
	r := uint(j%3) * 2
	return sextet[d[k]]<<(2+r) | sextet[d[k+1]]>>(4-r)
}

// lastChar is the index of the last character that decoded byte j of
// the stream starting at d[q] depends on.
func lastChar(q, j int) int { return q + j/3*4 + j%3 + 1 }

// findDecoded looks for tokens in the bytes that d[q:re] decodes to,
// taking the stream to start at q. closedRight says it ends at re.
func (st *hashState) findDecoded(d []byte, q, re int, closedRight bool, from int) {
	h := st.h
	n, m := (re-q)*3/4, h.minLen
	isKey := func(j int) bool { return class[dec(d, q, j)]&clsKey != 0 }
	isDot := func(j int) bool { return dec(d, q, j) == '.' }
	lo := 0
	for p := m - 1; p < n; p = lo + m - 1 {
		b := dec(d, q, p)
		if class[b]&clsKey == 0 && (b != '.' || !isKey(p-1) || p+1 >= n || !isKey(p+1)) {
			lo = p + 1
			continue
		}
		s, e := p, p+1
		for {
			for s > 0 && isKey(s-1) {
				s--
			}
			if s >= 2 && isDot(s-1) && isKey(s-2) && isKey(s) {
				s--
				continue
			}
			break
		}
		if s+m-1 < n && class[dec(d, q, s+m-1)]&(clsKey|clsDot) == 0 {
			lo = s + m // too short, as is any token that starts before s+m-1
			continue
		}
		for {
			for e < n && isKey(e) {
				e++
			}
			if e+1 < n && isDot(e) && isKey(e-1) && isKey(e+1) {
				e++
				continue
			}
			break
		}
		lo = e + 1
		l := e - s
		if l > h.maxLen || !h.lens[l] || (e+2 > n && !closedRight) {
			continue
		}
		end := re + 1 // the window's end: the character after the run ends it
		if e+2 <= n {
			end = lastChar(q, e+1) + 1
		}
		if end <= from {
			continue // decided in the chunk before
		}
		tok := st.tok[:l]
		for j := range tok {
			tok[j] = dec(d, q, s+j)
		}
		st.check(tok, q+s/3*4+s%3, lastChar(q, e-1)+1, encBase64)
	}
}
