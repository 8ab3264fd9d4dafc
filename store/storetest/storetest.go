// Package storetest is the conformance suite of rekey's storage contract
// (package store), in the manner of restic's backend tests and go-cloud's
// drivertest: every store (vaultstore on a real Vault, memstore in
// memory) passes it, so that what the engine's logic tests show against
// one holds against the other.
//
//	func TestConformance(t *testing.T) { storetest.Run(t, func(t storetest.T) storetest.Backend { ... }) }
//
// The checks, each a subtest:
//
//   - keys: versions are numbered from 1; a write with a check-and-set
//     version that is not the current one is failure.ErrConflict and
//     stores nothing (also from another handle); retained versions read
//     back in order; custom metadata is merged and cut to 512 bytes;
//     nothing there is failure.ErrNotFound.
//   - cas: every record write is check-and-set: a write based on a
//     version another writer has since replaced is failure.ErrConflict
//     and leaves that writer's record as it is (rotations, audits, what
//     serve said, the serve lease).
//   - records: each kind of record reads back exactly as written.
//   - lease: a held lock is refused to another holder, with its holder
//     named; renewing keeps it held past its first expiry; once it
//     expires another holder takes it over, after which the first cannot
//     renew it or release it; a released lock is free at once; a lock
//     whose holder is a dead process of this host, boot and PID namespace
//     is taken over at once, one whose PID is gone from here but of
//     another boot or PID namespace is not; a lock taken says where its
//     holder's PID lives; of several callers racing for a free lock, one
//     gets it.
//   - large: a rotation of one key across 10,000 integrations (30,000
//     journal lines, a leak's 10,000 timeline marks, some long reasons),
//     written as a rotation writes it (the plan, progress, the outcome),
//     an audit of 10,000 integrations and what serve said of them all
//     read back whole from another handle; a Backend that measures its
//     entries keeps each under MaxEntry.
//   - concurrent: writers on their own handles updating one key's state
//     and history at once lose no update.
//   - prove: the store lists every write of a rotation and, with
//     credentials that may do everything, lacks nothing.
//   - wrap (a store.Wrapper only): a wrapped value can be looked up, by
//     its code and by its accessor, opens once, and is then gone, from
//     both; a store.HandoffRecords keeps one salt and creates a code's
//     record once.
//
// Run takes a T, the part of *testing.T it uses, so that a test of the
// suite can pass a recorder and see it fail for a deliberately broken
// store.
package storetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/records"
	"github.com/rekey-dev/rekey/secret"
	"github.com/rekey-dev/rekey/state"
	"github.com/rekey-dev/rekey/store"
)

// MaxEntry is the largest single entry a store that measures its entries
// may write: a quarter of Vault's integrated storage limit (1 MiB) and
// half of Consul's (512 KiB).
const MaxEntry = 256 << 10

// T is the part of *testing.T the suite uses. Fatalf must stop the
// calling goroutine (runtime.Goexit), as testing.T's does.
type T interface {
	Helper()
	Logf(format string, args ...any)
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
}

// Backend is one fresh, empty store under test.
type Backend struct {
	// Open returns a handle on the store; each call another one, as
	// another process would have, sharing the data and nothing else.
	Open func() store.Store
	// Largest, if set, says how many bytes the largest single entry
	// written so far held; the suite checks it stays under MaxEntry.
	Largest func() int
}

// Factory makes a fresh Backend for each check.
type Factory func(t T) Backend

// checks are the suite's checks, in the order Run runs them.
var checks = []struct {
	name string
	f    func(T, Backend)
}{
	{"keys", checkKeys},
	{"cas", checkCAS},
	{"records", checkRecords},
	{"lease", checkLease},
	{"large", checkLarge},
	{"concurrent", checkConcurrent},
	{"prove", checkProve},
	{"wrap", checkWrap},
}

// Run runs every check against the stores f makes.
func Run(t T, f Factory) {
	t.Helper()
	run(t, f, nil)
}

// run runs the checks named (all when none are) against the stores f makes.
func run(t T, f Factory, only []string) {
	for _, c := range checks {
		if len(only) > 0 && !slices.Contains(only, c.name) {
			continue
		}
		sub(t, c.name, func(t T) { c.f(t, f(t)) })
	}
}

func sub(t T, name string, f func(T)) {
	switch r := t.(type) {
	case *testing.T:
		r.Run(name, func(t *testing.T) { f(t) })
	case interface{ Run(string, func(T)) bool }:
		r.Run(name, f)
	default:
		f(t)
	}
}

func randKey() secret.Key {
	b := make([]byte, 16)
	rand.Read(b)
	return secret.New("k-" + hex.EncodeToString(b))
}

