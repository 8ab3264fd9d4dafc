package vaultstore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/records"
)

// LockedError says a key's rotation lock is held by someone else.
type LockedError struct {
	KeyID  string
	Holder records.Lock
}

func (e *LockedError) Error() string {
	h := e.Holder
	return fmt.Sprintf("key %s is being rotated by %s@%s (pid %d, %s) since %s",
		e.KeyID, h.User, h.Host, h.PID, h.Command, h.Since.UTC().Format(time.RFC3339))
}

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
func (s *Store) Lock(ctx context.Context, keyID string, holder records.Lock, ttl time.Duration) (*Lease, error) {
	rel := "keys/" + keyID + "/lock"
	if holder.BootID == "" && holder.PIDNamespace == "" {
		id := Identity()
		holder.BootID, holder.PIDNamespace = id.BootID, id.PIDNamespace
	}
	for attempt := 0; attempt < 3; attempt++ {
		var cur records.Lock
		v, err := s.GetRecord(ctx, rel, &cur)
		if err != nil && !errors.Is(err, failure.ErrNotFound) {
			return nil, err
		}
		now := time.Now()
		if cur.Held && !Abandoned(cur, now) {
			return nil, &LockedError{KeyID: keyID, Holder: cur}
		}
		rec := holder
		rec.Held = true
		rec.Since = now.UTC()
		rec.Expires = now.Add(ttl).UTC()
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

// Abandoned reports whether a held lock may be taken over at now: its
// lease expired, or its holder is a process that certainly no longer
// exists. A PID is judged only by a process that shares its host, boot
// and PID namespace; a PID alone never frees a lock.
func Abandoned(l records.Lock, now time.Time) bool {
	if !l.Held || (!l.Expires.IsZero() && now.After(l.Expires)) {
		return true
	}
	host, _ := os.Hostname()
	me := Identity()
	sameNamespace := l.Host == host &&
		l.BootID != "" && l.BootID == me.BootID &&
		l.PIDNamespace != "" && l.PIDNamespace == me.PIDNamespace
	if sameNamespace && l.PID > 0 && l.PID != os.Getpid() {
		if err := syscall.Kill(l.PID, 0); errors.Is(err, syscall.ESRCH) {
			return true
		}
	}
	return false
}

// Identity says where this process's PID means something: the kernel's
// boot id and this process's PID namespace, as records.Lock keeps them.
// Either is empty where the system does not tell (not Linux).
func Identity() records.Lock {
	var id records.Lock
	if b, err := os.ReadFile("/proc/sys/kernel/random/boot_id"); err == nil {
		id.BootID = strings.TrimSpace(string(b))
	}
	if ns, err := os.Readlink("/proc/self/ns/pid"); err == nil {
		id.PIDNamespace = ns
	}
	return id
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
		return &LockedError{Holder: cur}
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
