package rotation

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/providers"
	"github.com/rekey-dev/rekey/secret"
	"github.com/rekey-dev/rekey/store"
)

// MinKeyLen is the shortest key rekey stores. Action Network's keys are 32
// characters; a shorter paste is a mistake, and a key short enough could
// be recovered from its fingerprint.
const MinKeyLen = 16

// RefusedError means the new key was refused before anything was written.
type RefusedError struct{ Reason string }

func (e *RefusedError) Error() string { return "new key refused: " + e.Reason }

// Check validates a candidate key against what Vault holds, rekey's
// history of the key's versions and the provider, without writing
// anything. It returns the current version (zero when the key has none
// yet) and every retained version. A key equal to any version rekey has
// known, retained by Vault or pruned, is refused.
func (e *Engine) Check(ctx context.Context, job Job, key secret.Key) (store.KeyVersion, []store.KeyVersion, error) {
	if key.IsZero() {
		return store.KeyVersion{}, nil, &RefusedError{Reason: "it is empty"}
	}
	if reason := BadShape(key); reason != "" {
		return store.KeyVersion{}, nil, &RefusedError{Reason: reason}
	}
	if key.Len() < MinKeyLen {
		// A fingerprint is shown everywhere; a key this short could be
		// found from it by trying them all.
		return store.KeyVersion{}, nil, &RefusedError{Reason: fmt.Sprintf("it is %d bytes long; API keys are at least %d (a partial paste?)", key.Len(), MinKeyLen)}
	}
	cur, err := e.Store.ReadKey(ctx, job.Key.VaultPath)
	if err != nil && !errors.Is(err, failure.ErrNotFound) {
		return cur, nil, err
	}
	var versions []store.KeyVersion
	if err == nil {
		if cur.Key.Equal(key) {
			return cur, nil, &RefusedError{Reason: "it is the current version (" + key.Fingerprint() + "); paste the key Action Network shows after REVOKE & GENERATE NEW KEY"}
		}
		if versions, _, err = e.Store.Versions(ctx, job.Key.VaultPath); err != nil {
			return cur, nil, err
		}
		for _, v := range versions {
			if v.Key.Equal(key) {
				return cur, versions, &RefusedError{Reason: fmt.Sprintf("it is version %d (%s), an earlier version of this key", v.Version, key.Fingerprint())}
			}
		}
	}
	h, _, err := e.Store.History(ctx, job.Key.ID)
	if err != nil && !errors.Is(err, failure.ErrNotFound) {
		return cur, versions, fmt.Errorf("read the history of %s: %w", job.Key.ID, err)
	}
	if h != nil {
		if v, ok := h.Find(key); ok {
			return cur, versions, &RefusedError{Reason: fmt.Sprintf("it is version %d (%s, %s since %s), an earlier version of this key that Vault no longer holds",
				v.Version, v.Fingerprint, v.Standing, v.Since.Format(time.DateOnly))}
		}
	}
	if job.Checker != nil {
		cctx, cancel := context.WithTimeout(ctx, e.checkTimeout())
		res := job.Checker.Check(cctx, key)
		cancel()
		switch res.Validity {
		case providers.Invalid:
			return cur, versions, &RefusedError{Reason: "the provider rejected it: " + res.Reason}
		case providers.Unknown:
			if !e.AllowUnverified {
				return cur, versions, &RefusedError{Reason: "the provider could not check it: " + res.Reason +
					"; try again when it answers, or store the key unchecked with --allow-unverified"}
			}
			e.logger().Warn("storing a key the provider could not check", "key", job.Key.ID, "reason", res.Reason)
		}
	}
	if err := e.checkGroup(ctx, job, key); err != nil {
		return cur, versions, err
	}
	return cur, versions, nil
}
