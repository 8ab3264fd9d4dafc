// Package store is the contract between rekey's engine and where it keeps
// keys and its own records, written in rekey's words: versions of a key,
// rotations, key states, histories, audits, what `rekey serve` said, locks
// and leases. It imports no storage client: package vaultstore implements
// it on HashiCorp Vault (KV version 2), package store/memstore in memory
// for logic tests, and package store/storetest is the conformance suite
// both pass.
//
// Errors are classified with package failure, as each method says:
// failure.ErrNotFound (nothing there), failure.ErrConflict (a
// check-and-set lost to another writer), failure.ErrUnauthorized (the
// store's credentials may not do it), failure.ErrInvalid (a request that
// can never succeed) and failure.ErrTransient (the store is unreachable,
// sealed or overloaded: worth trying again). No error carries a key.
//
// Extra abilities are found by type assertion: a Wrapper hands a value to
// one person once (Vault's response wrapping), HandoffRecords keeps the
// records of such hand-offs, a HandoffWriter proves it may write them.
package store

import (
	"context"
	"time"

	"github.com/rekey-dev/rekey/records"
	"github.com/rekey-dev/rekey/secret"
)

// Store is everything the engine, `rekey serve` and the CLI need from
// where keys and records live.
type Store interface {
	Keys
	Records
	Locks
	Prover
}

// KeyVersion is one version of a key. It is never written to a record:
// only its fingerprint is.
type KeyVersion struct {
	Version  int
	Key      secret.Key
	Created  time.Time
	Metadata map[string]string // the key's custom metadata
}

// Fingerprint of the version's key.
func (v KeyVersion) Fingerprint() string { return v.Key.Fingerprint() }

// MaxMetadataValue is the longest custom metadata value a store keeps
// (Vault's limit); longer ones are cut with Truncate.
const MaxMetadataValue = 512

// Keys are the keys themselves: a value per version, with custom metadata
// on the key. A key is named by its vault_path.
type Keys interface {
	// ReadKey reads the current version of the key at path. A path with
	// no live version is failure.ErrNotFound.
	ReadKey(ctx context.Context, path string) (KeyVersion, error)

	// Versions returns every retained, readable version of the key at
	// path, oldest first, and the current version's number. A path that
	// never held a version is failure.ErrNotFound; versions the store no
	// longer holds (pruned, deleted, destroyed) are left out.
	Versions(ctx context.Context, path string) ([]KeyVersion, int, error)

	// WriteKey stores key as a new version of path with check-and-set on
	// cas (0: the path holds no version yet), then merges meta into the
	// key's custom metadata (values cut to MaxMetadataValue). A cas that
	// is not the current version is failure.ErrConflict and stores
	// nothing. When the answer to the write is lost, the store finds out
	// whether it landed: a write that landed is a success. It returns the
	// new version; a version and an error together mean the key was stored
	// but its metadata was not.
	WriteKey(ctx context.Context, path string, key secret.Key, cas int, meta map[string]string) (int, error)

	// PatchMetadata merges meta into the key's custom metadata, keeping
	// the other fields (values cut to MaxMetadataValue).
	PatchMetadata(ctx context.Context, path string, meta map[string]string) error

	// Location says where the key at path lives, for people to read
	// ("secret/actionnetwork/main").
	Location(path string) string
}