func randID(prefix string) string {
	b := make([]byte, 4)
	rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// now is a time as a store gives it back: UTC, no monotonic reading,
// whole microseconds.
func now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

// sameJSON fails t when got and want do not encode alike.
func sameJSON(t T, what string, got, want any) {
	t.Helper()
	if reflect.DeepEqual(got, want) {
		return // the same values: they encode alike (and comparing is cheaper)
	}
	g, err1 := json.Marshal(got)
	w, err2 := json.Marshal(want)
	if err1 != nil || err2 != nil {
		t.Fatalf("%s: encode: %v %v", what, err1, err2)
	}
	if !bytes.Equal(g, w) {
		t.Fatalf("%s read back differently:\n got  %s\n want %s", what, clip(g), clip(w))
	}
}

func clip(b []byte) string {
	if len(b) > 400 {
		return string(b[:400]) + fmt.Sprintf("… (%d bytes)", len(b))
	}
	return string(b)
}

func checkKeys(t T, b Backend) {
	ctx := context.Background()
	s, other := b.Open(), b.Open()
	p := randID("an/main-")
	if _, err := s.ReadKey(ctx, p); !errors.Is(err, failure.ErrNotFound) {
		t.Fatalf("ReadKey of a path never written: %v, want failure.ErrNotFound", err)
	}
	if _, _, err := s.Versions(ctx, p); !errors.Is(err, failure.ErrNotFound) {
		t.Fatalf("Versions of a path never written: %v, want failure.ErrNotFound", err)
	}
	k1, k2, k3 := randKey(), randKey(), randKey()
	v, err := s.WriteKey(ctx, p, k1, 0, nil)
	if err != nil || v != 1 {
		t.Fatalf("WriteKey of the first version: %d, %v; want version 1", v, err)
	}
	if v, err := s.WriteKey(ctx, p, k2, 0, nil); !errors.Is(err, failure.ErrConflict) {
		t.Fatalf("WriteKey with check-and-set 0 on a path at version 1: %d, %v; want failure.ErrConflict", v, err)
	}
	if v, err := other.WriteKey(ctx, p, k2, 5, nil); !errors.Is(err, failure.ErrConflict) {
		t.Fatalf("WriteKey with check-and-set 5 on a path at version 1: %d, %v; want failure.ErrConflict", v, err)
	}
	if cur, err := s.ReadKey(ctx, p); err != nil || cur.Version != 1 || !cur.Key.Equal(k1) {
		t.Fatalf("after refused writes: version %d holding %s (%v), want version 1 holding %s", cur.Version, cur.Fingerprint(), err, k1.Fingerprint())
	}
	long := strings.Repeat("é", 400) // 800 bytes
	v, err = other.WriteKey(ctx, p, k2, 1, map[string]string{"managed-by": "rekey", "fingerprint": k2.Fingerprint(), "integrations": long})
	if err != nil || v != 2 {
		t.Fatalf("WriteKey of version 2 with metadata: %d, %v", v, err)
	}
	if err := s.PatchMetadata(ctx, p, map[string]string{"reason": "leak"}); err != nil {
		t.Fatalf("PatchMetadata: %v", err)
	}
	cur, err := s.ReadKey(ctx, p)
	if err != nil || cur.Version != 2 || !cur.Key.Equal(k2) {
		t.Fatalf("ReadKey: version %d holding %s (%v), want version 2 holding %s", cur.Version, cur.Fingerprint(), err, k2.Fingerprint())
	}
	md := cur.Metadata
	if md["managed-by"] != "rekey" || md["fingerprint"] != k2.Fingerprint() || md["reason"] != "leak" {
		t.Fatalf("metadata = %v, want managed-by, fingerprint and reason merged", md)
	}
	if n := len(md["integrations"]); n > store.MaxMetadataValue || n < store.MaxMetadataValue-8 || !strings.HasSuffix(md["integrations"], "…") {
		t.Fatalf("an 800-byte metadata value was kept as %d bytes, want it cut to at most %d with a mark", n, store.MaxMetadataValue)
	}
	if _, err := s.WriteKey(ctx, p, k3, 2, nil); err != nil {
		t.Fatalf("%v", err)
	}
	vs, current, err := other.Versions(ctx, p)
	if err != nil || current != 3 || len(vs) != 3 {
		t.Fatalf("Versions: %d versions, current %d, %v; want 3, 3", len(vs), current, err)
	}
	for i, k := range []secret.Key{k1, k2, k3} {
		if vs[i].Version != i+1 || !vs[i].Key.Equal(k) || vs[i].Created.IsZero() {
			t.Fatalf("version %d read back as version %d holding %s created %v", i+1, vs[i].Version, vs[i].Fingerprint(), vs[i].Created)
		}
	}
	if !strings.Contains(s.Location(p), p) {
		t.Errorf("Location(%q) = %q, which does not name it", p, s.Location(p))
	}
	if err := s.PatchMetadata(ctx, randID("nowhere-"), map[string]string{"a": "b"}); !errors.Is(err, failure.ErrNotFound) {
		t.Errorf("PatchMetadata of a key that does not exist: %v, want failure.ErrNotFound", err)
	}
}

func checkCAS(t T, b Backend) {
	ctx := context.Background()
	a, other := b.Open(), b.Open()

	// What serve said.
	_, v0, err := a.Said(ctx)
	if !errors.Is(err, failure.ErrNotFound) {
		t.Fatalf("Said of a fresh store: %v, want failure.ErrNotFound", err)
	}
	mine := &records.Said{By: "one", LastRound: now()}
	v1, err := a.SaveSaid(ctx, mine, v0)
	if err != nil {
		t.Fatalf("SaveSaid creating it: %v", err)
	}
	if _, err := other.SaveSaid(ctx, &records.Said{By: "two"}, v0); !errors.Is(err, failure.ErrConflict) {
		t.Fatalf("SaveSaid on a version another instance replaced: %v, want failure.ErrConflict", err)
	}
	if got, v, err := other.Said(ctx); err != nil || v != v1 || got.By != "one" {
		t.Fatalf("Said after a refused write: %+v at version %d (%v), want the first instance's at %d", got, v, err, v1)
	}
	if _, err := other.SaveSaid(ctx, &records.Said{By: "two"}, v1); err != nil {
		t.Fatalf("SaveSaid on the version read: %v", err)
	}

	// The serve lease.
	_, l0, err := a.ServeLease(ctx)
	if !errors.Is(err, failure.ErrNotFound) {
		t.Fatalf("ServeLease of a fresh store: %v, want failure.ErrNotFound", err)
	}
	l1, err := a.PutServeLease(ctx, records.ServeLease{Held: true, Holder: "one"}, l0)
	if err != nil {
		t.Fatalf("PutServeLease creating it: %v", err)
	}
	if _, err := other.PutServeLease(ctx, records.ServeLease{Held: true, Holder: "two"}, l0); !errors.Is(err, failure.ErrConflict) {
		t.Fatalf("PutServeLease on a version another instance replaced: %v, want failure.ErrConflict", err)
	}
	if got, v, err := other.ServeLease(ctx); err != nil || v != l1 || got.Holder != "one" {
		t.Fatalf("ServeLease after a refused write: %+v at %d (%v)", got, v, err)
	}

	// Audits.
	key := randID("key-")
	_, a0, err := a.LastAudit(ctx, key)
	if !errors.Is(err, failure.ErrNotFound) {
		t.Fatalf("LastAudit of a key never audited: %v, want failure.ErrNotFound", err)
	}
	first := &records.Audit{At: now(), Integrations: map[string]state.Status{"site": {State: state.Current, Proof: state.Exact}}}
	if _, err := a.SaveAudit(ctx, key, first, a0); err != nil {
		t.Fatalf("SaveAudit creating it: %v", err)
	}
	if _, err := other.SaveAudit(ctx, key, &records.Audit{At: now()}, a0); !errors.Is(err, failure.ErrConflict) {
		t.Fatalf("SaveAudit on a version another audit replaced: %v, want failure.ErrConflict", err)
	}
	if got, _, err := other.LastAudit(ctx, key); err != nil || got.Integrations["site"].State != state.Current {
		t.Fatalf("LastAudit after a refused write: %+v (%v)", got, err)
	}

	// A rotation's record: another process that took the lock over writes
	// it; the first one's next write is refused and changes nothing.
	rec := &records.Rotation{ID: randID("r-"), KeyID: key, Reason: "manual", Started: now(), Phase: records.PhasePlanned,
		Integrations: map[string]*records.Integration{"site": {ID: "site", Type: "file", State: state.Waiting}}}
	if err := a.SaveRotation(ctx, rec); err != nil {
		t.Fatalf("SaveRotation creating it: %v", err)
	}
	rec.Phase = records.PhaseStored
	if err := a.SaveRotation(ctx, rec); err != nil {
		t.Fatalf("SaveRotation updating it: %v", err)
	}
	theirs, err := other.Rotation(ctx, key, rec.ID)
	if err != nil || theirs.Phase != records.PhaseStored {
		t.Fatalf("Rotation from another handle: %+v, %v", theirs, err)
	}
	theirs.Phase, theirs.Error = records.PhaseDone, "finished by the other process"
	if err := other.SaveRotation(ctx, theirs); err != nil {
		t.Fatalf("SaveRotation by the other handle, on the version it read: %v", err)
	}
	rec.Phase = records.PhaseAborted
	if err := a.SaveRotation(ctx, rec); !errors.Is(err, failure.ErrConflict) {
		t.Fatalf("SaveRotation of a record another process wrote since: %v, want failure.ErrConflict", err)
	}
	if got, err := b.Open().Rotation(ctx, key, rec.ID); err != nil || got.Phase != records.PhaseDone {
		t.Fatalf("after a refused SaveRotation: %+v, %v; want the other process's record", got, err)
	}
	// A brand-new handle that never read it may not write it blindly either.
	if err := b.Open().SaveRotation(ctx, rec); !errors.Is(err, failure.ErrConflict) {
		t.Fatalf("SaveRotation over a record this handle never read: %v, want failure.ErrConflict", err)
	}
}

// sample is a rotation with every field set.
func sample(keyID string, n int) *records.Rotation {
	t0 := now().Add(-time.Hour)
	r := &records.Rotation{
		ID: randID("20260101T000000Z-"), KeyID: keyID, Reason: "leak", Operator: "ops@host",
		Started: t0, Stored: t0.Add(time.Second), Finished: t0.Add(time.Minute), Phase: records.PhaseDone,
		OldVersion: 3, OldFingerprint: "sha256:aaaaaaaaaaaa", NewVersion: 4, NewFingerprint: "sha256:bbbbbbbbbbbb",
		Integrations: map[string]*records.Integration{},
		Thread:       &records.Thread{Channel: "C0OPS", TS: "1700000000.000100"},
		Timeline:     []records.Mark{{At: t0, What: "leak declared"}},
	}
	for i := range n {
		id := fmt.Sprintf("integration-%05d", i)
		in := &records.Integration{ID: id, Type: "http", State: state.Current, Proof: state.Probe, Attempts: 1 + i%3,
			Written: state.Written{Fingerprint: r.NewFingerprint, At: t0.Add(time.Duration(i) * time.Millisecond)},
			Updated: t0.Add(time.Duration(i) * time.Millisecond), Reason: "verify probe passed"}
		switch i % 50 {
		case 7:
			in.State, in.Proof, in.Reason = state.Failing, "", "http: apply: POST https://example.org/settings/"+id+": status 500 "+strings.Repeat("ü", 600)
		case 11:
			in.Type, in.State, in.Proof = "manual", state.Current, state.Person
			in.Confirmed, in.ConfirmedBy, in.Note = state.Written{Fingerprint: r.NewFingerprint, At: t0}, "ops@host", "pasted <in> the \"settings\" & saved"
		}
		r.Integrations[id] = in
		for _, to := range []state.State{state.Applying, state.Verifying, in.State} {
			r.Journal = append(r.Journal, records.Transition{At: in.Updated, Integration: id, From: state.Waiting, To: to, Fingerprint: r.NewFingerprint, Reason: in.Reason})
		}
		r.Timeline = append(r.Timeline, records.Mark{At: in.Updated, What: id + " current"})
	}
	return r
}

func checkRecords(t T, b Backend) {
	ctx := context.Background()
	s := b.Open()
	key := randID("key-")
	if _, err := s.Rotation(ctx, key, "20260101T000000Z-000000"); !errors.Is(err, failure.ErrNotFound) {
		t.Fatalf("Rotation never written: %v, want failure.ErrNotFound", err)
	}
	if _, err := s.LatestRotation(ctx, key); !errors.Is(err, failure.ErrNotFound) {
		t.Fatalf("LatestRotation of a key never rotated: %v, want failure.ErrNotFound", err)
	}
	if ids, err := s.Rotations(ctx, key); err != nil || len(ids) != 0 {
		t.Fatalf("Rotations of a key never rotated: %v, %v", ids, err)
	}
	r := sample(key, 60)
	if err := s.SaveRotation(ctx, r); err != nil {
		t.Fatalf("SaveRotation: %v", err)
	}
	if err := s.UpdateKeyState(ctx, key, func(st *records.KeyState) {
		st.LatestRotation = r.ID
		st.Compromised = map[int]records.CompromisedVersion{3: {Fingerprint: r.OldFingerprint, At: r.Stored, RotationID: r.ID}}
	}); err != nil {
		t.Fatalf("UpdateKeyState: %v", err)
	}
	reader := b.Open()
	got, err := reader.LatestRotation(ctx, key)
	if err != nil {
		t.Fatalf("LatestRotation: %v", err)
	}
	sameJSON(t, "the rotation", got, r)
	if ids, err := reader.Rotations(ctx, key); err != nil || !slices.Equal(ids, []string{r.ID}) {
		t.Fatalf("Rotations = %v, %v; want [%s]", ids, err, r.ID)
	}
	st, _, err := reader.KeyState(ctx, key)
	if err != nil || st.LatestRotation != r.ID || st.Compromised[3].Fingerprint != r.OldFingerprint {
		t.Fatalf("KeyState = %+v, %v", st, err)
	}
	if st, v, err := reader.KeyState(ctx, randID("fresh-")); err != nil || st == nil || st.LatestRotation != "" || v != 0 {
		t.Fatalf("KeyState of a key with none: %+v at %d, %v; want an empty state at 0", st, v, err)
	}

	if _, _, err := reader.History(ctx, key); !errors.Is(err, failure.ErrNotFound) {
		t.Fatalf("History of a key with none: %v, want failure.ErrNotFound", err)
	}
	k1, k2 := randKey(), randKey()
	h, err := s.UpdateHistory(ctx, key, func(h *records.History) (bool, error) {
		if _, err := h.Add(1, k1, r.Started, records.StandingCompromised, r.Stored, r.ID); err != nil {
			return false, err
		}
		return h.Add(2, k2, r.Stored, records.StandingCurrent, r.Stored, r.ID)
	})
	if err != nil || len(h.Versions) != 2 {
		t.Fatalf("UpdateHistory: %+v, %v", h, err)
	}
	if h2, err := s.UpdateHistory(ctx, key, func(*records.History) (bool, error) { return false, nil }); err != nil || h2.Salt != h.Salt {
		t.Fatalf("UpdateHistory changing nothing: %+v, %v", h2, err)
	}
	hb, _, err := reader.History(ctx, key)
	if err != nil {
		t.Fatalf("History: %v", err)
	}
	sameJSON(t, "the history", hb, h)
	if v, ok := hb.Find(k1); !ok || v.Standing != records.StandingCompromised {
		t.Fatalf("the history read back does not find version 1 by its key: %+v %v", v, ok)
	}
	if _, err := s.UpdateHistory(ctx, key, func(*records.History) (bool, error) { return false, errors.New("boom") }); err == nil || err.Error() != "boom" {
		t.Fatalf("UpdateHistory whose change fails: %v, want the change's error", err)
	}

	audit := &records.Audit{At: now(), Duration: 1500 * time.Millisecond, Integrations: map[string]state.Status{
		"site": {State: state.Current, Reason: "holds the current version", Fingerprint: "sha256:bbbbbbbbbbbb", Proof: state.Exact},
		"ci":   {State: state.Unknown, Reason: "github: status 502", Proof: state.NoProof},
	}}
	_, v, _ := s.LastAudit(ctx, key)
	if _, err := s.SaveAudit(ctx, key, audit, v); err != nil {
		t.Fatalf("SaveAudit: %v", err)
	}
	ga, _, err := reader.LastAudit(ctx, key)
	if err != nil {
		t.Fatalf("LastAudit: %v", err)
	}
	sameJSON(t, "the audit", ga, audit)

	said := &records.Said{LastRound: now(), By: "host:42:abcdef", Keys: map[string]*records.KeySaid{
		key: {Version: 4, Reminded: []string{"14d", "7d"}, OverdueSent: 2, Integrations: map[string]records.IntegrationSaid{"site": {Alerted: state.Current, Seen: state.Unknown}}},
	}}
	_, v, _ = s.Said(ctx)
	if _, err := s.SaveSaid(ctx, said, v); err != nil {
		t.Fatalf("SaveSaid: %v", err)
	}
	gs, _, err := reader.Said(ctx)
	if err != nil {
		t.Fatalf("Said: %v", err)
	}
	sameJSON(t, "what serve said", gs, said)

	lease := records.ServeLease{Held: true, Holder: "host:42:abcdef", Host: "host", PID: 42, Acquired: now(), Renewed: now(), Expires: now().Add(time.Minute), TTL: "1m0s"}
	_, v, _ = s.ServeLease(ctx)
	if _, err := s.PutServeLease(ctx, lease, v); err != nil {
		t.Fatalf("PutServeLease: %v", err)
	}
	gl, _, err := reader.ServeLease(ctx)
	if err != nil {
		t.Fatalf("ServeLease: %v", err)
	}
	sameJSON(t, "the serve lease", gl, lease)
}

// deadPID is the PID of a process of this host that has exited.
func deadPID(t T) int {
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatalf("run true: %v", err)
	}
	return cmd.Process.Pid
}

