// Package memstore is rekey's storage contract (package store) kept in
// memory: keys with their versions and custom metadata, rekey's records,
// rotation locks, response wrapping and hand-off records. It passes the same conformance
// suite as the Vault store (store/storetest), so the engine's, the
// daemon's and the CLI's logic tests run against it in milliseconds; what
// only Vault can show is tested against Vault.
//
// Records are kept as the JSON a real store would write, so what is read
// back is what a real store gives (times without a monotonic reading,
// fresh maps, nothing shared with the writer). Like Vault, it keeps 10
// versions of a key unless told otherwise, and it can be told that its
// credentials lack a capability at some path (Deny), for tests of the
// preflight's capability proof.
package memstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"path"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/records"
	"github.com/rekey-dev/rekey/secret"
	"github.com/rekey-dev/rekey/store"
)

// Options configure a Store. Zero values take defaults.
type Options struct {
	// Mount and StatePath name the places the store reports (as Vault
	// would: <mount>/data/<state_path>/...); default "mem" and "rekey".
	Mount     string
	StatePath string
	// MaxVersions is how many versions of a key are kept (default 10, as
	// Vault's KV v2); older ones are pruned as new ones are stored.
	MaxVersions int
	// Now is the clock of stored versions and lock leases (default
	// time.Now).
	Now func() time.Time
}

// Store is one handle on an in-memory store. Handles made with Open share
// the data but, like two processes, not what each has read or written.
type Store struct {
	b *backend

	mu    sync.Mutex
	seen  map[string]int // record → the version this handle last wrote or read
	onKey func(secret.Key)
}

var (
	_ store.Store          = (*Store)(nil)
	_ store.Wrapper        = (*Store)(nil)
	_ store.HandoffRecords = (*Store)(nil)
	_ store.HandoffWriter  = (*Store)(nil)
)

type backend struct {
	opts Options

	mu      sync.Mutex
	keys    map[string]*key
	records map[string]*entry
	deny    map[string][]string // path prefix → capabilities lacked
	wraps   map[string]wrapped
}

type key struct {
	current  int
	versions map[int]version // retained ones
	meta     map[string]string
}

type version struct {
	value   secret.Key
	created time.Time
}

type entry struct {
	version int
	data    []byte
	// rot holds a rotation's record instead of data: a copy, made and
	// handed out by cloneRotation (JSON would do, but a rotation of
	// thousands of integrations is written often, and copying it is a
	// hundred times cheaper than encoding it).
	rot *records.Rotation
}

type wrapped struct {
	data     map[string]string
	accessor string
	created  time.Time
	ttl      time.Duration
}