// Records are rekey's own records. They hold fingerprints and keyed
// hashes, never keys. Every write is check-and-set: a write based on what
// another writer has since changed is failure.ErrConflict and changes
// nothing, so several operators and several `rekey serve` instances share
// one truth. A record is as large as it needs to be: a store that limits
// the size of one entry lays a large record out over several (a rotation
// of 10,000 integrations is recorded whole). A store may cut a reason, a
// note or a timeline mark longer than 4 KiB, marking the cut.
type Records interface {
	// SaveRotation writes a rotation's record (creating it, or updating
	// the version this handle last wrote or read). Only the key's rotation
	// lock's holder writes a rotation, so failure.ErrConflict means the
	// lock was lost to another process, whose record is left as it is.
	SaveRotation(ctx context.Context, r *records.Rotation) error

	// Rotation reads one rotation's record, whole (every integration, the
	// whole journal and timeline). A missing one is failure.ErrNotFound.
	Rotation(ctx context.Context, keyID, id string) (*records.Rotation, error)

	// LatestRotation reads the rotation the key's state names latest;
	// failure.ErrNotFound when there is none.
	LatestRotation(ctx context.Context, keyID string) (*records.Rotation, error)

	// Rotations lists the ids of the key's rotations on record, in no
	// particular order; none and no error when there are none.
	Rotations(ctx context.Context, keyID string) ([]string, error)

	// KeyState reads what rekey knows about a key across rotations, with
	// its version for check-and-set: an empty state when there is none
	// yet, with the version that creates it.
	KeyState(ctx context.Context, keyID string) (*records.KeyState, int, error)

	// UpdateKeyState applies change to the key's state with check-and-set,
	// reading it again and retrying on conflict, so that concurrent
	// writers never lose an update. change may be called more than once.
	UpdateKeyState(ctx context.Context, keyID string, change func(*records.KeyState)) error

	// History reads rekey's own history of the key's versions (keyed
	// hashes, never keys), with its version; failure.ErrNotFound when
	// there is none yet. Reading it needs no access to the key itself.
	History(ctx context.Context, keyID string) (*records.History, int, error)

	// UpdateHistory applies change to the key's history with
	// check-and-set, retrying on conflict, and returns the history as
	// written. A key without one starts from an empty history with a new
	// random salt. Nothing is written when change reports no change; an
	// error from change is returned as it is.
	UpdateHistory(ctx context.Context, keyID string, change func(*records.History) (bool, error)) (*records.History, error)

	// LastAudit reads the latest audit of the key's integrations, with
	// its version; failure.ErrNotFound (and the version that creates it)
	// when the key was never audited.
	LastAudit(ctx context.Context, keyID string) (*records.Audit, int, error)

	// SaveAudit records a as the key's latest audit with check-and-set on
	// cas (the version LastAudit gave), and returns the new version;
	// failure.ErrConflict when another audit was recorded since.
	SaveAudit(ctx context.Context, keyID string, a *records.Audit, cas int) (int, error)

	// Said reads what `rekey serve` has told the team, with its version;
	// failure.ErrNotFound (and the version that creates it) when nothing
	// was said yet.
	Said(ctx context.Context) (*records.Said, int, error)

	// SaveSaid writes what `rekey serve` has told the team with
	// check-and-set on cas, and returns the new version;
	// failure.ErrConflict when another instance wrote it since.
	SaveSaid(ctx context.Context, said *records.Said, cas int) (int, error)

	// ServeLease reads the record of which `rekey serve` instance does
	// the scheduled work, with its version; failure.ErrNotFound (and the
	// version that creates it) when there is none yet.
	ServeLease(ctx context.Context) (records.ServeLease, int, error)

	// PutServeLease writes the serve lease's record with check-and-set on
	// cas and returns the new version; failure.ErrConflict when another
	// instance wrote it since. Whether a lease has expired is for the
	// instances to judge, by their own clocks.
	PutServeLease(ctx context.Context, l records.ServeLease, cas int) (int, error)
}

// Locks are the keys' rotation locks: leases that their holder renews
// while it is alive.
type Locks interface {
	// Lock takes the rotation lock of keyID for holder, for ttl. A lock
	// held by someone else whose lease has not expired is refused with a
	// *LockedError naming its holder, unless Abandoned says its holder is
	// certainly dead; an expired one is taken over. The holder's BootID
	// and PIDNamespace are filled in from this process when empty. Two
	// callers racing for a free lock: one gets it, the other a
	// *LockedError.
	Lock(ctx context.Context, keyID string, holder records.Lock, ttl time.Duration) (Lease, error)

	// ReadLock returns the lock record of keyID as it stands (the zero
	// Lock when it was never taken).
	ReadLock(ctx context.Context, keyID string) (records.Lock, error)
}

