package scan

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"slices"

	"github.com/rekey-dev/rekey/secret"
)

const (
	// gramLen is the width of the window the prefilter hashes. Every
	// pattern is at least this long.
	gramLen = 8

	// hashMul is the 64-bit golden-ratio multiplier (Fibonacci hashing).
	hashMul = 0x9E3779B97F4A7C15
)

type encoding uint8

const (
	encRaw encoding = iota
	encBase64
)

func (e encoding) String() string {
	if e == encRaw {
		return EncodingRaw
	}
	return EncodingBase64
}

// hit says whose pattern a pattern is: one needle in one encoding. Two
// needles holding the same key share their patterns.
type hit struct {
	needle int
	enc    encoding
}

type pattern struct {
	text []byte
	hits []hit
}

// anchor places a gram inside a pattern.
type anchor struct {
	pat int32
	off int32
}

// matcher finds every pattern in a buffer. It is built once per scan and
// read concurrently by the workers.
//
// The search is a sampled q-gram filter (the idea behind Wu-Manber): every
// pattern is at least minLen bytes long, so any occurrence holds, at one
// of its first stride = minLen-gramLen+1 offsets, a gram that starts at a
// multiple of stride inside the buffer. The table holds every gram at those
// offsets of every pattern; the search hashes one 8-byte gram per stride
// bytes, tests a bit in a small filter that stays in L1 cache, and only on
// a hit looks the gram up and compares whole patterns. With real keys
// (32 bytes and more) stride is 25 or so, so most of the text is never
// looked at by the matcher at all.
//
// Hashed needles have their own matcher (hashMatcher); a scan runs both
// over the same chunks when it has both kinds.
type matcher struct {
	needles []Needle
	hashed  *hashMatcher // nil when no needle is hashed
	carry   int          // bytes each chunk keeps of the previous one
	pats    []pattern
	minLen  int
	maxLen  int
	stride  int
	shift   uint
	filter  []uint64
	anchors map[uint64][]anchor
}

func compile(needles []Needle) (*matcher, error) {
	if len(needles) == 0 {
		return nil, errors.New("scan: no keys to look for")
	}
	m := &matcher{needles: slices.Clone(needles), anchors: make(map[uint64][]anchor)}
	for i, n := range m.needles {
		switch {
		case n.Key.IsZero() && n.Hash.IsZero():
			return nil, fmt.Errorf("scan: needle %d (%s) holds neither a key nor a hash", i, n.Label)
		case !n.Key.IsZero() && !n.Hash.IsZero():
			return nil, fmt.Errorf("scan: needle %d (%s) holds both a key and a hash; give one", i, n.Label)
		}
		if m.needles[i].Label == "" {
			if n.Key.IsZero() {
				m.needles[i].Label = n.Hash.label()
			} else {
				m.needles[i].Label = n.Key.Fingerprint()
			}
		}
	}
	index := make(map[string]int)
	add := func(text string, h hit) {
		i, ok := index[text]
		if !ok {
			i = len(m.pats)
			index[text] = i
			m.pats = append(m.pats, pattern{text: []byte(text)})
		}
		if !slices.Contains(m.pats[i].hits, h) {
			m.pats[i].hits = append(m.pats[i].hits, h)
		}
	}
	for i, n := range m.needles {
		if n.Key.IsZero() {
			continue
		}
		// Scanning has to compare bytes; the patterns never leave this package.
		v := n.Key.Reveal()
		if len(v) < MinKeyLen {
			return nil, fmt.Errorf("scan: key %s (%s) is shorter than %d bytes, too short to scan for",
				n.Key.Fingerprint(), n.Label, MinKeyLen)
		}
		add(v, hit{i, encRaw})
		for _, f := range secret.Base64Fragments(v) {
			add(f, hit{i, encBase64})
		}
	}
	var err error
	if m.hashed, err = compileHashed(m.needles); err != nil {
		return nil, err
	}
	if m.hashed != nil {
		m.carry = m.hashed.carry
	}
	if len(m.pats) == 0 {
		return m, nil
	}
	m.minLen, m.maxLen = len(m.pats[0].text), 0
	for _, p := range m.pats {
		m.minLen = min(m.minLen, len(p.text))
		m.maxLen = max(m.maxLen, len(p.text))
	}
	m.carry = max(m.carry, m.maxLen-1)
	m.stride = m.minLen - gramLen + 1
	grams := len(m.pats) * m.stride
	// About 1 bit in 64 set: few false hits, and small enough for L1.
	log2 := max(12, min(22, bits.Len(uint(grams*64-1))))
	m.shift = uint(64 - log2)
	m.filter = make([]uint64, 1<<log2/64)
	for pi, p := range m.pats {
		for off := 0; off < m.stride; off++ {
			g := binary.LittleEndian.Uint64(p.text[off:])
			h := (g * hashMul) >> m.shift
			m.filter[h>>6] |= 1 << (h & 63)
			m.anchors[g] = append(m.anchors[g], anchor{int32(pi), int32(off)})
		}
	}
	return m, nil
}

// find calls emit, in order of a sampled position inside each occurrence,
// for every occurrence of a pattern that lies wholly inside buf and ends
// after buf[from]. Occurrences ending at or before from were found in the
// previous buffer.
func (m *matcher) find(buf []byte, from int, emit func(pat, start int)) {
	n := len(buf)
	filter, shift, stride := m.filter, m.shift, m.stride
	for p := 0; p+gramLen <= n; p += stride {
		g := binary.LittleEndian.Uint64(buf[p:])
		h := (g * hashMul) >> shift
		if filter[h>>6]&(1<<(h&63)) == 0 {
			continue
		}
		for _, a := range m.anchors[g] {
			text := m.pats[a.pat].text
			s := p - int(a.off)
			e := s + len(text)
			if s < 0 || e > n || e <= from {
				continue
			}
			if bytes.Equal(buf[s:e], text) {
				emit(int(a.pat), s)
			}
		}
	}
}

