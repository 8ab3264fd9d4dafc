package store

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

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

// Take is the record with which holder takes keyID's lock at now for ttl,
// given cur, the lock record as it stands: a *LockedError naming cur's
// holder when cur is held and not Abandoned. The holder's BootID and
// PIDNamespace are filled in from this process when both are empty.
// Every store's Lock decides through it, and writes the record with
// check-and-set on the version of cur it read.
func Take(keyID string, cur, holder records.Lock, now time.Time, ttl time.Duration) (records.Lock, error) {
	if !Abandoned(cur, now) {
		return records.Lock{}, &LockedError{KeyID: keyID, Holder: cur}
	}
	rec := WithIdentity(holder)
	rec.Held, rec.Since, rec.Expires = true, now.UTC(), now.Add(ttl).UTC()
	return rec, nil
}

// Abandoned reports whether a held lock may be taken over at now: its
// lease expired, or its holder is a process that certainly no longer
// exists. A PID is judged only by a process that shares its host, boot
// and PID namespace; a PID alone never frees a lock.
func Abandoned(l records.Lock, now time.Time) bool {
	if !l.Held || (!l.Expires.IsZero() && now.After(l.Expires)) {
		return true
	}
	me := Identity()
	if l.PID <= 0 || l.PID == os.Getpid() || l.BootID == "" || l.BootID != me.BootID ||
		l.PIDNamespace == "" || l.PIDNamespace != me.PIDNamespace {
		return false
	}
	if host, _ := os.Hostname(); l.Host != host {
		return false
	}
	return errors.Is(syscall.Kill(l.PID, 0), syscall.ESRCH)
}

// Identity says where this process's PID means something: the kernel's
// boot id and this process's PID namespace, as records.Lock keeps them.
// Either is empty where the system does not tell (not Linux). Neither
// changes while the process lives, so they are read once.
func Identity() records.Lock { return identity() }

var identity = sync.OnceValue(func() records.Lock {
	var id records.Lock
	if b, err := os.ReadFile("/proc/sys/kernel/random/boot_id"); err == nil {
		id.BootID = strings.TrimSpace(string(b))
	}
	if ns, err := os.Readlink("/proc/self/ns/pid"); err == nil {
		id.PIDNamespace = ns
	}
	return id
})

// WithIdentity returns holder with BootID and PIDNamespace filled in from
// this process when both are empty.
func WithIdentity(holder records.Lock) records.Lock {
	if holder.BootID == "" && holder.PIDNamespace == "" {
		id := Identity()
		holder.BootID, holder.PIDNamespace = id.BootID, id.PIDNamespace
	}
	return holder
}
