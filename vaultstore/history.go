package vaultstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/records"
	"github.com/rekey-dev/rekey/store"
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
	return store.Update(ctx,
		func() (*records.History, int, error) {
			h, v, err := s.History(ctx, keyID)
			if errors.Is(err, failure.ErrNotFound) {
				h, err = records.NewHistory()
			}
			return h, v, err
		},
		change,
		func(h *records.History, v int) error {
			if _, err := s.PutRecord(ctx, historyPath(keyID), h, v); err != nil {
				return fmt.Errorf("vault: history of %s: %w", keyID, err)
			}
			return nil
		})
}
