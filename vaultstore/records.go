package vaultstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/records"
)

// JournalPart is how many transitions one journal record holds. A
// rotation's journal grows with its integrations; Vault limits one entry
// (1 MiB with integrated storage), so full parts are written once each
// under keys/<key>/journals/<rotation>/<n>, and the rotation's own record
// keeps the rest.
const JournalPart = 1000

// SaveRotation writes a rotation's record, and any full journal part not
// written yet, each with check-and-set: a new record or part is created
// (cas 0), one this store wrote or read before is updated on the version
// it knows. Only the rotation lock's holder writes a rotation, so a
// conflict (failure.ErrConflict) means the lock was lost to another
// process, whose record is not overwritten. A journal part in the way (a
// crashed run of the same rotation wrote it) is written over.
func (s *Store) SaveRotation(ctx context.Context, r *records.Rotation) error {
	full := len(r.Journal) / JournalPart
	s.mu.Lock()
	done := s.journalDone[r.ID]
	s.mu.Unlock()
	for n := done; n < full; n++ {
		part := r.Journal[n*JournalPart : (n+1)*JournalPart]
		if err := s.saveRecord(ctx, journalPath(r.KeyID, r.ID, n), journalRecord{Transitions: part}, true); err != nil {
			return err
		}
		s.mu.Lock()
		if s.journalDone == nil {
			s.journalDone = map[string]int{}
		}
		s.journalDone[r.ID] = n + 1
		s.mu.Unlock()
	}
	head := *r
	head.Journal, head.JournalParts = r.Journal[full*JournalPart:], full
	return s.saveRecord(ctx, "keys/"+r.KeyID+"/rotations/"+r.ID, &head, false)
}

type journalRecord struct {
	Transitions []records.Transition `json:"transitions"`
}

func journalPath(keyID, rotationID string, n int) string {
	return fmt.Sprintf("keys/%s/journals/%s/%06d", keyID, rotationID, n)
}

// Rotation reads one rotation's record, with its whole journal.
func (s *Store) Rotation(ctx context.Context, keyID, id string) (*records.Rotation, error) {
	var r records.Rotation
	if _, err := s.GetRecord(ctx, "keys/"+keyID+"/rotations/"+id, &r); err != nil {
		return nil, err
	}
	if r.Integrations == nil {
		r.Integrations = map[string]*records.Integration{}
	}
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
		s.mu.Lock()
		if s.journalDone == nil {
			s.journalDone = map[string]int{}
		}
		s.journalDone[id] = max(s.journalDone[id], r.JournalParts)
		s.mu.Unlock()
		r.JournalParts = 0
	}
	return &r, nil
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
	for attempt := 0; ; attempt++ {
		st, v, err := s.KeyState(ctx, keyID)
		if err != nil {
			return err
		}
		change(st)
		_, err = s.PutRecord(ctx, "keys/"+keyID+"/state", st, v)
		if errors.Is(err, failure.ErrConflict) && attempt < 10 {
			continue
		}
		return err
	}
}
