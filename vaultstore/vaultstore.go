// Package vaultstore is rekey's access to Vault KV version 2: the keys
// themselves (field api_key of <mount>/data/<vault_path>), their versions
// and custom metadata, and rekey's own records under
// <mount>/<state_path>/ (rotations, key state, locks, leases).
package vaultstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	vault "github.com/hashicorp/vault/api"

	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/internal/vaulterr"
	"github.com/rekey-dev/rekey/secret"
	"github.com/rekey-dev/rekey/store"
)

// Field is the KV field that holds a key's value.
const Field = "api_key"

// Store reads and writes keys and records in one KV v2 mount.
type Store struct {
	c         *vault.Client
	mount     string
	statePath string

	mu      sync.Mutex
	records map[string]*recordState    // record path → what this store knows of it
	layouts map[string]*rotationLayout // key/rotation id → how its record was last laid out
	pages   pageCache                  // what each page held when last written or read
	slots   map[string]*slotPages      // slotted record → the slot its head last named

	onKey func(secret.Key) // told of every key read from Vault; see OnKey

	largest atomic.Int64 // bytes of the largest record entry written
}

// Largest is the size in bytes of the largest record entry this store
// has written (the record's JSON, as Vault keeps it).
func (s *Store) Largest() int { return int(s.largest.Load()) }

// New returns a Store for mount, keeping records under statePath.
func New(c *vault.Client, mount, statePath string) *Store {
	return &Store{c: c, mount: strings.Trim(mount, "/"), statePath: strings.Trim(statePath, "/")}
}

// OnKey makes the store tell f of every key it reads from Vault, before
// returning it, so that a redactor (secret.Redactor) knows each version of
// a key before any text that could quote it is printed, posted or
// recorded. Call it before the store is used.
func (s *Store) OnKey(f func(secret.Key)) { s.onKey = f }

// Client returns the Vault client.
func (s *Store) Client() *vault.Client { return s.c }

// Mount returns the KV v2 mount.
func (s *Store) Mount() string { return s.mount }

// KeyVersion is one version of a key as read from Vault (store.KeyVersion).
type KeyVersion = store.KeyVersion

var _ store.Store = (*Store)(nil)

// Location implements store.Keys: <mount>/<path>.
func (s *Store) Location(vaultPath string) string { return s.mount + "/" + vaultPath }

// ReadKey reads the current version of the key at vaultPath. A path with
// no live version is failure.ErrNotFound.
func (s *Store) ReadKey(ctx context.Context, vaultPath string) (KeyVersion, error) {
	sec, err := s.c.KVv2(s.mount).Get(ctx, vaultPath)
	if err != nil {
		return KeyVersion{}, classify(ctx, fmt.Sprintf("vault: read %s/%s", s.mount, vaultPath), err)
	}
	return s.keyVersion(ctx, vaultPath, sec)
}

// ReadKeyVersion reads one version of the key at vaultPath.
func (s *Store) ReadKeyVersion(ctx context.Context, vaultPath string, version int) (KeyVersion, error) {
	sec, err := s.c.KVv2(s.mount).GetVersion(ctx, vaultPath, version)
	if err != nil {
		return KeyVersion{}, classify(ctx, fmt.Sprintf("vault: read %s/%s version %d", s.mount, vaultPath, version), err)
	}
	return s.keyVersion(ctx, vaultPath, sec)
}

func (s *Store) keyVersion(_ context.Context, vaultPath string, sec *vault.KVSecret) (KeyVersion, error) {
	if sec == nil || sec.VersionMetadata == nil || sec.Data == nil {
		return KeyVersion{}, fmt.Errorf("vault: read %s/%s: %w", s.mount, vaultPath, failure.ErrNotFound)
	}
	v, ok := sec.Data[Field].(string)
	if !ok {
		return KeyVersion{}, fmt.Errorf("vault: read %s/%s: field %s missing or not a string: %w", s.mount, vaultPath, Field, failure.ErrNotFound)
	}
	kv := KeyVersion{
		Version: sec.VersionMetadata.Version,
		Key:     secret.New(v),
		Created: sec.VersionMetadata.CreatedTime,
	}
	if s.onKey != nil {
		s.onKey(kv.Key)
	}
	kv.Metadata = map[string]string{}
	for k, val := range sec.CustomMetadata {
		if str, ok := val.(string); ok {
			kv.Metadata[k] = str
		}
	}
	return kv, nil
}

