package vaultstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/records"
	"github.com/rekey-dev/rekey/store"
)

// JournalPart is how many transitions one journal part held in the
// layout of records before pages (read, never written now).
const JournalPart = 1000

// A rotation's record is one entry while it is small. Once it would not
// fit in a page, it is laid out over several, each written with
// check-and-set and only when it changed:
//
//	keys/<key>/rotations/<id>                   the head: everything but the lists below
//	keys/<key>/rotations/<id>/integrations/<n>  the integrations' entries, each on the page a hash of its id names
//	keys/<key>/journals/<id>/<n>                the journal's full pages, each written once; the rest is in the head
//	keys/<key>/rotations/<id>/timeline/<n>      the incident timeline, in order
//
// The pages are written before the head, so a crash between them leaves
// the head's view, or a newer one, of each integration and journal line.
type rotationHead struct {
	records.Rotation
	Layout           int `json:"layout,omitempty"` // pagedLayout: the head says how many pages of each list there are
	IntegrationPages int `json:"integration_pages,omitempty"`
	JournalPages     int `json:"journal_pages,omitempty"`
	TimelinePages    int `json:"timeline_pages,omitempty"`
}

const pagedLayout = 2

// perPage is about how many integrations' entries a page holds.
const perPage = 400

// inlineMax is the most integrations a record keeps in its head.
const inlineMax = 200

// rotationLayout is how this store last laid out one rotation's record.
type rotationLayout struct {
	paged   bool
	pages   int   // integration pages
	journal []int // transitions on each journal page, in order
}

type integrationPage struct {
	Integrations []*records.Integration `json:"integrations"`
}

type journalRecord struct {
	Transitions []records.Transition `json:"transitions"`
}

type timelinePage struct {
	Marks []records.Mark `json:"marks"`
}

func rotationPath(keyID, id string) string { return "keys/" + keyID + "/rotations/" + id }

func integrationPagePath(keyID, id string, n int) string {
	return fmt.Sprintf("%s/integrations/%06d", rotationPath(keyID, id), n)
}

func timelinePagePath(keyID, id string, n int) string {
	return fmt.Sprintf("%s/timeline/%06d", rotationPath(keyID, id), n)
}

func journalPath(keyID, rotationID string, n int) string {
	return fmt.Sprintf("keys/%s/journals/%s/%06d", keyID, rotationID, n)
}

func (s *Store) layout(keyID, id string) rotationLayout {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.layouts[keyID+"/"+id]
	if l == nil {
		return rotationLayout{}
	}
	return rotationLayout{paged: l.paged, pages: l.pages, journal: slices.Clone(l.journal)}
}

func (s *Store) setLayout(keyID, id string, l rotationLayout) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.layouts == nil {
		s.layouts = map[string]*rotationLayout{}
	}
	s.layouts[keyID+"/"+id] = &l
}