// defaultChunk is how much is read at a time. Memory per worker is about
// this plus the longest pattern, whatever the size of the file.
const defaultChunk = 1 << 20

// scanStream reads r to the end through buf (len(buf) > m.carry), keeping
// the last m.carry bytes of each chunk in front of the next so that an
// occurrence across a chunk boundary is seen whole. hs is the hashed
// needles' state (nil when there are none). It returns the number of
// bytes read.
func (m *matcher) scanStream(ctx context.Context, r io.Reader, buf []byte, c *collector, hs *hashState) (int64, error) {
	var total int64
	carry := 0
	for {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		n, err := io.ReadFull(r, buf[carry:])
		total += int64(n)
		eof := err == io.EOF || err == io.ErrUnexpectedEOF
		if err != nil && !eof {
			return total, err
		}
		// A token that touched the end of the last chunk is decided only
		// once the end of the stream is known, even when nothing follows.
		if n > 0 || (eof && hs != nil && carry > 0) {
			end := carry + n
			data := buf[:end]
			c.startChunk(data)
			if n > 0 && len(m.pats) > 0 {
				m.find(data, carry, c.match)
			}
			if hs != nil {
				hs.find(data, carry, c.base, eof, c)
			}
			keep := min(m.carry, end)
			c.advance(end - keep)
			copy(buf, data[end-keep:])
			carry = keep
		}
		if eof {
			break
		}
	}
	c.flush()
	return total, nil
}

// span is one occurrence of one needle, in absolute file offsets.
type span struct {
	needle int
	s, e   int64
	line   int
}

type findingKey struct {
	line   int
	needle int
	enc    encoding
}

// collector turns the occurrences in one file into findings: it counts
// lines, keeps one finding per (line, needle, encoding), and drops a
// base64 occurrence that overlaps a raw occurrence of the same needle.
//
// Occurrences arrive in order of their sampled position, not their start,
// so a base64 one is held back until no raw one that overlaps it can
// still arrive; both lists stay a few entries long. (Hashed needles'
// copies never overlap; see hashState.find.)
type collector struct {
	m    *matcher
	path string

	data  []byte // current chunk
	base  int64  // file offset of data[0]
	pos   int    // data[:pos] is counted
	lines int    // newlines before data[pos]

	raws    []span // recent raw occurrences, for overlap checks
	pending []span // base64 occurrences not yet known to be free of overlap
	seen    map[findingKey]bool
	out     []Finding
}

func newCollector(m *matcher, path string) *collector {
	return &collector{m: m, path: path}
}

func (c *collector) startChunk(data []byte) {
	c.data, c.pos = data, 0
}

// lineOf returns how many newlines come before data[i].
func (c *collector) lineOf(i int) int {
	if i >= c.pos {
		c.lines += bytes.Count(c.data[c.pos:i], newline)
		c.pos = i
		return c.lines
	}
	return c.lines - bytes.Count(c.data[i:c.pos], newline)
}

var newline = []byte{'\n'}

// advance drops data[:i] ahead of the next chunk.
func (c *collector) advance(i int) {
	c.lines = c.lineOf(i)
	c.pos = i
	c.base += int64(i)
}

// match takes an occurrence of a keyed pattern from matcher.find.
func (c *collector) match(pat, start int) {
	p := &c.m.pats[pat]
	line := c.lineOf(start) + 1
	s := c.base + int64(start)
	e := s + int64(len(p.text))

	// No occurrence still to come starts before w: later ones in this
	// chunk start after start-stride, and ones in later chunks end after
	// this chunk does.
	w := min(s-int64(c.m.stride)+1, c.base+int64(len(c.data))-int64(c.m.maxLen)+1)
	c.raws = slices.DeleteFunc(c.raws, func(r span) bool { return r.e <= w })
	c.pending = slices.DeleteFunc(c.pending, func(b span) bool {
		if b.e <= w {
			c.add(b, encBase64)
			return true
		}
		return false
	})

	for _, h := range p.hits {
		sp := span{needle: h.needle, s: s, e: e, line: line}
		if h.enc == encRaw {
			c.pending = slices.DeleteFunc(c.pending, func(b span) bool { return overlap(b, sp) })
			c.raws = append(c.raws, sp)
			c.add(sp, encRaw)
			continue
		}
		if !slices.ContainsFunc(c.raws, func(r span) bool { return overlap(r, sp) }) {
			c.pending = append(c.pending, sp)
		}
	}
}

func overlap(a, b span) bool { return a.needle == b.needle && a.s < b.e && b.s < a.e }

func (c *collector) add(sp span, enc encoding) {
	k := findingKey{sp.line, sp.needle, enc}
	if c.seen[k] {
		return
	}
	if c.seen == nil {
		c.seen = make(map[findingKey]bool)
	}
	c.seen[k] = true
	n := c.m.needles[sp.needle]
	c.out = append(c.out, Finding{
		Path: c.path, Line: sp.line, Needle: sp.needle,
		Label: n.Label, State: n.State, Encoding: enc.String(),
	})
}

// flush settles the occurrences still held back, at the end of the file.
func (c *collector) flush() {
	for _, b := range c.pending {
		c.add(b, encBase64)
	}
	c.pending, c.raws = nil, nil
}
