package vaultstore

import (
	"context"
	"errors"
	"fmt"
	"path"
	"time"

	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/records"
	"github.com/rekey-dev/rekey/store"
)

// LockedError says a key's rotation lock is held by someone else.
type LockedError = store.LockedError

// Lease is a held lock. Renew keeps it alive; Release frees it.
type Lease struct {
	s       *Store
	rel     string
	ttl     time.Duration
	version int
	rec     records.Lock
}

// Lock takes the rotation lock of keyID for holder, with check-and-set. A
// lock whose lease has not expired is refused with a *LockedError, unless
// its holder is certainly dead: a process of this host, this boot and this
// PID namespace whose PID no longer exists is taken over at once. Any
// other holder (another host, a container, an old record that does not
// say where its PID lives) is waited for until its lease expires: its
// holder renews the lease while it is alive. The holder's BootID and
// PIDNamespace are filled in from this process when empty.
func (s *Store) Lock(ctx context.Context, keyID string, holder records.Lock, ttl time.Duration) (store.Lease, error) {
	rel := "keys/" + keyID + "/lock"
	for attempt := 0; attempt < 3; attempt++ {
		var cur records.Lock
		v, err := s.GetRecord(ctx, rel, &cur)
		if err != nil && !errors.Is(err, failure.ErrNotFound) {
			return nil, err
		}
		rec, err := store.Take(keyID, cur, holder, time.Now(), ttl)
		if err != nil {
			return nil, err
		}
		nv, err := s.PutRecord(ctx, rel, rec, v)
		if errors.Is(err, failure.ErrConflict) {
			continue // someone moved first; look again
		}
		if err != nil {
			return nil, err
		}
		return &Lease{s: s, rel: rel, ttl: ttl, version: nv, rec: rec}, nil
	}
	var cur records.Lock
	if _, err := s.GetRecord(ctx, rel, &cur); err == nil && cur.Held {
		return nil, &LockedError{KeyID: keyID, Holder: cur}
	}
	return nil, fmt.Errorf("vault: lock %s: %w", keyID, failure.ErrConflict)
}

// Holder returns the lock record as held.
func (l *Lease) Holder() records.Lock { return l.rec }

// Renew pushes the lease's expiry forward. It fails with *LockedError if
// someone else took the lock meanwhile.
func (l *Lease) Renew(ctx context.Context) error {
	rec := l.rec
	rec.Expires = time.Now().Add(l.ttl).UTC()
	v, err := l.s.PutRecord(ctx, l.rel, rec, l.version)
	if errors.Is(err, failure.ErrConflict) {
		var cur records.Lock
		l.s.GetRecord(ctx, l.rel, &cur)
		return &LockedError{KeyID: path.Base(path.Dir(l.rel)), Holder: cur}
	}
	if err != nil {
		return err
	}
	l.version, l.rec = v, rec
	return nil
}

// Release frees the lock if this lease still holds it.
func (l *Lease) Release(ctx context.Context) error {
	_, err := l.s.PutRecord(ctx, l.rel, records.Lock{Held: false}, l.version)
	if errors.Is(err, failure.ErrConflict) {
		return nil // taken over after expiry: not ours to free
	}
	return err
}

// ReadLock returns the lock record of keyID (zero when never locked).
func (s *Store) ReadLock(ctx context.Context, keyID string) (records.Lock, error) {
	var cur records.Lock
	_, err := s.GetRecord(ctx, "keys/"+keyID+"/lock", &cur)
	if errors.Is(err, failure.ErrNotFound) {
		return records.Lock{}, nil
	}
	return cur, err
}
