package vaultstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/rekey-dev/rekey/records"
)

// SaveRotation writes a rotation's record (blind: the rotation lock
// serialises writers).
func (s *Store) SaveRotation(ctx context.Context, r *records.Rotation) error {
	_, err := s.PutRecord(ctx, "keys/"+r.KeyID+"/rotations/"+r.ID, r, -1)
	return err
}

// Rotation reads one rotation's record.
func (s *Store) Rotation(ctx context.Context, keyID, id string) (*records.Rotation, error) {
	var r records.Rotation
	if _, err := s.GetRecord(ctx, "keys/"+keyID+"/rotations/"+id, &r); err != nil {
		return nil, err
	}
	if r.Integrations == nil {
		r.Integrations = map[string]*records.Integration{}
	}
	return &r, nil
}

// LatestRotation reads the key's latest rotation, or ErrNotFound.
func (s *Store) LatestRotation(ctx context.Context, keyID string) (*records.Rotation, error) {
	st, _, err := s.KeyState(ctx, keyID)
	if err != nil {
		return nil, err
	}
	if st.LatestRotation == "" {
		return nil, fmt.Errorf("vault: key %s has no rotation on record: %w", keyID, ErrNotFound)
	}
	return s.Rotation(ctx, keyID, st.LatestRotation)
}

// KeyState reads what rekey knows about a key, with its version for
// check-and-set (0 when there is none yet).
func (s *Store) KeyState(ctx context.Context, keyID string) (*records.KeyState, int, error) {
	var st records.KeyState
	v, err := s.GetRecord(ctx, "keys/"+keyID+"/state", &st)
	if errors.Is(err, ErrNotFound) {
		return &records.KeyState{}, 0, nil
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
		if errors.Is(err, ErrConflict) && attempt < 10 {
			continue
		}
		return err
	}
}
