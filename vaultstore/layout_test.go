package vaultstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/internal/vaulttest"
	"github.com/rekey-dev/rekey/records"
	"github.com/rekey-dev/rekey/state"
)

// versionOf is how many times the record at rel was written.
func versionOf(t *testing.T, env *vaulttest.Env, rel string) int {
	t.Helper()
	md, err := env.Client.KVv2(env.Mount).GetMetadata(context.Background(), "rekey/"+rel)
	if err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
	return md.CurrentVersion
}

// A rotation of thousands of integrations is laid out over pages, each
// under MaxEntry; saved again and again as a rotation saves it, a page is
// written only when what it holds changed, and a full journal page once.
func TestPagesAreWrittenWhenTheyChange(t *testing.T) {
	env := vaulttest.New(t)
	s := New(env.Client, env.Mount, "rekey")
	ctx := context.Background()
	const n = 3000
	r := &records.Rotation{ID: "r1", KeyID: "an", Reason: "leak", Started: time.Now().UTC(), Phase: records.PhaseStored, Integrations: map[string]*records.Integration{}}
	for i := range n {
		id := fmt.Sprintf("web-%04d", i)
		r.Integrations[id] = &records.Integration{ID: id, Type: "http", State: state.Waiting}
	}
	if err := s.SaveRotation(ctx, r); err != nil {
		t.Fatal(err)
	}
	pages := (n + perPage - 1) / perPage
	for p := range pages {
		if v := versionOf(t, env, integrationPagePath("an", "r1", p)); v != 1 {
			t.Fatalf("integration page %d at version %d after one save", p, v)
		}
	}
	// One integration moves: one page changes.
	r.Integrations["web-0042"].State = state.Applying
	r.Journal = append(r.Journal, records.Transition{Integration: "web-0042", From: state.Waiting, To: state.Applying})
	if err := s.SaveRotation(ctx, r); err != nil {
		t.Fatal(err)
	}
	changed := 0
	for p := range pages {
		if versionOf(t, env, integrationPagePath("an", "r1", p)) > 1 {
			changed++
		}
	}
	if changed != 1 {
		t.Fatalf("%d integration pages written again when one integration changed, want 1", changed)
	}
	// Everything moves, the journal grows over several pages, saved as
	// the journal is flushed.
	for i := range n {
		id := fmt.Sprintf("web-%04d", i)
		for _, to := range []state.State{state.Applying, state.Verifying, state.Current} {
			r.Journal = append(r.Journal, records.Transition{At: time.Now().UTC(), Integration: id, From: state.Waiting, To: to, Fingerprint: "sha256:0123456789ab", Reason: "holds the current version"})
		}
		r.Integrations[id].State = state.Current
		if i%500 == 0 {
			if err := s.SaveRotation(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := s.SaveRotation(ctx, r); err != nil {
		t.Fatal(err)
	}
	var h rotationHead
	if _, err := s.GetRecord(ctx, rotationPath("an", "r1"), &h); err != nil {
		t.Fatal(err)
	}
	if h.JournalPages < 3 {
		t.Fatalf("a journal of %d transitions on %d pages", len(r.Journal), h.JournalPages)
	}
	for p := range h.JournalPages - 1 {
		if v := versionOf(t, env, journalPath("an", "r1", p)); v != 1 {
			t.Errorf("full journal page %d written %d times, want once", p, v)
		}
	}
	if l := s.Largest(); l > MaxEntry {
		t.Fatalf("an entry of %d bytes was written", l)
	}
	got, err := New(env.Client, env.Mount, "rekey").Rotation(ctx, "an", "r1")
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Integrations) != n || len(got.Journal) != len(r.Journal) || got.Integrations["web-2999"].State != state.Current {
		t.Fatalf("read back %d integrations and %d journal lines, want %d and %d", len(got.Integrations), len(got.Journal), n, len(r.Journal))
	}
	// The rotations folder lists rotations only, not their pages.
	if ids, err := s.Rotations(ctx, "an"); err != nil || len(ids) != 1 || ids[0] != "r1" {
		t.Fatalf("rotations listed: %v, %v", ids, err)
	}
}

// A record written before pages (the integrations and the journal's tail
// in it, full journal parts of JournalPart beside it) reads back whole,
// and is written on in the paged layout.
func TestRecordOfTheOldLayoutIsRead(t *testing.T) {
	env := vaulttest.New(t)
	s := New(env.Client, env.Mount, "rekey")
	ctx := context.Background()
	old := records.Rotation{ID: "r0", KeyID: "an", Reason: "manual", Phase: records.PhaseDone, JournalParts: 1,
		Integrations: map[string]*records.Integration{"site": {ID: "site", Type: "file", State: state.Current}}}
	var part journalRecord
	for i := range JournalPart {
		part.Transitions = append(part.Transitions, records.Transition{Integration: fmt.Sprintf("i%04d", i), To: state.Applying})
	}
	old.Journal = []records.Transition{{Integration: "site", To: state.Current}}
	if _, err := s.PutRecord(ctx, journalPath("an", "r0", 0), part, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutRecord(ctx, rotationPath("an", "r0"), old, 0); err != nil {
		t.Fatal(err)
	}
	got, err := New(env.Client, env.Mount, "rekey").Rotation(ctx, "an", "r0")
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Journal) != JournalPart+1 || got.Journal[JournalPart].Integration != "site" || got.Integrations["site"].State != state.Current {
		t.Fatalf("read back %d journal lines, %+v", len(got.Journal), got.Integrations)
	}
	// Resumed by a new rekey: written on, and read back the same.
	w := New(env.Client, env.Mount, "rekey")
	again, err := w.Rotation(ctx, "an", "r0")
	if err != nil {
		t.Fatal(err)
	}
	again.Journal = append(again.Journal, records.Transition{Integration: "site", To: state.Current, Reason: "resumed"})
	if err := w.SaveRotation(ctx, again); err != nil {
		t.Fatal(err)
	}
	back, err := New(env.Client, env.Mount, "rekey").Rotation(ctx, "an", "r0")
	if err != nil || len(back.Journal) != JournalPart+2 || back.Journal[JournalPart+1].Reason != "resumed" {
		t.Fatalf("after writing on: %d journal lines, %v", len(back.Journal), err)
	}
}

// An entry over MaxEntry is never sent: the write fails, naming the
// record and its size, and nothing is written.
func TestNoEntryOverMaxEntry(t *testing.T) {
	env := vaulttest.New(t)
	s := New(env.Client, env.Mount, "rekey")
	big := map[string]string{"x": strings.Repeat("a", MaxEntry)}
	_, err := s.PutRecord(context.Background(), "big", big, 0)
	if !errors.Is(err, failure.ErrInvalid) || !strings.Contains(err.Error(), "rekey/big") {
		t.Fatalf("err = %v, want failure.ErrInvalid naming the record", err)
	}
	var got map[string]string
	if _, err := s.GetRecord(context.Background(), "big", &got); !errors.Is(err, failure.ErrNotFound) {
		t.Fatalf("read back after a refused write: %v", err)
	}
}