// New returns an empty store.
func New(opts Options) *Store {
	if opts.Mount == "" {
		opts.Mount = "mem"
	}
	if opts.StatePath == "" {
		opts.StatePath = "rekey"
	}
	if opts.MaxVersions <= 0 {
		opts.MaxVersions = 10
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	opts.Mount, opts.StatePath = strings.Trim(opts.Mount, "/"), strings.Trim(opts.StatePath, "/")
	return &Store{b: &backend{
		opts: opts, keys: map[string]*key{}, records: map[string]*entry{},
		deny: map[string][]string{}, wraps: map[string]wrapped{},
	}}
}

// Open returns another handle on the same data, as another process would
// have: it shares the keys and records but not this handle's knowledge of
// which record versions it wrote.
func (s *Store) Open() *Store { return &Store{b: s.b} }

// OnKey makes the store tell f of every key it reads, before returning
// it (as vaultstore.Store.OnKey), so that a redactor knows each version of
// a key before any text that could quote it is printed. Call it before
// the store is used.
func (s *Store) OnKey(f func(secret.Key)) { s.onKey = f }

// Deny makes the store's credentials lack caps (Vault's words: read,
// create, update, patch, list) at every path that starts with prefix, as
// the store names paths (RotationWrites). Writes there then fail with
// failure.ErrUnauthorized, as Vault's would.
func (s *Store) Deny(prefix string, caps ...string) {
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	s.b.deny[prefix] = append(s.b.deny[prefix], caps...)
}

// SetMaxVersions changes how many versions of each key are kept, as
// `vault write <mount>/config max_versions=n` would; it prunes when a
// version is next stored.
func (s *Store) SetMaxVersions(n int) {
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	s.b.opts.MaxVersions = n
}

func (s *Store) now() time.Time { return s.b.opts.Now().UTC() }

// dataPath is where a key or record lives, as Vault would name it.
func (b *backend) dataPath(p string) string { return b.opts.Mount + "/data/" + p }

func (b *backend) metaPath(p string) string { return b.opts.Mount + "/metadata/" + p }

func (b *backend) recordPath(rel string) string { return path.Join(b.opts.StatePath, rel) }

// caps is what the credentials may do at p; b.mu must be held.
func (b *backend) caps(p string) []string {
	all := []string{"create", "read", "update", "patch", "list"}
	for prefix, lacks := range b.deny {
		if strings.HasPrefix(p, prefix) {
			all = slices.DeleteFunc(all, func(c string) bool { return slices.Contains(lacks, c) })
		}
	}
	return all
}

// may fails with failure.ErrUnauthorized unless the credentials may do c
// at p; b.mu must be held.
func (b *backend) may(p, c, what string) error {
	if !slices.Contains(b.caps(p), c) {
		return fmt.Errorf("memstore: %s %s: permission denied (%s): %w", what, p, c, failure.ErrUnauthorized)
	}
	return nil
}

// Location implements store.Keys.
func (s *Store) Location(p string) string { return s.b.opts.Mount + "/" + p }

// ReadKey implements store.Keys.
func (s *Store) ReadKey(ctx context.Context, p string) (store.KeyVersion, error) {
	if err := ctx.Err(); err != nil {
		return store.KeyVersion{}, err
	}
	s.b.mu.Lock()
	if err := s.b.may(s.b.dataPath(p), "read", "read"); err != nil {
		s.b.mu.Unlock()
		return store.KeyVersion{}, err
	}
	k := s.b.keys[p]
	var kv store.KeyVersion
	ok := false
	if k != nil {
		var v version
		if v, ok = k.versions[k.current]; ok {
			kv = store.KeyVersion{Version: k.current, Key: v.value, Created: v.created, Metadata: cloneMap(k.meta)}
		}
	}
	s.b.mu.Unlock()
	if !ok {
		return store.KeyVersion{}, fmt.Errorf("memstore: read %s: %w", s.Location(p), failure.ErrNotFound)
	}
	s.told(kv.Key)
	return kv, nil
}

func (s *Store) told(k secret.Key) {
	if s.onKey != nil {
		s.onKey(k)
	}
}

// Versions implements store.Keys.
func (s *Store) Versions(ctx context.Context, p string) ([]store.KeyVersion, int, error) {
	if err := ctx.Err(); err != nil {
		return nil, 0, err
	}
	s.b.mu.Lock()
	if err := s.b.may(s.b.dataPath(p), "read", "read"); err != nil {
		s.b.mu.Unlock()
		return nil, 0, err
	}
	k := s.b.keys[p]
	if k == nil {
		s.b.mu.Unlock()
		return nil, 0, fmt.Errorf("memstore: read metadata %s: %w", s.Location(p), failure.ErrNotFound)
	}
	out := make([]store.KeyVersion, 0, len(k.versions))
	for n, v := range k.versions {
		out = append(out, store.KeyVersion{Version: n, Key: v.value, Created: v.created, Metadata: cloneMap(k.meta)})
	}
	current := k.current
	s.b.mu.Unlock()
	slices.SortFunc(out, func(a, b store.KeyVersion) int { return a.Version - b.Version })
	for _, v := range out {
		s.told(v.Key)
	}
	return out, current, nil
}

// WriteKey implements store.Keys.
func (s *Store) WriteKey(ctx context.Context, p string, k secret.Key, cas int, meta map[string]string) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	where := "memstore: write " + s.Location(p)
	if cas < 0 {
		return 0, fmt.Errorf("%s: check-and-set version %d: %w", where, cas, failure.ErrInvalid)
	}
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	cur := s.b.keys[p]
	capability := "update"
	if cur == nil {
		capability = "create"
	}
	if err := s.b.may(s.b.dataPath(p), capability, "write"); err != nil {
		return 0, err
	}
	if cur == nil {
		cur = &key{versions: map[int]version{}, meta: map[string]string{}}
	}
	if cas != cur.current {
		return 0, fmt.Errorf("%s: check-and-set parameter did not match the current version: %w", where, failure.ErrConflict)
	}
	s.b.keys[p] = cur
	cur.current++
	cur.versions[cur.current] = version{value: k, created: s.now()}
	for n := range cur.versions {
		if n <= cur.current-s.b.opts.MaxVersions {
			delete(cur.versions, n)
		}
	}
	if len(meta) > 0 {
		if err := s.b.may(s.b.metaPath(p), "patch", "write metadata"); err != nil {
			return cur.current, err
		}
		patch(cur.meta, meta)
	}
	return cur.current, nil
}