// Versions returns every retained, readable version of the key at
// vaultPath, oldest first, and the current version number.
func (s *Store) Versions(ctx context.Context, vaultPath string) ([]KeyVersion, int, error) {
	md, err := s.c.KVv2(s.mount).GetMetadata(ctx, vaultPath)
	if err != nil {
		return nil, 0, classify(ctx, fmt.Sprintf("vault: read metadata %s/%s", s.mount, vaultPath), err)
	}
	var nums []int
	for k, v := range md.Versions {
		if !v.DeletionTime.IsZero() || v.Destroyed {
			continue
		}
		n, err := strconv.Atoi(k)
		if err == nil {
			nums = append(nums, n)
		}
	}
	slices.Sort(nums)
	// Read the versions at once: a rotation reads them all before it may
	// store the new key, and one after another they added up.
	kvs := make([]KeyVersion, len(nums))
	errs := make([]error, len(nums))
	var wg sync.WaitGroup
	for i, n := range nums {
		wg.Go(func() { kvs[i], errs[i] = s.ReadKeyVersion(ctx, vaultPath, n) })
	}
	wg.Wait()
	out := make([]KeyVersion, 0, len(nums))
	for i := range nums {
		if errors.Is(errs[i], failure.ErrNotFound) {
			continue
		}
		if errs[i] != nil {
			return nil, 0, errs[i]
		}
		out = append(out, kvs[i])
	}
	return out, md.CurrentVersion, nil
}

// WriteKey stores key as a new version of vaultPath with check-and-set on
// cas (0: the path must not exist yet), then records meta as custom
// metadata. If the write's answer is lost or ambiguous, it reads back and
// reports success when the current version holds exactly this key. A CAS
// mismatch is failure.ErrConflict.
func (s *Store) WriteKey(ctx context.Context, vaultPath string, key secret.Key, cas int, meta map[string]string) (int, error) {
	where := fmt.Sprintf("vault: write %s/%s", s.mount, vaultPath)
	sec, err := s.c.KVv2(s.mount).Put(ctx, vaultPath, map[string]any{Field: key.Reveal()}, vault.WithCheckAndSet(cas))
	version := 0
	if err != nil {
		werr := classify(ctx, where, err)
		// The write may have landed even though we did not hear so.
		cur, rerr := s.ReadKey(context.WithoutCancel(ctx), vaultPath)
		if rerr != nil || !cur.Key.Equal(key) || cur.Version != cas+1 {
			return 0, werr
		}
		version = cur.Version
	} else {
		version = sec.VersionMetadata.Version
	}
	if len(meta) > 0 {
		if err := s.PatchMetadata(ctx, vaultPath, meta); err != nil {
			return version, err
		}
	}
	return version, nil
}

// PatchMetadata merges custom metadata into vaultPath's, keeping the
// other fields. Values longer than Vault's 512-byte limit are cut.
func (s *Store) PatchMetadata(ctx context.Context, vaultPath string, meta map[string]string) error {
	cm := make(map[string]any, len(meta))
	for k, v := range meta {
		cm[k] = Truncate(v, store.MaxMetadataValue)
	}
	err := s.c.KVv2(s.mount).PatchMetadata(ctx, vaultPath, vault.KVMetadataPatchInput{CustomMetadata: cm})
	if err != nil {
		return classify(ctx, fmt.Sprintf("vault: write metadata %s/%s", s.mount, vaultPath), err)
	}
	return nil
}

// Truncate cuts s to at most n bytes on a rune boundary, marking the cut.
func Truncate(s string, n int) string { return store.Truncate(s, n) }