func checkLease(t T, b Backend) {
	ctx := context.Background()
	a, other := b.Open(), b.Open()
	key := randID("key-")
	const ttl = time.Second
	elsewhere := records.Lock{User: "ana", Host: "elsewhere.example", PID: 4242, Command: "rotate " + key}
	mine := records.Lock{User: "bo", Host: "here.example", PID: 4343, Command: "rotate " + key}

	first, err := a.Lock(ctx, key, elsewhere, ttl)
	if err != nil {
		t.Fatalf("Lock of a free key: %v", err)
	}
	if h := first.Holder(); !h.Held || h.User != "ana" || h.Expires.Before(h.Since) {
		t.Fatalf("Holder() = %+v", h)
	}
	if h, me := first.Holder(), store.Identity(); h.BootID != me.BootID || h.PIDNamespace != me.PIDNamespace {
		t.Fatalf("Holder() = %+v, which does not say where its PID lives (boot %q, PID namespace %q)", h, me.BootID, me.PIDNamespace)
	}
	_, err = other.Lock(ctx, key, mine, ttl)
	var locked *store.LockedError
	if !errors.As(err, &locked) || locked.Holder.User != "ana" || locked.Holder.Host != "elsewhere.example" {
		t.Fatalf("Lock of a held key: %v, want a *store.LockedError naming ana@elsewhere.example", err)
	}
	if l, err := other.ReadLock(ctx, key); err != nil || !l.Held || l.User != "ana" {
		t.Fatalf("ReadLock of a held key: %+v, %v", l, err)
	}

	// Renewed before it expires, it stays held past its first expiry.
	time.Sleep(ttl * 6 / 10)
	if err := first.Renew(ctx); err != nil {
		t.Fatalf("Renew of a held lease: %v", err)
	}
	time.Sleep(ttl * 6 / 10)
	if _, err := other.Lock(ctx, key, mine, ttl); !errors.As(err, &locked) {
		t.Fatalf("Lock of a lease renewed %s ago: %v, want a *store.LockedError", ttl*6/10, err)
	}

	// Not renewed, it expires and another holder takes it over.
	time.Sleep(ttl * 6 / 10)
	second, err := other.Lock(ctx, key, mine, ttl)
	if err != nil {
		t.Fatalf("Lock of an expired lease: %v, want it taken over", err)
	}
	if err := first.Renew(ctx); !errors.As(err, &locked) {
		t.Fatalf("Renew of a lease taken over: %v, want a *store.LockedError", err)
	}
	if err := first.Release(ctx); err != nil {
		t.Fatalf("Release of a lease taken over: %v, want nil", err)
	}
	if l, err := a.ReadLock(ctx, key); err != nil || !l.Held || l.User != "bo" {
		t.Fatalf("after the first holder released a lock taken over: %+v, %v; want bo's lock held", l, err)
	}
	if err := second.Renew(ctx); err != nil {
		t.Fatalf("Renew by the new holder: %v", err)
	}
	if err := second.Release(ctx); err != nil {
		t.Fatalf("Release: %v", err)
	}
	third, err := a.Lock(ctx, key, elsewhere, ttl)
	if err != nil {
		t.Fatalf("Lock of a released lock: %v", err)
	}
	third.Release(ctx)

	// A dead process of this host, boot and PID namespace holds it: taken over at once.
	host, _ := os.Hostname()
	dead := store.WithIdentity(records.Lock{User: "cy", Host: host, PID: deadPID(t), Command: "rotate " + key})
	if _, err := a.Lock(ctx, key, dead, time.Hour); err != nil {
		t.Fatalf("%v", err)
	}
	if _, err := other.Lock(ctx, key, mine, ttl); err != nil {
		t.Fatalf("Lock held by a dead process of this host: %v, want it taken over", err)
	}

	// A PID gone from here, of another PID namespace or boot, may be a
	// live process elsewhere (a container with this host's name): its
	// lease is waited for.
	me := store.Identity()
	for where, ghost := range map[string]records.Lock{
		"another PID namespace": {BootID: me.BootID, PIDNamespace: "pid:[1]"},
		"another boot":          {BootID: "00000000-0000-0000-0000-000000000000", PIDNamespace: me.PIDNamespace},
	} {
		k := randID("key-")
		ghost.User, ghost.Host, ghost.PID = "ghost", host, deadPID(t)
		if _, err := a.Lock(ctx, k, ghost, time.Hour); err != nil {
			t.Fatalf("%v", err)
		}
		if _, err := other.Lock(ctx, k, mine, ttl); !errors.As(err, &locked) || locked.Holder.User != "ghost" {
			t.Fatalf("Lock held by a PID gone from here but of %s: %v, want a *store.LockedError naming its holder", where, err)
		}
	}

	// Racing for a free lock: one gets it.
	race := randID("race-")
	var wg sync.WaitGroup
	var mu sync.Mutex
	won, refused := 0, 0
	for i := range 8 {
		s := b.Open()
		wg.Go(func() {
			h := records.Lock{User: fmt.Sprintf("u%d", i), Host: "elsewhere.example", PID: 5000 + i}
			_, err := s.Lock(ctx, race, h, time.Minute)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				won++
			case errors.As(err, new(*store.LockedError)):
				refused++
			default:
				t.Errorf("Lock while racing: %v", err)
			}
		})
	}
	wg.Wait()
	if won != 1 || refused != 7 {
		t.Fatalf("8 callers raced for a free lock: %d got it, %d were refused; want 1 and 7", won, refused)
	}
}