// PatchMetadata implements store.Keys.
func (s *Store) PatchMetadata(ctx context.Context, p string, meta map[string]string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	if err := s.b.may(s.b.metaPath(p), "patch", "write metadata"); err != nil {
		return err
	}
	k := s.b.keys[p]
	if k == nil {
		return fmt.Errorf("memstore: write metadata %s: %w", s.Location(p), failure.ErrNotFound)
	}
	patch(k.meta, meta)
	return nil
}

func patch(dst, meta map[string]string) {
	for k, v := range meta {
		dst[k] = store.Truncate(v, store.MaxMetadataValue)
	}
}

func cloneMap(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// get reads the record at rel into dst and returns its version. A missing
// record is failure.ErrNotFound with version 0.
func (s *Store) get(ctx context.Context, rel string, dst any) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	p := s.b.recordPath(rel)
	s.b.mu.Lock()
	if err := s.b.may(s.b.dataPath(p), "read", "read record"); err != nil {
		s.b.mu.Unlock()
		return 0, err
	}
	var e entry // a copy: the entry changes under b.mu
	if cur := s.b.records[p]; cur != nil {
		e = *cur
	}
	s.b.mu.Unlock()
	if e.version == 0 {
		return 0, fmt.Errorf("memstore: read record %s: %w", s.b.dataPath(p), failure.ErrNotFound)
	}
	if r, ok := dst.(*records.Rotation); ok && e.rot != nil {
		*r = *cloneRotation(e.rot)
	} else if err := json.Unmarshal(e.data, dst); err != nil {
		return 0, fmt.Errorf("memstore: decode record %s: %w", s.b.dataPath(p), err)
	}
	s.mu.Lock()
	if s.seen == nil {
		s.seen = map[string]int{}
	}
	s.seen[p] = e.version
	s.mu.Unlock()
	return e.version, nil
}

// put writes v at rel with check-and-set on cas (0: creates it).
func (s *Store) put(ctx context.Context, rel string, v any, cas int) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	p := s.b.recordPath(rel)
	where := "memstore: write record " + s.b.dataPath(p)
	if cas < 0 {
		return 0, fmt.Errorf("%s: check-and-set version %d: %w", where, cas, failure.ErrInvalid)
	}
	var data []byte
	rot, isRotation := v.(*records.Rotation)
	if isRotation {
		rot = cloneRotation(rot)
	} else {
		var err error
		if data, err = json.Marshal(v); err != nil {
			return 0, fmt.Errorf("%s: %w", where, err)
		}
	}
	s.b.mu.Lock()
	e := s.b.records[p]
	capability := "update"
	if e == nil {
		capability, e = "create", &entry{}
	}
	if err := s.b.may(s.b.dataPath(p), capability, "write record"); err != nil {
		s.b.mu.Unlock()
		return 0, err
	}
	if e.version != cas {
		s.b.mu.Unlock()
		return 0, fmt.Errorf("%s: check-and-set parameter did not match the current version: %w", where, failure.ErrConflict)
	}
	e.version, e.data, e.rot = e.version+1, data, rot
	s.b.records[p] = e
	version := e.version
	s.b.mu.Unlock()
	s.mu.Lock()
	if s.seen == nil {
		s.seen = map[string]int{}
	}
	s.seen[p] = version
	s.mu.Unlock()
	return version, nil
}

// save writes v at rel with check-and-set on the version this handle last
// wrote or read there (0: creates it).
func (s *Store) save(ctx context.Context, rel string, v any) error {
	s.mu.Lock()
	cas := s.seen[s.b.recordPath(rel)]
	s.mu.Unlock()
	_, err := s.put(ctx, rel, v, cas)
	return err
}

