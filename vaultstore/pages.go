package vaultstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash/fnv"
	"sync"

	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/records"
)

// MaxEntry is the most a record entry this store writes may hold, in
// bytes of JSON: a quarter of what Vault's integrated storage (Raft)
// accepts by default and half of Consul's limit. A record that would be
// larger (a rotation of thousands of integrations, an audit of them, what
// serve said of them) is laid out over pages, each well under it; an
// entry over it is never sent.
const MaxEntry = 256 << 10

// pageBudget is what a page is filled up to: room is left under MaxEntry
// for an entry that grows a little before its page is laid out again.
const pageBudget = 160 << 10

// maxText is the longest reason or note a page keeps (a longer one is cut
// with a mark): the engine keeps them shorter, and this bounds the size of
// one integration's entry whatever it was given.
const maxText = 4 << 10

// writeBound is how many page writes go to Vault at once.
const writeBound = 16

// pageHash is what a page held when this store last wrote or read it.
type pageHash [sha256.Size]byte

func hashOf(b []byte) pageHash { return sha256.Sum256(b) }

// pageCache remembers, per page path, what this store last wrote or read
// there, so that a page that did not change is not written again.
type pageCache struct {
	mu     sync.Mutex
	hashes map[string]pageHash
}

func (c *pageCache) same(p string, b []byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	h, ok := c.hashes[p]
	return ok && h == hashOf(b)
}

func (c *pageCache) remember(p string, b []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.hashes == nil {
		c.hashes = map[string]pageHash{}
	}
	c.hashes[p] = hashOf(b)
}

// bucket is which of n pages an entry with this id goes to: a hash of the
// id, so that an entry stays on its page whatever else changes.
func bucket(id string, n int) int {
	h := fnv.New32a()
	h.Write([]byte(id))
	return int(h.Sum32() % uint32(n))
}

// pageWrite is one page to write: rel under the state path, b its body.
type pageWrite struct {
	rel string
	b   []byte
}

// writePages writes the pages that changed since this store last wrote or
// read them, writeBound at once, each with check-and-set on the version
// this store knows. A page in the way that this store never saw (a
// crashed run's) is written over when owned says the record is still this
// store's to write; otherwise a conflict is failure.ErrConflict.
func (s *Store) writePages(ctx context.Context, pages []pageWrite, owned func(context.Context) bool) error {
	sem := make(chan struct{}, writeBound)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for _, pg := range pages {
		p := s.RecordPath(pg.rel)
		if s.pages.same(p, pg.b) {
			continue
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			err := s.writePage(ctx, p, pg.b, owned)
			if err == nil {
				s.pages.remember(p, pg.b)
				return
			}
			mu.Lock()
			if first == nil {
				first = err
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	return first
}

func (s *Store) writePage(ctx context.Context, p string, b []byte, owned func(context.Context) bool) error {
	s.mu.Lock()
	cas := s.seen(p).version
	s.mu.Unlock()
	_, err := s.put(ctx, p, b, cas)
	if !errors.Is(err, failure.ErrConflict) {
		return err
	}
	_, version, rerr := s.getRaw(ctx, p)
	if rerr != nil && !errors.Is(rerr, failure.ErrNotFound) {
		return rerr
	}
	if owned != nil && !owned(ctx) {
		return err
	}
	_, err = s.put(ctx, p, b, version)
	return err
}

// readPages reads the pages rels (under the state path) at once and
// decodes each into out[i] with decode.
func (s *Store) readPages(ctx context.Context, rels []string, decode func(i int, raw []byte) error) error {
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	errs := make([]error, len(rels))
	for i, rel := range rels {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			p := s.RecordPath(rel)
			raw, version, err := s.getBytes(ctx, p)
			if err != nil {
				errs[i] = fmt.Errorf("vault: page %s: %w", rel, err)
				return
			}
			s.mu.Lock()
			s.seen(p).version, s.seen(p).lost = version, nil
			s.mu.Unlock()
			errs[i] = decode(i, raw)
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// pack lays items (each one JSON value) out as pages {"<field>": [...]}
// of at most budget bytes each, in order; an item is never split. It
// returns each page's body and how many items it holds.
func pack(field string, items [][]byte, budget int) (pages [][]byte, counts []int) {
	head := []byte(`{"` + field + `":[`)
	var cur bytes.Buffer
	n := 0
	flush := func() {
		cur.WriteString("]}")
		pages = append(pages, bytes.Clone(cur.Bytes()))
		counts = append(counts, n)
		cur.Reset()
		n = 0
	}
	for _, it := range items {
		if n > 0 && cur.Len()+1+len(it)+2 > budget {
			flush()
		}
		if n == 0 {
			cur.Write(head)
		} else {
			cur.WriteByte(',')
		}
		cur.Write(it)
		n++
	}
	if n > 0 || len(pages) == 0 {
		if n == 0 {
			cur.Write(head)
		}
		flush()
	}
	return pages, counts
}

// clip cuts s to maxText bytes with a mark.
func clip(s string) string { return Truncate(s, maxText) }

func clipIntegration(in *records.Integration) *records.Integration {
	if len(in.Reason) <= maxText && len(in.Note) <= maxText {
		return in
	}
	c := *in
	c.Reason, c.Note = clip(c.Reason), clip(c.Note)
	return &c
}

func clipTransition(t records.Transition) records.Transition {
	t.Reason = clip(t.Reason)
	return t
}
