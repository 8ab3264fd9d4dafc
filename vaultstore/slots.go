package vaultstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/records"
	"github.com/rekey-dev/rekey/state"
)

// A record that is rewritten whole (an audit, what serve said) and would
// not fit in one entry keeps its per-integration entries on pages in one
// of two slots, a and b. A write fills the slot the head does not name,
// then points the head at it with check-and-set, so the head always names
// a complete set of pages: a crash or a lost race leaves the previous one
// in place. Each page carries the nonce of the write it belongs to, so
// that pages overwritten by a writer that then lost the race are noticed.
//
//	keys/<key>/audit                          the latest audit's head
//	keys/<key>/audits/<slot>/<n>              its integrations' states
//	serve/said                                what serve said (head)
//	serve/said-pages/<key>/<slot>/<n>         the states it told of that key's integrations
type slotPages struct {
	Slot  string `json:"slot"`
	Pages int    `json:"pages"`
	Nonce string `json:"nonce"`
}

// slottedPage is one page of a slotted record: entries by integration id.
type slottedPage struct {
	Nonce   string                     `json:"nonce"`
	Entries map[string]json.RawMessage `json:"entries"`
}

func otherSlot(prev *slotPages) string {
	if prev != nil && prev.Slot == "a" {
		return "b"
	}
	return "a"
}

func newNonce() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// writeSlotted writes entries over pages under dir in the slot prev does
// not name, and returns what the head must say.
func (s *Store) writeSlotted(ctx context.Context, dir string, prev *slotPages, entries map[string]json.RawMessage) (*slotPages, error) {
	sp := &slotPages{Slot: otherSlot(prev), Nonce: newNonce()}
	total := 0
	for _, e := range entries {
		total += len(e) + 40
	}
	n := max(1, (total+pageBudget/2-1)/(pageBudget/2))
	for {
		pagesOf := make([]map[string]json.RawMessage, n)
		for id, e := range entries {
			b := bucket(id, n)
			if pagesOf[b] == nil {
				pagesOf[b] = map[string]json.RawMessage{}
			}
			pagesOf[b][id] = e
		}
		var ws []pageWrite
		fits := true
		for i, m := range pagesOf {
			b, err := json.Marshal(slottedPage{Nonce: sp.Nonce, Entries: m})
			if err != nil {
				return nil, err
			}
			if len(b) > pageBudget {
				fits = false
				break
			}
			ws = append(ws, pageWrite{rel: fmt.Sprintf("%s/%s/%06d", dir, sp.Slot, i), b: b})
		}
		if fits {
			sp.Pages = n
			// The slot is this write's: a page in it from an earlier
			// write is written over.
			return sp, s.writePages(ctx, ws, func(context.Context) bool { return true })
		}
		n *= 2
	}
}

// readSlotted reads the pages sp names under dir. A page that belongs to
// another write (a writer that lost the race overwrote it) is
// failure.ErrTransient: read the head again.
func (s *Store) readSlotted(ctx context.Context, dir string, sp *slotPages) (map[string]json.RawMessage, error) {
	rels := make([]string, sp.Pages)
	for i := range rels {
		rels[i] = fmt.Sprintf("%s/%s/%06d", dir, sp.Slot, i)
	}
	pages := make([]slottedPage, len(rels))
	err := s.readPages(ctx, rels, func(i int, raw []byte) error {
		if err := json.Unmarshal(raw, &pages[i]); err != nil {
			return fmt.Errorf("vault: decode page %s: %w", rels[i], err)
		}
		if pages[i].Nonce != sp.Nonce {
			return fmt.Errorf("vault: page %s belongs to another write: %w", rels[i], failure.ErrTransient)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := map[string]json.RawMessage{}
	for _, pg := range pages {
		for id, e := range pg.Entries {
			out[id] = e
		}
	}
	return out, nil
}

// withRetry reads a slotted record again when a page belonged to another
// write (a writer was in the middle of replacing it).
func withRetry[T any](ctx context.Context, read func() (T, int, error)) (T, int, error) {
	var v T
	var version int
	var err error
	for attempt := range 3 {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return v, version, ctx.Err()
			case <-time.After(time.Duration(attempt) * 50 * time.Millisecond):
			}
		}
		v, version, err = read()
		if !errors.Is(err, failure.ErrTransient) {
			break
		}
	}
	return v, version, err
}

func (s *Store) rememberSlot(rel string, sp *slotPages) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.slots == nil {
		s.slots = map[string]*slotPages{}
	}
	s.slots[rel] = sp
}