func rotationRel(keyID, id string) string { return "keys/" + keyID + "/rotations/" + id }

// SaveRotation implements store.Records.
func (s *Store) SaveRotation(ctx context.Context, r *records.Rotation) error {
	if len(r.Journal) > 0 {
		// The journal is a record of its own at a real store: its place
		// must be writable too.
		s.b.mu.Lock()
		err := s.b.may(s.b.dataPath(s.b.recordPath(fmt.Sprintf("keys/%s/journals/%s/%06d", r.KeyID, r.ID, 0))), "create", "write record")
		s.b.mu.Unlock()
		if err != nil {
			return err
		}
	}
	return s.save(ctx, rotationRel(r.KeyID, r.ID), r)
}

// Rotation implements store.Records.
func (s *Store) Rotation(ctx context.Context, keyID, id string) (*records.Rotation, error) {
	var r records.Rotation
	if _, err := s.get(ctx, rotationRel(keyID, id), &r); err != nil {
		return nil, err
	}
	if r.Integrations == nil {
		r.Integrations = map[string]*records.Integration{}
	}
	return &r, nil
}

// LatestRotation implements store.Records.
func (s *Store) LatestRotation(ctx context.Context, keyID string) (*records.Rotation, error) {
	st, _, err := s.KeyState(ctx, keyID)
	if err != nil {
		return nil, err
	}
	if st.LatestRotation == "" {
		return nil, fmt.Errorf("memstore: key %s has no rotation on record: %w", keyID, failure.ErrNotFound)
	}
	return s.Rotation(ctx, keyID, st.LatestRotation)
}

// Rotations implements store.Records.
func (s *Store) Rotations(ctx context.Context, keyID string) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	prefix := s.b.recordPath(rotationRel(keyID, "")) + "/"
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	if err := s.b.may(s.b.metaPath(prefix), "list", "list"); err != nil {
		return nil, err
	}
	var ids []string
	for p := range s.b.records {
		if id, ok := strings.CutPrefix(p, prefix); ok && !strings.Contains(id, "/") {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids, nil
}

// KeyState implements store.Records.
func (s *Store) KeyState(ctx context.Context, keyID string) (*records.KeyState, int, error) {
	var st records.KeyState
	v, err := s.get(ctx, "keys/"+keyID+"/state", &st)
	if errors.Is(err, failure.ErrNotFound) {
		return &records.KeyState{}, v, nil
	}
	if err != nil {
		return nil, 0, err
	}
	return &st, v, nil
}

// UpdateKeyState implements store.Records.
func (s *Store) UpdateKeyState(ctx context.Context, keyID string, change func(*records.KeyState)) error {
	_, err := store.Update(ctx,
		func() (*records.KeyState, int, error) { return s.KeyState(ctx, keyID) },
		func(st *records.KeyState) (bool, error) { change(st); return true, nil },
		func(st *records.KeyState, v int) error {
			_, err := s.put(ctx, "keys/"+keyID+"/state", st, v)
			return err
		})
	return err
}

// History implements store.Records.
func (s *Store) History(ctx context.Context, keyID string) (*records.History, int, error) {
	var h records.History
	v, err := s.get(ctx, "keys/"+keyID+"/history", &h)
	if err != nil {
		return nil, v, err
	}
	return &h, v, nil
}

// UpdateHistory implements store.Records.
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
			_, err := s.put(ctx, "keys/"+keyID+"/history", h, v)
			return err
		})
}

// LastAudit implements store.Records.
func (s *Store) LastAudit(ctx context.Context, keyID string) (*records.Audit, int, error) {
	var a records.Audit
	v, err := s.get(ctx, "keys/"+keyID+"/audit", &a)
	if err != nil {
		return nil, v, err
	}
	return &a, v, nil
}

// SaveAudit implements store.Records.
func (s *Store) SaveAudit(ctx context.Context, keyID string, a *records.Audit, cas int) (int, error) {
	return s.put(ctx, "keys/"+keyID+"/audit", a, cas)
}

// Said implements store.Records.
func (s *Store) Said(ctx context.Context) (*records.Said, int, error) {
	var said records.Said
	v, err := s.get(ctx, "serve/said", &said)
	if err != nil {
		return nil, v, err
	}
	return &said, v, nil
}

