package store

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/rekey-dev/rekey/failure"
)

func TestRetryConflicts(t *testing.T) {
	ctx := context.Background()
	conflict := fmt.Errorf("lost a race: %w", failure.ErrConflict)

	// Tried again while it conflicts; its success returned.
	tries := 0
	if err := RetryConflicts(ctx, func() error {
		if tries++; tries < 5 {
			return conflict
		}
		return nil
	}); err != nil || tries != 5 {
		t.Fatalf("after 4 conflicts then a success: %v after %d tries, want nil after 5", err, tries)
	}

	// Any other error is returned at once.
	tries = 0
	boom := errors.New("boom")
	if err := RetryConflicts(ctx, func() error { tries++; return boom }); err != boom || tries != 1 {
		t.Fatalf("an error that is no conflict: %v after %d tries, want it after 1", err, tries)
	}

	// A store that always conflicts: given up on, with the conflict.
	tries = 0
	if err := RetryConflicts(ctx, func() error { tries++; return conflict }); !errors.Is(err, failure.ErrConflict) || tries != ConflictRetries+1 {
		t.Fatalf("a conflict for ever: %v after %d tries, want failure.ErrConflict after %d", err, tries, ConflictRetries+1)
	}

	// An ended context stops the retries.
	cctx, cancel := context.WithCancel(ctx)
	tries = 0
	if err := RetryConflicts(cctx, func() error {
		if tries++; tries == 2 {
			cancel()
		}
		return conflict
	}); !errors.Is(err, failure.ErrConflict) || tries != 2 {
		t.Fatalf("cancelled after the second try: %v after %d tries, want 2", err, tries)
	}
}

// Update writes only what changed, hands change's error back untried
// again, and reads afresh after a conflict.
func TestUpdate(t *testing.T) {
	ctx := context.Background()
	reads, writes := 0, 0
	read := func() (*int, int, error) { reads++; n := reads; return &n, reads, nil }
	conflictOnce := func(r *int, v int) error {
		writes++
		if writes == 1 {
			return failure.ErrConflict
		}
		return nil
	}
	got, err := Update(ctx, read, func(*int) (bool, error) { return true, nil }, conflictOnce)
	if err != nil || *got != 2 || reads != 2 || writes != 2 {
		t.Fatalf("after a conflict: got %v, %v; %d reads, %d writes", *got, err, reads, writes)
	}
	reads, writes = 0, 0
	if _, err := Update(ctx, read, func(*int) (bool, error) { return false, nil }, conflictOnce); err != nil || writes != 0 {
		t.Fatalf("unchanged: %v, %d writes", err, writes)
	}
	boom := errors.New("boom")
	reads, writes = 0, 0
	if _, err := Update(ctx, read, func(*int) (bool, error) { return false, boom }, conflictOnce); err != boom || reads != 1 || writes != 0 {
		t.Fatalf("change's error: %v, %d reads, %d writes", err, reads, writes)
	}
}