func checkLarge(t T, b Backend) {
	ctx := context.Background()
	s := b.Open()
	key := randID("key-")
	const n = 10000
	full := sample(key, n)

	// As a rotation writes it: the plan, progress while integrations
	// update, the outcome.
	plan := *full
	plan.Phase, plan.Stored, plan.Finished, plan.NewVersion = records.PhasePlanned, time.Time{}, time.Time{}, 0
	plan.Journal, plan.Timeline = nil, full.Timeline[:1]
	plan.Integrations = map[string]*records.Integration{}
	for id, in := range full.Integrations {
		plan.Integrations[id] = &records.Integration{ID: id, Type: in.Type, State: state.Waiting, Updated: full.Started}
	}
	if err := s.SaveRotation(ctx, &plan); err != nil {
		t.Fatalf("SaveRotation of a plan for %d integrations: %v", n, err)
	}
	progress := plan
	progress.Phase, progress.Stored, progress.NewVersion = records.PhaseStored, full.Stored, full.NewVersion
	progress.Integrations = map[string]*records.Integration{}
	for id, in := range plan.Integrations {
		progress.Integrations[id] = in
	}
	// Half way: half the journal and the timeline, then the whole.
	upto := len(full.Journal) / 2
	progress.Journal = full.Journal[:upto]
	progress.Timeline = full.Timeline[:len(full.Timeline)/2]
	for _, tr := range progress.Journal[len(progress.Journal)-min(upto, 3000):] {
		c := *full.Integrations[tr.Integration]
		c.State = tr.To
		progress.Integrations[tr.Integration] = &c
	}
	if err := s.SaveRotation(ctx, &progress); err != nil {
		t.Fatalf("SaveRotation half way: %v", err)
	}
	if err := s.SaveRotation(ctx, full); err != nil {
		t.Fatalf("SaveRotation of the outcome of %d integrations: %v", n, err)
	}
	if err := s.UpdateKeyState(ctx, key, func(st *records.KeyState) { st.LatestRotation = full.ID }); err != nil {
		t.Fatalf("%v", err)
	}
	got, err := b.Open().LatestRotation(ctx, key)
	if err != nil {
		t.Fatalf("LatestRotation of %d integrations: %v", n, err)
	}
	if len(got.Integrations) != n || len(got.Journal) != 3*n || len(got.Timeline) != n+1 {
		t.Fatalf("read back %d integrations, %d journal lines, %d marks; want %d, %d, %d", len(got.Integrations), len(got.Journal), len(got.Timeline), n, 3*n, n+1)
	}
	sameJSON(t, fmt.Sprintf("a rotation of %d integrations", n), got, full)

	// Resumed: written again from what was read (another process).
	resumer := b.Open()
	again, err := resumer.Rotation(ctx, key, full.ID)
	if err != nil {
		t.Fatalf("%v", err)
	}
	again.Integrations["integration-00007"].State = state.Current
	again.Journal = append(again.Journal, records.Transition{At: now(), Integration: "integration-00007", From: state.Failing, To: state.Current})
	if err := resumer.SaveRotation(ctx, again); err != nil {
		t.Fatalf("SaveRotation of a resumed rotation of %d integrations: %v", n, err)
	}
	back, err := b.Open().Rotation(ctx, key, full.ID)
	if err != nil {
		t.Fatalf("%v", err)
	}
	if len(back.Integrations) != n || len(back.Journal) != 3*n+1 || back.Integrations["integration-00007"].State != state.Current ||
		back.Journal[3*n].Integration != "integration-00007" || back.Integrations["integration-00011"].Note != full.Integrations["integration-00011"].Note {
		t.Fatalf("a resumed rotation of %d integrations read back with %d integrations and %d journal lines, integration-00007 %s",
			n, len(back.Integrations), len(back.Journal), back.Integrations["integration-00007"].State)
	}

	audit := &records.Audit{At: now(), Duration: time.Second, Integrations: map[string]state.Status{}}
	said := &records.Said{LastRound: now(), By: "one", Keys: map[string]*records.KeySaid{key: {Version: 4, Integrations: map[string]records.IntegrationSaid{}}}}
	for id, in := range full.Integrations {
		audit.Integrations[id] = state.Status{State: in.State, Reason: in.Reason, Fingerprint: full.NewFingerprint, Proof: in.Proof}
		said.Keys[key].Integrations[id] = records.IntegrationSaid{Alerted: in.State, Seen: in.State}
	}
	_, v, _ := s.LastAudit(ctx, key)
	if _, err := s.SaveAudit(ctx, key, audit, v); err != nil {
		t.Fatalf("SaveAudit of %d integrations: %v", n, err)
	}
	ga, _, err := b.Open().LastAudit(ctx, key)
	if err != nil {
		t.Fatalf("LastAudit of %d integrations: %v", n, err)
	}
	sameJSON(t, fmt.Sprintf("an audit of %d integrations", n), ga, audit)
	_, v, _ = s.Said(ctx)
	if _, err := s.SaveSaid(ctx, said, v); err != nil {
		t.Fatalf("SaveSaid of %d integrations: %v", n, err)
	}
	gs, _, err := b.Open().Said(ctx)
	if err != nil {
		t.Fatalf("Said of %d integrations: %v", n, err)
	}
	sameJSON(t, fmt.Sprintf("what serve said of %d integrations", n), gs, said)

	if b.Largest != nil {
		if l := b.Largest(); l > MaxEntry {
			t.Fatalf("the largest entry written holds %d bytes, over %d", l, MaxEntry)
		} else {
			t.Logf("the largest entry written holds %d bytes", l)
		}
	}
}