// SaveSaid implements store.Records.
func (s *Store) SaveSaid(ctx context.Context, said *records.Said, cas int) (int, error) {
	return s.put(ctx, "serve/said", said, cas)
}

// ServeLease implements store.Records.
func (s *Store) ServeLease(ctx context.Context) (records.ServeLease, int, error) {
	var l records.ServeLease
	v, err := s.get(ctx, "serve/lease", &l)
	return l, v, err
}

// PutServeLease implements store.Records.
func (s *Store) PutServeLease(ctx context.Context, l records.ServeLease, cas int) (int, error) {
	return s.put(ctx, "serve/lease", l, cas)
}

// lease is a held rotation lock.
type lease struct {
	s       *Store
	rel     string
	ttl     time.Duration
	version int
	rec     records.Lock
}

// Lock implements store.Locks.
func (s *Store) Lock(ctx context.Context, keyID string, holder records.Lock, ttl time.Duration) (store.Lease, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	rel := "keys/" + keyID + "/lock"
	p := s.b.recordPath(rel)
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	e := s.b.records[p]
	capability := "update"
	if e == nil {
		capability, e = "create", &entry{}
	}
	if err := s.b.may(s.b.dataPath(p), capability, "lock"); err != nil {
		return nil, err
	}
	var cur records.Lock
	if e.data != nil {
		if err := json.Unmarshal(e.data, &cur); err != nil {
			return nil, fmt.Errorf("memstore: decode lock %s: %w", keyID, err)
		}
	}
	rec, err := store.Take(keyID, cur, holder, s.now(), ttl)
	if err != nil {
		return nil, err
	}
	e.data, _ = json.Marshal(rec)
	e.version++
	s.b.records[p] = e
	json.Unmarshal(e.data, &rec) // as a reader would see it
	return &lease{s: s, rel: p, ttl: ttl, version: e.version, rec: rec}, nil
}

// ReadLock implements store.Locks.
func (s *Store) ReadLock(ctx context.Context, keyID string) (records.Lock, error) {
	var cur records.Lock
	_, err := s.get(ctx, "keys/"+keyID+"/lock", &cur)
	if errors.Is(err, failure.ErrNotFound) {
		return records.Lock{}, nil
	}
	return cur, err
}

func (l *lease) Holder() records.Lock { return l.rec }

func (l *lease) Renew(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b := l.s.b
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.records[l.rel]
	if e == nil || e.version != l.version {
		var cur records.Lock
		if e != nil {
			json.Unmarshal(e.data, &cur)
		}
		return &store.LockedError{KeyID: path.Base(path.Dir(l.rel)), Holder: cur}
	}
	rec := l.rec
	rec.Expires = l.s.now().Add(l.ttl)
	e.data, _ = json.Marshal(rec)
	e.version++
	l.version, l.rec = e.version, rec
	return nil
}

func (l *lease) Release(ctx context.Context) error {
	b := l.s.b
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.records[l.rel]
	if e == nil || e.version != l.version {
		return nil // taken over after expiry: not ours to free
	}
	e.data, _ = json.Marshal(records.Lock{Held: false})
	e.version++
	l.version = e.version
	return nil
}

// RotationWrites implements store.Prover, naming paths as Vault would.
func (s *Store) RotationWrites(keyID, p, rotationID string, keyExists bool) []store.Write {
	b := s.b
	keyNeeds := []string{"read", "update"}
	if !keyExists {
		keyNeeds = []string{"read", "create"}
	}
	rec := []string{"read", "create", "update"}
	r := func(rel string) string { return b.dataPath(b.recordPath(rel)) }
	return []store.Write{
		{Path: b.dataPath(p), What: "the key", Needs: keyNeeds},
		{Path: b.metaPath(p), What: "the key's metadata", Needs: []string{"read", "patch"}},
		{Path: r("keys/" + keyID + "/lock"), What: "the rotation lock", Needs: rec},
		{Path: r("keys/" + keyID + "/state"), What: "the key's state", Needs: rec},
		{Path: r("keys/" + keyID + "/history"), What: "the key's version history", Needs: rec},
		{Path: r(rotationRel(keyID, rotationID)), What: "the rotation's record", Needs: rec},
		{Path: r(fmt.Sprintf("keys/%s/journals/%s/%06d", keyID, rotationID, 0)), What: "the rotation's journal parts", Needs: rec},
	}
}

