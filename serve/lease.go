package serve

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/records"
	"github.com/rekey-dev/rekey/store"
)

// LeaseRecord is the record that says which instance does the scheduled
// work (records.ServeLease). It is written with check-and-set only.
type LeaseRecord = records.ServeLease

// recordStore is what the lease needs from the store.
type recordStore interface {
	ServeLease(ctx context.Context) (records.ServeLease, int, error)
	PutServeLease(ctx context.Context, l records.ServeLease, cas int) (int, error)
}

var _ recordStore = (store.Store)(nil)

// lease is one instance's side of the lease.
//
// The holder renews every ttl/3 with check-and-set on the version it
// wrote, and stops working once ttl*2/3 has passed since its last
// successful renewal. The others read the record every ttl/3 and take it
// over when it is released, or when it has not changed for a whole ttl
// since they first saw that version, timed by their own clock: the
// instances' clocks need not agree.
type lease struct {
	store recordStore
	ttl   time.Duration
	me    LeaseRecord // Holder, Host, PID

	// io serialises tick and release; mu guards the fields below and is
	// never held during a Vault call, so leading never waits for Vault.
	io sync.Mutex
	mu sync.Mutex

	held      bool
	version   int       // of the record, as last written or read
	acquired  time.Time // when we took it
	renewedAt time.Time // local time the last successful write began
	seen      LeaseRecord
	seenVer   int       // version of the record last read
	seenAt    time.Time // when we first read seenVer
}

// leading reports whether this instance may work at now.
func (l *lease) leading(now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.held && now.Before(l.renewedAt.Add(l.ttl*2/3))
}

// current returns the record as last seen (ours when we hold it).
func (l *lease) current() (LeaseRecord, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.seen, l.held
}

func (l *lease) record(now, acquired time.Time) LeaseRecord {
	rec := l.me
	rec.Held, rec.Acquired, rec.Renewed, rec.Expires, rec.TTL = true, acquired, now, now.Add(l.ttl), l.ttl.String()
	return rec
}

// tick renews the lease when this instance holds it, or takes it when it
// is free or has expired. It returns an event for the log ("acquired",
// "lost", "") and any Vault error.
func (l *lease) tick(ctx context.Context, now time.Time) (string, error) {
	l.io.Lock()
	defer l.io.Unlock()
	l.mu.Lock()
	held, version, acquired, renewedAt := l.held, l.version, l.acquired, l.renewedAt
	l.mu.Unlock()

	if held {
		rec := l.record(now, acquired)
		v, err := l.store.PutServeLease(ctx, rec, version)
		switch {
		case err == nil:
			l.mu.Lock()
			l.version, l.renewedAt, l.seen = v, now, rec
			l.mu.Unlock()
			return "", nil
		case errors.Is(err, failure.ErrConflict):
			l.mu.Lock()
			l.held = false
			l.mu.Unlock()
			cur, _ := l.read(ctx, now)
			return "lost", fmt.Errorf("serve: lease taken by %s (host %s, pid %d)", cur.Holder, cur.Host, cur.PID)
		case !now.Before(renewedAt.Add(l.ttl * 2 / 3)):
			l.mu.Lock()
			l.held = false
			l.mu.Unlock()
			return "lost", fmt.Errorf("serve: renew lease: %w", err)
		default:
			return "", fmt.Errorf("serve: renew lease: %w", err)
		}
	}

	cur, err := l.read(ctx, now)
	if err != nil {
		return "", err
	}
	l.mu.Lock()
	version, seenAt := l.version, l.seenAt
	l.mu.Unlock()
	if cur.Held && cur.Holder != l.me.Holder && now.Before(seenAt.Add(l.ttl)) {
		return "", nil // held, and alive as far as we can tell
	}
	rec := l.record(now, now)
	v, err := l.store.PutServeLease(ctx, rec, version)
	if errors.Is(err, failure.ErrConflict) {
		return "", nil // someone moved first; look again next tick
	}
	if err != nil {
		return "", fmt.Errorf("serve: take lease: %w", err)
	}
	l.mu.Lock()
	l.held, l.version, l.acquired, l.renewedAt, l.seen = true, v, now, now, rec
	l.mu.Unlock()
	return "acquired", nil
}

// read reads the record and notes when its version was first seen.
func (l *lease) read(ctx context.Context, now time.Time) (LeaseRecord, error) {
	rec, v, err := l.store.ServeLease(ctx)
	if errors.Is(err, failure.ErrNotFound) {
		rec, v, err = LeaseRecord{}, 0, nil
	}
	if err != nil {
		return rec, fmt.Errorf("serve: read lease: %w", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if v != l.seenVer || l.seenAt.IsZero() {
		l.seenVer, l.seenAt = v, now
	}
	l.version, l.seen = v, rec
	return rec, nil
}

// release frees the lease, if this instance holds it, so another can take
// over at once. It reports whether it did.
func (l *lease) release(ctx context.Context, now time.Time) (bool, error) {
	l.io.Lock()
	defer l.io.Unlock()
	l.mu.Lock()
	held, version, acquired := l.held, l.version, l.acquired
	l.held = false
	l.mu.Unlock()
	if !held {
		return false, nil
	}
	rec := l.me
	rec.Held, rec.Acquired, rec.Released = false, acquired, now
	v, err := l.store.PutServeLease(ctx, rec, version)
	if errors.Is(err, failure.ErrConflict) {
		return false, nil // taken over meanwhile: not ours to free
	}
	if err != nil {
		return false, fmt.Errorf("serve: release lease: %w", err)
	}
	l.mu.Lock()
	l.version, l.seen = v, rec
	l.mu.Unlock()
	return true, nil
}