// SaveRotation writes a rotation's record with check-and-set: a new
// record is created (cas 0), one this store wrote or read before is
// updated on the version it knows, and so is each of its pages. Only the
// rotation lock's holder writes a rotation, so a conflict
// (failure.ErrConflict) means the lock was lost to another process, whose
// record is not overwritten. A page in the way that this store never saw
// (a crashed run of the same rotation wrote it) is written over. The
// journal is only ever appended to: a full journal page is written once.
func (s *Store) SaveRotation(ctx context.Context, r *records.Rotation) error {
	lay := s.layout(r.KeyID, r.ID)
	head := rotationHead{Rotation: *r, Layout: pagedLayout}
	head.JournalParts = 0
	if !lay.paged && len(r.Integrations) <= inlineMax {
		b, err := json.Marshal(&head)
		if err != nil {
			return err
		}
		if len(b) <= pageBudget {
			return s.saveRecordBytes(ctx, rotationPath(r.KeyID, r.ID), b, false)
		}
	}
	lay.paged = true
	var pages []pageWrite

	// The integrations, each on the page its id's hash names.
	if lay.pages == 0 {
		lay.pages = max(1, (len(r.Integrations)+perPage-1)/perPage)
	}
	for {
		buckets := make([][]*records.Integration, lay.pages)
		for id, in := range r.Integrations {
			b := bucket(id, lay.pages)
			buckets[b] = append(buckets[b], clipIntegration(in))
		}
		var ps []pageWrite
		fits := true
		for n, bk := range buckets {
			slices.SortFunc(bk, func(a, b *records.Integration) int { return strings.Compare(a.ID, b.ID) })
			b, err := json.Marshal(integrationPage{Integrations: bk})
			if err != nil {
				return err
			}
			if len(b) > pageBudget {
				fits = false
				break
			}
			ps = append(ps, pageWrite{rel: integrationPagePath(r.KeyID, r.ID, n), b: b})
		}
		if fits {
			pages = append(pages, ps...)
			break
		}
		lay.pages *= 2 // laid out again over more pages
	}

	// The journal: full pages are written once; the rest, under a page,
	// stays in the head until it fills one.
	from := 0
	for _, c := range lay.journal {
		from += c
	}
	if from > len(r.Journal) { // not the journal this store wrote: afresh
		lay.journal, from = nil, 0
	}
	var tail []records.Transition
	if rest := r.Journal[from:]; len(rest) > 0 {
		items := make([][]byte, len(rest))
		for i, t := range rest {
			b, err := json.Marshal(clipTransition(t))
			if err != nil {
				return err
			}
			items[i] = b
		}
		bodies, counts := pack("transitions", items, pageBudget)
		full := len(bodies) - 1 // the last page is not full
		for i, b := range bodies[:full] {
			pages = append(pages, pageWrite{rel: journalPath(r.KeyID, r.ID, len(lay.journal)+i), b: b})
		}
		lay.journal = append(lay.journal, counts[:full]...)
		for _, t := range rest[len(rest)-counts[full]:] {
			tail = append(tail, clipTransition(t))
		}
	}

	// The timeline.
	var timeline int
	if len(r.Timeline) > 0 {
		items := make([][]byte, len(r.Timeline))
		for i, m := range r.Timeline {
			m.What = clip(m.What)
			b, err := json.Marshal(m)
			if err != nil {
				return err
			}
			items[i] = b
		}
		bodies, _ := pack("marks", items, pageBudget)
		for i, b := range bodies {
			pages = append(pages, pageWrite{rel: timelinePagePath(r.KeyID, r.ID, i), b: b})
		}
		timeline = len(bodies)
	}

	headRel := rotationPath(r.KeyID, r.ID)
	if err := s.writePages(ctx, pages, func(ctx context.Context) bool { return s.unchanged(ctx, headRel) }); err != nil {
		return err
	}
	head.Integrations, head.Journal, head.Timeline = nil, tail, nil
	head.Error = clip(head.Error)
	head.IntegrationPages, head.JournalPages, head.TimelinePages = lay.pages, len(lay.journal), timeline
	b, err := json.Marshal(&head)
	if err != nil {
		return err
	}
	if err := s.saveRecordBytes(ctx, headRel, b, false); err != nil {
		return err
	}
	s.setLayout(r.KeyID, r.ID, lay)
	return nil
}

// unchanged reports whether the record at rel is still at the version
// this store last wrote or read (nobody else wrote it since).
func (s *Store) unchanged(ctx context.Context, rel string) bool {
	p := s.RecordPath(rel)
	s.mu.Lock()
	known := s.seen(p).version
	s.mu.Unlock()
	_, version, err := s.getRaw(ctx, p)
	if errors.Is(err, failure.ErrNotFound) {
		return known == 0
	}
	return err == nil && version == known
}