// slotOf is the slot this store last saw named for the pages under key,
// or, when it has seen none, what head (a read of the record's head)
// says.
func (s *Store) slotOf(key string, head func() *slotPages) *slotPages {
	s.mu.Lock()
	sp, ok := s.slots[key]
	s.mu.Unlock()
	if ok {
		return sp
	}
	return head()
}

func auditPagesDir(keyID string) string { return "keys/" + keyID + "/audits" }

// auditHead is an audit as its head entry holds it: the integrations'
// states in it, or on pages.
type auditHead struct {
	records.Audit
	Pages *slotPages `json:"pages,omitempty"`
}

// LastAudit reads the key's latest audit, with its version for
// check-and-set; failure.ErrNotFound (with the version that creates it)
// when the key was never audited. An audit recorded in the key's state by
// an earlier rekey is read when there is none of its own yet.
func (s *Store) LastAudit(ctx context.Context, keyID string) (*records.Audit, int, error) {
	return withRetry(ctx, func() (*records.Audit, int, error) {
		var h auditHead
		v, err := s.GetRecord(ctx, auditPath(keyID), &h)
		if errors.Is(err, failure.ErrNotFound) {
			if st, _, serr := s.KeyState(ctx, keyID); serr == nil && st.LastAudit != nil {
				return st.LastAudit, v, nil
			}
		}
		if err != nil {
			return nil, v, err
		}
		s.rememberSlot(auditPath(keyID), h.Pages)
		a := h.Audit
		if h.Pages != nil {
			entries, err := s.readSlotted(ctx, auditPagesDir(keyID), h.Pages)
			if err != nil {
				return nil, v, fmt.Errorf("vault: audit of %s: %w", keyID, err)
			}
			a.Integrations = make(map[string]state.Status, len(entries))
			for id, raw := range entries {
				var st state.Status
				if err := json.Unmarshal(raw, &st); err != nil {
					return nil, v, fmt.Errorf("vault: audit of %s: %s: %w", keyID, id, err)
				}
				a.Integrations[id] = st
			}
		}
		return &a, v, nil
	})
}

// SaveAudit records the key's latest audit with check-and-set on cas; a
// large one is laid out over pages first.
func (s *Store) SaveAudit(ctx context.Context, keyID string, a *records.Audit, cas int) (int, error) {
	rel := auditPath(keyID)
	h := auditHead{Audit: *a}
	if b, err := json.Marshal(&h); err != nil || len(b) <= pageBudget {
		v, err := s.PutRecord(ctx, rel, &h, cas)
		if err == nil {
			s.rememberSlot(rel, nil)
		}
		return v, err
	}
	entries := make(map[string]json.RawMessage, len(a.Integrations))
	for id, st := range a.Integrations {
		st.Reason = clip(st.Reason)
		b, err := json.Marshal(st)
		if err != nil {
			return 0, err
		}
		entries[id] = b
	}
	prev := s.slotOf(rel, func() *slotPages {
		var old auditHead
		s.GetRecord(ctx, rel, &old)
		return old.Pages
	})
	sp, err := s.writeSlotted(ctx, auditPagesDir(keyID), prev, entries)
	if err != nil {
		return 0, err
	}
	h.Integrations, h.Pages = nil, sp
	v, err := s.PutRecord(ctx, rel, &h, cas)
	if err == nil {
		s.rememberSlot(rel, sp)
	}
	return v, err
}

const (
	saidPath  = "serve/said"
	leasePath = "serve/lease"
)