// CheckWrites implements store.Prover.
func (s *Store) CheckWrites(ctx context.Context, writes []store.Write) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	for i := range writes {
		writes[i].Lacking(s.b.caps)
	}
	return nil
}

// Settings implements store.Prover.
func (s *Store) Settings(ctx context.Context, p string) (store.Settings, error) {
	if err := ctx.Err(); err != nil {
		return store.Settings{}, err
	}
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	return store.Settings{MaxVersions: s.b.opts.MaxVersions}, nil
}

// Wrap implements store.Wrapper: data is kept in memory under a random
// code, for ttl, to be opened once.
func (s *Store) Wrap(ctx context.Context, data map[string]string, ttl time.Duration) (string, string, time.Time, error) {
	if err := ctx.Err(); err != nil {
		return "", "", time.Time{}, err
	}
	b := make([]byte, 24)
	rand.Read(b)
	code, accessor := "mem."+hex.EncodeToString(b[:16]), hex.EncodeToString(b[16:])
	now := s.now()
	s.b.mu.Lock()
	s.b.wraps[code] = wrapped{data: maps.Clone(data), accessor: accessor, created: now, ttl: ttl}
	s.b.mu.Unlock()
	return code, accessor, now, nil
}

// live returns the code's wrapping if it is still to be opened; b.mu must
// be held.
func (b *backend) live(code string, now time.Time) (wrapped, bool) {
	w, ok := b.wraps[code]
	if !ok || now.After(w.created.Add(w.ttl)) {
		return wrapped{}, false
	}
	return w, true
}

func usedOrExpired(what string) error {
	return fmt.Errorf("memstore: %s: the code was used, has expired or was never issued: %w", what, failure.ErrNotFound)
}

// Unwrap implements store.Wrapper.
func (s *Store) Unwrap(ctx context.Context, code string) (map[string]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	w, ok := s.b.live(code, s.now())
	delete(s.b.wraps, code)
	if !ok {
		return nil, usedOrExpired("unwrap")
	}
	return w.data, nil
}

// LookupToken implements store.Wrapper.
func (s *Store) LookupToken(ctx context.Context, code string) (time.Time, time.Duration, error) {
	if err := ctx.Err(); err != nil {
		return time.Time{}, 0, err
	}
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	w, ok := s.b.live(code, s.now())
	if !ok {
		return time.Time{}, 0, usedOrExpired("look up a code")
	}
	return w.created, w.ttl, nil
}

// LookupAccessor implements store.Wrapper.
func (s *Store) LookupAccessor(ctx context.Context, accessor string) (time.Time, error) {
	if err := ctx.Err(); err != nil {
		return time.Time{}, err
	}
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	for code, w := range s.b.wraps {
		if w.accessor == accessor {
			if _, ok := s.b.live(code, s.now()); ok {
				return w.created.Add(w.ttl), nil
			}
		}
	}
	return time.Time{}, usedOrExpired("look up an accessor")
}

// HandoffSalt implements store.HandoffRecords.
func (s *Store) HandoffSalt(ctx context.Context) ([]byte, error) {
	var salt []byte
	err := store.RetryConflicts(ctx, func() error {
		var hs records.HandoffSalt
		v, err := s.get(ctx, "handoffs/salt", &hs)
		if err == nil {
			if salt, err = hs.Bytes(); err != nil {
				return fmt.Errorf("memstore: %w", err)
			}
			return nil
		}
		if !errors.Is(err, failure.ErrNotFound) {
			return err
		}
		if salt, hs, err = records.NewHandoffSalt(); err != nil {
			return err
		}
		_, err = s.put(ctx, "handoffs/salt", &hs, v) // a conflict: another made it first; read theirs
		return err
	})
	if err != nil {
		return nil, err
	}
	return salt, nil
}

// Handoff implements store.HandoffRecords.
func (s *Store) Handoff(ctx context.Context, hash string) (*records.Handoff, error) {
	var h records.Handoff
	if _, err := s.get(ctx, "handoffs/"+hash, &h); err != nil {
		return nil, err
	}
	return &h, nil
}