func checkConcurrent(t T, b Backend) {
	ctx := context.Background()
	key := randID("key-")
	const writers = 12
	var wg sync.WaitGroup
	for i := range writers {
		s := b.Open()
		wg.Go(func() {
			err := s.UpdateKeyState(ctx, key, func(st *records.KeyState) {
				if st.Compromised == nil {
					st.Compromised = map[int]records.CompromisedVersion{}
				}
				st.Compromised[i+1] = records.CompromisedVersion{Fingerprint: fmt.Sprintf("sha256:%012d", i+1)}
			})
			if err != nil {
				t.Errorf("UpdateKeyState %d: %v", i, err)
			}
			_, err = s.UpdateHistory(ctx, key, func(h *records.History) (bool, error) {
				return h.Add(i+1, randKey(), now(), records.StandingSuperseded, now(), "")
			})
			if err != nil {
				t.Errorf("UpdateHistory %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	st, _, err := b.Open().KeyState(ctx, key)
	if err != nil || len(st.Compromised) != writers {
		t.Fatalf("%d writers updated the key's state at once; it holds %d of their updates (%v)", writers, len(st.Compromised), err)
	}
	h, _, err := b.Open().History(ctx, key)
	if err != nil || len(h.Versions) != writers {
		t.Fatalf("%d writers updated the key's history at once; it holds %d of their versions (%v)", writers, len(h.Versions), err)
	}
}

func checkProve(t T, b Backend) {
	ctx := context.Background()
	s := b.Open()
	key, id := randID("key-"), "20260101T000000Z-abcdef"
	for _, exists := range []bool{false, true} {
		ws := s.RotationWrites(key, "an/main", id, exists)
		var whats []string
		for _, w := range ws {
			if w.Path == "" || len(w.Needs) == 0 {
				t.Fatalf("write %+v names no path or needs nothing", w)
			}
			whats = append(whats, w.What)
		}
		for _, want := range []string{"the key", "the key's metadata", "the rotation lock", "the key's state", "the key's version history", "the rotation's record", "the rotation's journal parts"} {
			if !slices.Contains(whats, want) {
				t.Fatalf("RotationWrites lists %q, not %q", whats, want)
			}
		}
		if err := s.CheckWrites(ctx, ws); err != nil {
			t.Fatalf("CheckWrites: %v", err)
		}
		for _, w := range ws {
			if !w.OK() {
				t.Fatalf("with credentials that may do everything, %s (%s) lacks %v", w.Path, w.What, w.Lacks)
			}
		}
	}
	if _, err := s.Settings(ctx, "an/main"); err != nil {
		t.Fatalf("Settings: %v", err)
	}
}

func checkWrap(t T, b Backend) {
	ctx := context.Background()
	w, ok := b.Open().(store.Wrapper)
	if !ok {
		t.Logf("not a store.Wrapper: nothing to check")
		return
	}
	k := randKey()
	code, accessor, created, err := w.Wrap(ctx, map[string]string{"key": k.Reveal()}, time.Minute)
	if err != nil {
		t.Fatalf("Wrap: %v", err)
	}
	if code == "" || accessor == "" || created.IsZero() || strings.Contains(code+accessor, k.Reveal()) {
		t.Fatalf("Wrap gave a code of %d bytes, accessor %q, made %v", len(code), accessor, created)
	}
	other := b.Open().(store.Wrapper)
	if made, ttl, err := other.LookupToken(ctx, code); err != nil || ttl != time.Minute || made.IsZero() {
		t.Fatalf("LookupToken: %v, %v, %v", made, ttl, err)
	}
	if exp, err := w.LookupAccessor(ctx, accessor); err != nil || !exp.After(created) {
		t.Fatalf("LookupAccessor: %v, %v", exp, err)
	}
	got, err := other.Unwrap(ctx, code)
	if err != nil || got["key"] != k.Reveal() {
		t.Fatalf("Unwrap: %d fields, %v; want the value wrapped", len(got), err)
	}
	if _, err := other.Unwrap(ctx, code); !errors.Is(err, failure.ErrNotFound) {
		t.Fatalf("Unwrap of a code already used: %v, want failure.ErrNotFound", err)
	}
	if _, _, err := other.LookupToken(ctx, code); !errors.Is(err, failure.ErrNotFound) {
		t.Fatalf("LookupToken of a code already used: %v, want failure.ErrNotFound", err)
	}
	if _, err := w.LookupAccessor(ctx, accessor); !errors.Is(err, failure.ErrNotFound) {
		t.Fatalf("LookupAccessor of a code already used: %v, want failure.ErrNotFound", err)
	}
	if _, err := other.Unwrap(ctx, randID("never-issued-")); !errors.Is(err, failure.ErrNotFound) {
		t.Fatalf("Unwrap of a code never issued: %v, want failure.ErrNotFound", err)
	}

	hr, ok := b.Open().(store.HandoffRecords)
	if !ok {
		t.Logf("not a store.HandoffRecords: no hand-off records to check")
		return
	}
	salt, err := hr.HandoffSalt(ctx)
	if err != nil || len(salt) < 16 {
		t.Fatalf("HandoffSalt: %d bytes, %v", len(salt), err)
	}
	if again, err := b.Open().(store.HandoffRecords).HandoffSalt(ctx); err != nil || !bytes.Equal(again, salt) {
		t.Fatalf("HandoffSalt from another handle: a different salt (%v)", err)
	}
	hash := strings.Repeat("ab", 32)
	if _, err := hr.Handoff(ctx, hash); !errors.Is(err, failure.ErrNotFound) {
		t.Fatalf("Handoff never recorded: %v, want failure.ErrNotFound", err)
	}
	rec := &records.Handoff{CodeHash: hash, KeyID: "an", Integration: "callhub", Accessor: accessor}
	if err := hr.CreateHandoff(ctx, rec); err != nil {
		t.Fatalf("CreateHandoff: %v", err)
	}
	if err := b.Open().(store.HandoffRecords).CreateHandoff(ctx, rec); !errors.Is(err, failure.ErrConflict) {
		t.Fatalf("CreateHandoff of a code recorded already: %v, want failure.ErrConflict", err)
	}
	up, err := b.Open().(store.HandoffRecords).UpdateHandoff(ctx, hash, func(h *records.Handoff) bool { h.Integration = "callhub-2"; return true })
	if err != nil || up.Integration != "callhub-2" {
		t.Fatalf("UpdateHandoff: %+v, %v", up, err)
	}
	if got, err := hr.Handoff(ctx, hash); err != nil || got.Integration != "callhub-2" || got.Accessor != accessor {
		t.Fatalf("Handoff read back: %+v, %v", got, err)
	}
}