// Lease is a held lock.
type Lease interface {
	// Holder is the lock record as held.
	Holder() records.Lock
	// Renew pushes the lease's expiry forward by its ttl. It fails with a
	// *LockedError when someone else took the lock meanwhile (after it
	// expired).
	Renew(ctx context.Context) error
	// Release frees the lock if this lease still holds it; a lock taken
	// over meanwhile is not freed, and that is no error.
	Release(ctx context.Context) error
}

// Prover proves, changing nothing, that this store's credentials may
// make every write a rotation will make: the store knows its own layout.
type Prover interface {
	// RotationWrites lists every place a rotation of keyID (stored at
	// path) writes, with the capabilities each needs: the key (a new
	// version, or its first when !keyExists), its metadata, and each of
	// rekey's records (the lock, the key's state and history, the
	// rotation's record and its journal). rotationID names the rotation's
	// own records; any id of the same form gives the same answer.
	RotationWrites(keyID, path, rotationID string, keyExists bool) []Write

	// CheckWrites asks, changing nothing, what the store's credentials
	// may do at each write and fills in what they lack. It fails only
	// when the store cannot be asked: failure.ErrUnauthorized (the
	// credentials may not ask) or failure.ErrTransient.
	CheckWrites(ctx context.Context, writes []Write) error

	// Settings reads what the store says about check-and-set and how many
	// versions of the key at path it keeps, changing nothing.
	// failure.ErrUnauthorized when the credentials may not read them.
	Settings(ctx context.Context, path string) (Settings, error)
}

// Wrapper is a store that can hand a value to one person, once: Vault's
// response wrapping, behind hand-off codes (rotation/handoff.go). The
// engine finds it by type assertion; a store that cannot do it is not
// asked to.
type Wrapper interface {
	// Wrap has the store wrap data for ttl and returns the wrapping token
	// (the code), its accessor, and when it was made. The code is a
	// credential: it is never recorded or logged.
	Wrap(ctx context.Context, data map[string]string, ttl time.Duration) (token, accessor string, created time.Time, err error)
	// Unwrap opens a code once, with no other credential. A code used,
	// expired or never issued is failure.ErrNotFound (Vault cannot tell
	// them apart).
	Unwrap(ctx context.Context, code string) (map[string]string, error)
	// LookupToken says, without opening it, when a code was made and for
	// how long; failure.ErrNotFound as Unwrap.
	LookupToken(ctx context.Context, code string) (created time.Time, ttl time.Duration, err error)
	// LookupAccessor says when the code with this accessor expires,
	// without the code; failure.ErrNotFound once it is used or expired.
	LookupAccessor(ctx context.Context, accessor string) (expires time.Time, err error)
}

// HandoffRecords is a store that records hand-off codes, by a keyed hash
// of the code, never the code.
type HandoffRecords interface {
	// HandoffSalt is the key of the codes' hash (made the first time).
	HandoffSalt(ctx context.Context) ([]byte, error)
	// Handoff reads a code's record; failure.ErrNotFound when none.
	Handoff(ctx context.Context, hash string) (*records.Handoff, error)
	// CreateHandoff writes a new code's record (failure.ErrConflict when
	// one is there).
	CreateHandoff(ctx context.Context, h *records.Handoff) error
	// UpdateHandoff applies change with check-and-set, retrying on
	// conflict; nothing is written when change reports no change.
	UpdateHandoff(ctx context.Context, hash string, change func(*records.Handoff) bool) (*records.Handoff, error)
}

// HandoffWriter is a Prover that can also list what a rotation with
// hand-offs writes besides RotationWrites (the wrapping, the codes' salt
// and records), for the preflight to prove.
type HandoffWriter interface {
	HandoffWrites() []Write
}
