package store

import (
	"context"
	"errors"

	"github.com/rekey-dev/rekey/failure"
)

// ConflictRetries is how many times RetryConflicts tries again an update
// that lost a check-and-set race. Each lost race is another writer's
// write landing, so any bound above the number of writers at once is
// never reached; it only stops a store that answers failure.ErrConflict
// for ever.
const ConflictRetries = 100

// RetryConflicts runs try (read a record, change it, write it with
// check-and-set on the version read) again each time it fails with
// failure.ErrConflict, at most ConflictRetries more times, and returns
// its last error. It stops at once when ctx has ended. Every store's
// read-modify-write methods (UpdateKeyState, UpdateHistory,
// UpdateHandoff) go through it, so that they give up alike.
func RetryConflicts(ctx context.Context, try func() error) error {
	for attempt := 0; ; attempt++ {
		err := try()
		if !errors.Is(err, failure.ErrConflict) || attempt >= ConflictRetries || ctx.Err() != nil {
			return err
		}
	}
}

// Update is a read-modify-write of one record through RetryConflicts:
// read returns the record and the version to write it on; change
// reports whether it changed anything (when not, nothing is written) and
// its error is returned as it is, never retried; write stores the record
// with check-and-set on that version. It returns the record as last
// read and changed.
func Update[R any](ctx context.Context, read func() (R, int, error), change func(R) (bool, error), write func(R, int) error) (R, error) {
	var r R
	var changeErr error
	err := RetryConflicts(ctx, func() error {
		var v int
		var err error
		if r, v, err = read(); err != nil {
			return err
		}
		if changed, err := change(r); err != nil || !changed {
			changeErr = err
			return nil
		}
		return write(r, v)
	})
	if err != nil {
		var zero R
		return zero, err
	}
	return r, changeErr
}