// RecordPath returns the KV path of a record under the state path.
func (s *Store) RecordPath(parts ...string) string {
	return path.Join(append([]string{s.statePath}, parts...)...)
}

// GetRecord reads the JSON record at rel (under the state path) into dst
// and returns its version. A missing record is failure.ErrNotFound, with
// the version a write must check-and-set against to create it: 0 when the
// path never existed, the latest version's number when that version was
// deleted or destroyed (Vault still counts it).
func (s *Store) GetRecord(ctx context.Context, rel string, dst any) (int, error) {
	p := s.RecordPath(rel)
	b, version, err := s.getBytes(ctx, p)
	if err != nil {
		return version, err
	}
	if err := json.Unmarshal(b, dst); err != nil {
		return 0, fmt.Errorf("vault: decode record %s/%s: %w", s.mount, p, err)
	}
	s.mu.Lock()
	s.seen(p).version, s.seen(p).lost = version, nil
	s.mu.Unlock()
	return version, nil
}

// getBytes reads the data of the latest version of the KV path p (under
// the mount), as the JSON Vault sent, and its version; see GetRecord for a
// missing record. Vault's answer is decoded once, straight to the
// record's bytes (a page of a large record is read in one pass).
func (s *Store) getBytes(ctx context.Context, p string) (json.RawMessage, int, error) {
	where := fmt.Sprintf("vault: read record %s/%s", s.mount, p)
	resp, err := s.c.Logical().ReadRawWithContext(ctx, s.mount+"/data/"+p)
	if resp != nil {
		defer resp.Body.Close()
	}
	var answer struct {
		Data *struct {
			Data     json.RawMessage `json:"data"`
			Metadata *struct {
				Version int `json:"version"`
			} `json:"metadata"`
		} `json:"data"`
	}
	if resp != nil && resp.StatusCode == http.StatusNotFound {
		// KV v2 answers 404 for a path that never held a version, and for
		// one whose latest version was deleted (with its metadata).
		if derr := json.NewDecoder(io.LimitReader(resp.Body, maxAnswer)).Decode(&answer); derr != nil {
			return nil, 0, classify(ctx, where, derr)
		}
		if answer.Data != nil && answer.Data.Metadata != nil {
			v := answer.Data.Metadata.Version
			return nil, v, fmt.Errorf("%s: version %d deleted: %w", where, v, failure.ErrNotFound)
		}
		return nil, 0, fmt.Errorf("%s: %w", where, failure.ErrNotFound)
	}
	if err != nil {
		return nil, 0, classify(ctx, where, err)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxAnswer)).Decode(&answer); err != nil {
		return nil, 0, classify(ctx, where, err)
	}
	if answer.Data == nil || answer.Data.Metadata == nil {
		return nil, 0, fmt.Errorf("%s: %w", where, failure.ErrNotFound)
	}
	v := answer.Data.Metadata.Version
	if len(answer.Data.Data) == 0 || string(answer.Data.Data) == "null" {
		return nil, v, fmt.Errorf("%s: version %d deleted: %w", where, v, failure.ErrNotFound)
	}
	return answer.Data.Data, v, nil
}

// maxAnswer bounds what is read of one answer: a record entry is at most
// MaxEntry, with Vault's wrapping around it.
const maxAnswer = 4 * MaxEntry

// getRaw reads the data of the latest version of the KV path p (under the
// mount) and its version; see GetRecord for a missing record.
func (s *Store) getRaw(ctx context.Context, p string) (map[string]any, int, error) {
	where := fmt.Sprintf("vault: read record %s/%s", s.mount, p)
	sec, err := s.c.KVv2(s.mount).Get(ctx, p)
	if err != nil {
		return nil, 0, classify(ctx, where, err)
	}
	if sec == nil || sec.VersionMetadata == nil {
		return nil, 0, fmt.Errorf("%s: %w", where, failure.ErrNotFound)
	}
	if sec.Data == nil {
		// The latest version was deleted or destroyed.
		return nil, sec.VersionMetadata.Version, fmt.Errorf("%s: version %d deleted: %w", where, sec.VersionMetadata.Version, failure.ErrNotFound)
	}
	return sec.Data, sec.VersionMetadata.Version, nil
}