// CreateHandoff implements store.HandoffRecords.
func (s *Store) CreateHandoff(ctx context.Context, h *records.Handoff) error {
	if h.CodeHash == "" || strings.Contains(h.CodeHash, "/") {
		return fmt.Errorf("memstore: hand-off record: %q is not a code hash: %w", h.CodeHash, failure.ErrInvalid)
	}
	_, err := s.put(ctx, "handoffs/"+h.CodeHash, h, 0)
	return err
}

// UpdateHandoff implements store.HandoffRecords.
func (s *Store) UpdateHandoff(ctx context.Context, hash string, change func(*records.Handoff) bool) (*records.Handoff, error) {
	var h *records.Handoff
	err := store.RetryConflicts(ctx, func() error {
		h = &records.Handoff{}
		v, err := s.get(ctx, "handoffs/"+hash, h)
		if err != nil || !change(h) {
			return err
		}
		_, err = s.put(ctx, "handoffs/"+hash, h, v)
		return err
	})
	if err != nil {
		return nil, err
	}
	return h, nil
}

// HandoffWrites implements store.HandoffWriter, naming paths as Vault would.
func (s *Store) HandoffWrites() []store.Write {
	rec := []string{"read", "create", "update"}
	r := func(rel string) string { return s.b.dataPath(s.b.recordPath(rel)) }
	return []store.Write{
		{Path: "sys/wrapping/wrap", What: "hand-off codes (Vault response wrapping)", Needs: []string{"update"}},
		{Path: r("handoffs/salt"), What: "the hand-off codes' salt", Needs: rec},
		{Path: r("handoffs/" + strings.Repeat("0", 64)), What: "the hand-off records", Needs: rec},
	}
}

// Dump returns every record and every key's custom metadata as text, for
// tests that search what rekey kept for keys. The keys' values are left
// out: that is where keys belong.
func (s *Store) Dump() []byte { return s.DumpPrefix("") }

// DumpPrefix is Dump of what lives under prefix, as Vault would name it
// under the mount: "rekey/" is rekey's records (with the default state
// path), "" everything.
func (s *Store) DumpPrefix(prefix string) []byte {
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	var b strings.Builder
	paths := make([]string, 0, len(s.b.records))
	for p := range s.b.records {
		if strings.HasPrefix(p, prefix) {
			paths = append(paths, p)
		}
	}
	sort.Strings(paths)
	for _, p := range paths {
		e := s.b.records[p]
		data := e.data
		if e.rot != nil {
			data, _ = json.Marshal(e.rot)
		}
		fmt.Fprintf(&b, "%s v%d %s\n", p, e.version, data)
	}
	for p, k := range s.b.keys {
		if strings.HasPrefix(p, prefix) {
			meta, _ := json.Marshal(k.meta)
			fmt.Fprintf(&b, "%s metadata %s\n", p, meta)
		}
	}
	return []byte(b.String())
}

// cloneRotation copies r as a store would give it back: nothing shared
// with r, and times without a monotonic clock reading.
func cloneRotation(r *records.Rotation) *records.Rotation {
	c := *r
	c.Started, c.Stored, c.Finished = r.Started.Round(0), r.Stored.Round(0), r.Finished.Round(0)
	if r.Integrations != nil {
		c.Integrations = make(map[string]*records.Integration, len(r.Integrations))
		for id, in := range r.Integrations {
			if in == nil {
				c.Integrations[id] = nil
				continue
			}
			x := *in
			x.Written.At, x.Confirmed.At, x.Updated = in.Written.At.Round(0), in.Confirmed.At.Round(0), in.Updated.Round(0)
			c.Integrations[id] = &x
		}
	}
	if r.Journal != nil {
		c.Journal = make([]records.Transition, len(r.Journal))
		for i, t := range r.Journal {
			t.At = t.At.Round(0)
			c.Journal[i] = t
		}
	}
	if r.Timeline != nil {
		c.Timeline = make([]records.Mark, len(r.Timeline))
		for i, m := range r.Timeline {
			m.At = m.At.Round(0)
			c.Timeline[i] = m
		}
	}
	if r.Thread != nil {
		t := *r.Thread
		c.Thread = &t
	}
	return &c
}