func saidPagesDir(keyID string) string { return "serve/said-pages/" + keyID }

// saidHead is what serve said as its head entry holds it: a key's
// integrations in it, or on pages.
type saidHead struct {
	records.Said
	Pages map[string]*slotPages `json:"pages,omitempty"`
}

// slottedKeyMin is how many integrations a key needs before what serve
// said of them goes on pages of their own.
const slottedKeyMin = 200

// Said reads what `rekey serve` has told the team, with its version.
func (s *Store) Said(ctx context.Context) (*records.Said, int, error) {
	return withRetry(ctx, func() (*records.Said, int, error) {
		var h saidHead
		v, err := s.GetRecord(ctx, saidPath, &h)
		if err != nil {
			return nil, v, err
		}
		said := h.Said
		for keyID, sp := range h.Pages {
			s.rememberSlot(saidPagesDir(keyID), sp)
			ks := said.Keys[keyID]
			if ks == nil {
				continue
			}
			entries, err := s.readSlotted(ctx, saidPagesDir(keyID), sp)
			if err != nil {
				return nil, v, fmt.Errorf("vault: what serve said of %s: %w", keyID, err)
			}
			ks.Integrations = make(map[string]records.IntegrationSaid, len(entries))
			for id, raw := range entries {
				var is records.IntegrationSaid
				if err := json.Unmarshal(raw, &is); err != nil {
					return nil, v, fmt.Errorf("vault: what serve said of %s: %s: %w", keyID, id, err)
				}
				ks.Integrations[id] = is
			}
		}
		return &said, v, nil
	})
}

// SaveSaid writes what `rekey serve` has told the team with check-and-set;
// the integrations of a key with many are laid out over pages first.
func (s *Store) SaveSaid(ctx context.Context, said *records.Said, cas int) (int, error) {
	h := saidHead{Said: *said}
	if b, err := json.Marshal(&h); err != nil || len(b) <= pageBudget {
		return s.PutRecord(ctx, saidPath, &h, cas)
	}
	h.Keys = make(map[string]*records.KeySaid, len(said.Keys))
	ids := make([]string, 0, len(said.Keys))
	for id := range said.Keys {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var old *saidHead // the head as it stands, for keys whose slot this store has not seen
	for _, keyID := range ids {
		ks := said.Keys[keyID]
		if ks == nil || len(ks.Integrations) < slottedKeyMin {
			h.Keys[keyID] = ks
			continue
		}
		entries := make(map[string]json.RawMessage, len(ks.Integrations))
		for id, is := range ks.Integrations {
			b, err := json.Marshal(is)
			if err != nil {
				return 0, err
			}
			entries[id] = b
		}
		dir := saidPagesDir(keyID)
		prev := s.slotOf(dir, func() *slotPages {
			if old == nil { // read once, whatever the number of keys
				old = &saidHead{}
				s.GetRecord(ctx, saidPath, old)
			}
			return old.Pages[keyID]
		})
		sp, err := s.writeSlotted(ctx, dir, prev, entries)
		if err != nil {
			return 0, err
		}
		if h.Pages == nil {
			h.Pages = map[string]*slotPages{}
		}
		h.Pages[keyID] = sp
		c := *ks
		c.Integrations = nil
		h.Keys[keyID] = &c
	}
	v, err := s.PutRecord(ctx, saidPath, &h, cas)
	if err == nil {
		for keyID, sp := range h.Pages {
			s.rememberSlot(saidPagesDir(keyID), sp)
		}
	}
	return v, err
}

// ServeLease reads the serve lease's record, with its version.
func (s *Store) ServeLease(ctx context.Context) (records.ServeLease, int, error) {
	var l records.ServeLease
	v, err := s.GetRecord(ctx, leasePath, &l)
	return l, v, err
}

// PutServeLease writes the serve lease's record with check-and-set.
func (s *Store) PutServeLease(ctx context.Context, l records.ServeLease, cas int) (int, error) {
	return s.PutRecord(ctx, leasePath, l, cas)
}