// recordState is what this store knows of one record path.
type recordState struct {
	version int // the version last written or read here; 0: none
	// lost is the canonical body of a write whose answer was lost, and
	// lostVersion the version it would have made: whether it landed is
	// found out before the path is written again.
	lost        []byte
	lostVersion int
}

// seen returns p's state; s.mu must be held.
func (s *Store) seen(p string) *recordState {
	if s.records == nil {
		s.records = map[string]*recordState{}
	}
	st := s.records[p]
	if st == nil {
		st = &recordState{}
		s.records[p] = st
	}
	return st
}

// PutRecord writes v as the JSON record at rel with check-and-set on cas:
// 0 creates it (the path must not exist, or its latest version be deleted
// with cas its number), n updates version n. A mismatch is
// failure.ErrConflict. Every record write is check-and-set, so mounts with
// cas_required work; a negative cas is failure.ErrInvalid.
//
// When the answer is lost (the connection broke, a timeout, a 5xx), the
// record is read back: if it holds exactly v at version cas+1, the write
// landed and its version is returned.
//
// The record is marshalled once and sent as it is, in a KV v2 write body
// {"options": {"cas": N}, "data": <record>}: a rotation's record grows
// with its integrations and is written while they are updated, and
// decoding it into a map to have the client encode it again doubled the
// time and CPU each write took.
func (s *Store) PutRecord(ctx context.Context, rel string, v any, cas int) (int, error) {
	p := s.RecordPath(rel)
	b, err := json.Marshal(v)
	if err != nil {
		return 0, err
	}
	return s.put(ctx, p, b, cas)
}

func (s *Store) put(ctx context.Context, p string, b []byte, cas int) (int, error) {
	where := fmt.Sprintf("vault: write record %s/%s", s.mount, p)
	if cas < 0 {
		return 0, fmt.Errorf("%s: check-and-set version %d: %w", where, cas, failure.ErrInvalid)
	}
	if len(b) == 0 || b[0] != '{' {
		return 0, fmt.Errorf("%s: a record must be a JSON object", where)
	}
	if len(b) > MaxEntry {
		return 0, fmt.Errorf("%s: %d bytes, more than the %d one entry may hold: %w", where, len(b), MaxEntry, failure.ErrInvalid)
	}
	for n := int64(len(b)); ; {
		cur := s.largest.Load()
		if n <= cur || s.largest.CompareAndSwap(cur, n) {
			break
		}
	}
	body := make([]byte, 0, len(b)+40)
	body = append(body, `{"options":{"cas":`...)
	body = strconv.AppendInt(body, int64(cas), 10)
	body = append(body, `},"data":`...)
	body = append(body, b...)
	body = append(body, '}')
	sec, err := s.c.Logical().WriteBytesWithContext(ctx, s.mount+"/data/"+p, body)
	if err != nil {
		werr := classify(ctx, where, err)
		if !answerLost(err) {
			return 0, werr
		}
		// The write may have landed even though we did not hear so.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		landed, version, rerr := s.holds(rctx, p, b, cas+1)
		s.mu.Lock()
		defer s.mu.Unlock()
		st := s.seen(p)
		switch {
		case rerr != nil:
			st.lost, st.lostVersion = canonical(b), cas+1
			return 0, werr
		case landed:
			st.version, st.lost = version, nil
			return version, nil
		}
		return 0, werr
	}
	if sec == nil || sec.Data == nil {
		return 0, fmt.Errorf("%s: no version in Vault's answer", where)
	}
	n, ok := sec.Data["version"].(json.Number)
	if !ok {
		return 0, fmt.Errorf("%s: no version in Vault's answer", where)
	}
	version, err := n.Int64()
	if err != nil {
		return 0, fmt.Errorf("%s: version %q in Vault's answer: %w", where, n, err)
	}
	s.mu.Lock()
	s.seen(p).version, s.seen(p).lost = int(version), nil
	s.mu.Unlock()
	return int(version), nil
}

