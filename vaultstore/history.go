package vaultstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/records"
)

func historyPath(keyID string) string { return "keys/" + keyID + "/history" }

// History reads rekey's history of the versions of keyID, with its
// version for check-and-set. A key with no history yet is
// failure.ErrNotFound. Reading it needs read access to rekey's records
// only, never to the key's data.
func (s *Store) History(ctx context.Context, keyID string) (*records.History, int, error) {
	var h records.History
	v, err := s.GetRecord(ctx, historyPath(keyID), &h)
	if err != nil {
		return nil, v, err
	}
	return &h, v, nil
}

// UpdateHistory applies change to keyID's history with check-and-set,
// retrying on conflict, and returns the history as written. A key with no
// history yet starts from an empty one with a new random salt. change
// reports whether it changed anything: when it did not, nothing is
// written. An error from change is returned as it is.
func (s *Store) UpdateHistory(ctx context.Context, keyID string, change func(*records.History) (bool, error)) (*records.History, error) {
	for attempt := 0; ; attempt++ {
		h, v, err := s.History(ctx, keyID)
		if errors.Is(err, failure.ErrNotFound) {
			if h, err = records.NewHistory(); err != nil {
				return nil, err
			}
		} else if err != nil {
			return nil, err
		}
		changed, err := change(h)
		if err != nil || !changed {
			return h, err
		}
		_, err = s.PutRecord(ctx, historyPath(keyID), h, v)
		if errors.Is(err, failure.ErrConflict) && attempt < 10 {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("vault: history of %s: %w", keyID, err)
		}
		return h, nil
	}
}