// Rotation reads one rotation's record, with every integration and its
// whole journal and timeline, whichever layout it was written in.
func (s *Store) Rotation(ctx context.Context, keyID, id string) (*records.Rotation, error) {
	var h rotationHead
	if _, err := s.GetRecord(ctx, rotationPath(keyID, id), &h); err != nil {
		return nil, err
	}
	r := h.Rotation
	if r.Integrations == nil {
		r.Integrations = map[string]*records.Integration{}
	}
	if h.Layout < pagedLayout {
		return s.oldLayout(ctx, keyID, id, &r)
	}
	if h.IntegrationPages == 0 && h.JournalPages == 0 && h.TimelinePages == 0 {
		return &r, nil // all in the head
	}
	var rels []string
	for n := range h.IntegrationPages {
		rels = append(rels, integrationPagePath(keyID, id, n))
	}
	for n := range h.JournalPages {
		rels = append(rels, journalPath(keyID, id, n))
	}
	for n := range h.TimelinePages {
		rels = append(rels, timelinePagePath(keyID, id, n))
	}
	ints := make([]integrationPage, h.IntegrationPages)
	journal := make([]journalRecord, h.JournalPages)
	timeline := make([]timelinePage, h.TimelinePages)
	err := s.readPages(ctx, rels, func(i int, raw []byte) error {
		var v any
		switch {
		case i < h.IntegrationPages:
			v = &ints[i]
		case i < h.IntegrationPages+h.JournalPages:
			v = &journal[i-h.IntegrationPages]
		default:
			v = &timeline[i-h.IntegrationPages-h.JournalPages]
		}
		if err := json.Unmarshal(raw, v); err != nil {
			return fmt.Errorf("vault: decode page %s: %w", rels[i], err)
		}
		// Its version is known now; what it holds is not remembered, so
		// the first save after a read writes each of these pages once.
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("vault: rotation %s: %w", id, err)
	}
	lay := rotationLayout{paged: true, pages: h.IntegrationPages}
	for _, pg := range ints {
		for _, in := range pg.Integrations {
			r.Integrations[in.ID] = in
		}
	}
	tail := r.Journal
	r.Journal = nil
	for _, pg := range journal {
		r.Journal = append(r.Journal, pg.Transitions...)
		lay.journal = append(lay.journal, len(pg.Transitions))
	}
	r.Journal = append(r.Journal, tail...)
	r.Timeline = r.Timeline[:0]
	for _, pg := range timeline {
		r.Timeline = append(r.Timeline, pg.Marks...)
	}
	if len(r.Timeline) == 0 {
		r.Timeline = nil
	}
	s.setLayout(keyID, id, lay)
	return &r, nil
}

// oldLayout completes a record written before pages: the integrations in
// the record, the journal in full parts of JournalPart transitions and
// the rest in the record.
func (s *Store) oldLayout(ctx context.Context, keyID, id string, r *records.Rotation) (*records.Rotation, error) {
	if r.JournalParts > 0 {
		journal := make([]records.Transition, 0, r.JournalParts*JournalPart+len(r.Journal))
		for n := range r.JournalParts {
			var part journalRecord
			if _, err := s.GetRecord(ctx, journalPath(keyID, id, n), &part); err != nil {
				return nil, fmt.Errorf("vault: rotation %s: journal part %d: %w", id, n, err)
			}
			journal = append(journal, part.Transitions...)
		}
		r.Journal = append(journal, r.Journal...)
		r.JournalParts = 0
	}
	return r, nil
}

// LatestRotation reads the key's latest rotation, or failure.ErrNotFound.
func (s *Store) LatestRotation(ctx context.Context, keyID string) (*records.Rotation, error) {
	st, _, err := s.KeyState(ctx, keyID)
	if err != nil {
		return nil, err
	}
	if st.LatestRotation == "" {
		return nil, fmt.Errorf("vault: key %s has no rotation on record: %w", keyID, failure.ErrNotFound)
	}
	return s.Rotation(ctx, keyID, st.LatestRotation)
}

// KeyState reads what rekey knows about a key, with its version for
// check-and-set (an empty state when there is none yet, with the version
// to create it on).
func (s *Store) KeyState(ctx context.Context, keyID string) (*records.KeyState, int, error) {
	var st records.KeyState
	v, err := s.GetRecord(ctx, "keys/"+keyID+"/state", &st)
	if errors.Is(err, failure.ErrNotFound) {
		return &records.KeyState{}, v, nil
	}
	if err != nil {
		return nil, 0, err
	}
	return &st, v, nil
}

// UpdateKeyState applies change to the key's state with check-and-set,
// retrying on conflict, so concurrent operators never lose an update.
func (s *Store) UpdateKeyState(ctx context.Context, keyID string, change func(*records.KeyState)) error {
	_, err := store.Update(ctx,
		func() (*records.KeyState, int, error) { return s.KeyState(ctx, keyID) },
		func(st *records.KeyState) (bool, error) { change(st); return true, nil },
		func(st *records.KeyState, v int) error {
			_, err := s.PutRecord(ctx, "keys/"+keyID+"/state", st, v)
			return err
		})
	return err
}

// Rotations lists the ids of the key's rotations on record.
func (s *Store) Rotations(ctx context.Context, keyID string) ([]string, error) {
	return s.ListRecords(ctx, "keys/"+keyID+"/rotations")
}

func auditPath(keyID string) string { return "keys/" + keyID + "/audit" }