// answerLost reports whether a failed write may have been carried out:
// anything but an answer from Vault that refused it.
func answerLost(err error) bool {
	var re *vault.ResponseError
	if errors.As(err, &re) {
		return re.StatusCode >= 500
	}
	return true
}

// holds reports whether the record at p holds exactly b at version want,
// and the version it is at.
func (s *Store) holds(ctx context.Context, p string, b []byte, want int) (bool, int, error) {
	data, version, err := s.getRaw(ctx, p)
	if errors.Is(err, failure.ErrNotFound) {
		return false, version, nil
	}
	if err != nil {
		return false, 0, err
	}
	got, err := json.Marshal(data)
	if err != nil {
		return false, 0, err
	}
	return version == want && bytes.Equal(got, canonical(b)), version, nil
}

// canonical is a JSON object re-encoded as Vault's answer is: decoded
// with numbers kept as written, then encoded with keys sorted.
func canonical(b []byte) []byte {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return b
	}
	out, err := json.Marshal(v)
	if err != nil {
		return b
	}
	return out
}

// saveRecordBytes writes the record b (JSON) at rel with check-and-set on
// the version this store last wrote or read there (0: creates it). A
// write of this store whose answer was lost is first looked for: if it
// landed, its version counts. With overwrite, a record found in the way
// is read and written over (journal parts, which only the rotation lock's
// holder writes); otherwise it is failure.ErrConflict.
func (s *Store) saveRecordBytes(ctx context.Context, rel string, b []byte, overwrite bool) error {
	p := s.RecordPath(rel)
	s.mu.Lock()
	st := *s.seen(p)
	s.mu.Unlock()
	cas := st.version
	if st.lost != nil {
		data, version, err := s.getRaw(ctx, p)
		if err != nil && !errors.Is(err, failure.ErrNotFound) {
			return err
		}
		if got, _ := json.Marshal(data); err == nil && version == st.lostVersion && bytes.Equal(got, st.lost) {
			cas = version // our lost write landed
		}
	}
	_, err := s.put(ctx, p, b, cas)
	if errors.Is(err, failure.ErrConflict) && overwrite {
		data, version, rerr := s.getRaw(ctx, p)
		if rerr != nil && !errors.Is(rerr, failure.ErrNotFound) {
			return rerr
		}
		if got, _ := json.Marshal(data); rerr == nil && bytes.Equal(got, canonical(b)) {
			s.mu.Lock()
			s.seen(p).version, s.seen(p).lost = version, nil
			s.mu.Unlock()
			return nil
		}
		_, err = s.put(ctx, p, b, version)
	}
	return err
}

// ListRecords lists the records directly under rel (sub-folders left
// out). A folder with no records gives none and no error.
func (s *Store) ListRecords(ctx context.Context, rel string) ([]string, error) {
	p := s.mount + "/metadata/" + s.RecordPath(rel)
	sec, err := s.c.Logical().ListWithContext(ctx, p)
	if err != nil {
		return nil, classify(ctx, "vault: list "+p, err)
	}
	if sec == nil || sec.Data == nil {
		return nil, nil
	}
	keys, _ := sec.Data["keys"].([]any)
	var out []string
	for _, k := range keys {
		if name, ok := k.(string); ok && !strings.HasSuffix(name, "/") {
			out = append(out, name)
		}
	}
	return out, nil
}

// Classify turns an error from the Vault client into a classified one
// prefixed with where: package vaulterr, rekey's one Vault classifier.
func Classify(where string, err error) error {
	return vaulterr.Classify(context.Background(), where, err)
}

func classify(ctx context.Context, where string, err error) error {
	return vaulterr.Classify(ctx, where, err)
}
