package memstore

import (
	"context"
	"encoding/json"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/rekey-dev/rekey/records"
	"github.com/rekey-dev/rekey/state"
)

// A rotation's record is copied, not encoded (cloneRotation): the copy
// must be what a JSON round trip would give, share nothing with what was
// written, and keep up with the record's fields.

func sampleRotation() *records.Rotation {
	now := time.Now() // with a monotonic reading, as the engine's clock gives
	return &records.Rotation{
		ID: "20260101T000000Z-abcdef", KeyID: "an", Reason: "leak", Operator: "ops@host",
		Started: now, Stored: now.Add(time.Second), Finished: now.Add(time.Minute), Phase: records.PhaseDone, Error: "e",
		OldVersion: 1, OldFingerprint: "sha256:aaaaaaaaaaaa", NewVersion: 2, NewFingerprint: "sha256:bbbbbbbbbbbb",
		Integrations: map[string]*records.Integration{"site": {ID: "site", Type: "file", State: state.Current, Reason: "r", Proof: state.Exact,
			Attempts: 2, Written: state.Written{Fingerprint: "sha256:bbbbbbbbbbbb", At: now}, Confirmed: state.Written{Fingerprint: "sha256:bbbbbbbbbbbb", At: now},
			ConfirmedBy: "ops@host", Note: "pasted", Updated: now}},
		Journal:      []records.Transition{{At: now, Integration: "site", From: state.Waiting, To: state.Applying, Fingerprint: "sha256:bbbbbbbbbbbb", Reason: "x"}},
		JournalParts: 0,
		Timeline:     []records.Mark{{At: now, What: "leak declared"}},
		Thread:       &records.Thread{Channel: "C0", TS: "1.2"},
	}
}

func TestCloneIsWhatJSONGives(t *testing.T) {
	r := sampleRotation()
	b, _ := json.Marshal(r)
	var viaJSON records.Rotation
	if err := json.Unmarshal(b, &viaJSON); err != nil {
		t.Fatal(err)
	}
	c := cloneRotation(r)
	got, _ := json.Marshal(c)
	want, _ := json.Marshal(&viaJSON)
	if string(got) != string(want) {
		t.Fatalf("clone encodes as\n%s\nJSON round trip as\n%s", got, want)
	}
	if !c.Started.Equal(viaJSON.Started) || c.Started != c.Started.Round(0) {
		t.Fatal("the clone's times keep a monotonic reading")
	}
}

func TestSavedRotationSharesNothing(t *testing.T) {
	ctx := context.Background()
	s := New(Options{})
	r := sampleRotation()
	if err := s.SaveRotation(ctx, r); err != nil {
		t.Fatal(err)
	}
	r.Integrations["site"].State = state.Failing
	r.Integrations["other"] = &records.Integration{ID: "other"}
	r.Journal[0].Reason = "changed"
	r.Timeline[0].What = "changed"
	r.Thread.TS = "changed"
	got, err := s.Open().Rotation(ctx, "an", r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Integrations["site"].State != state.Current || len(got.Integrations) != 1 || got.Journal[0].Reason != "x" ||
		got.Timeline[0].What != "leak declared" || got.Thread.TS != "1.2" {
		t.Fatalf("the stored record changed with the writer's: %+v", got)
	}
	got.Integrations["site"].State = state.Stale
	again, _ := s.Rotation(ctx, "an", r.ID)
	if again.Integrations["site"].State != state.Current {
		t.Fatal("the stored record changed with a reader's")
	}
}

// cloneRotation copies each map, slice and pointer of these types, and
// takes the monotonic reading off each time: a field added to them must
// be added there too, and here.
func TestCloneKnowsEveryField(t *testing.T) {
	known := map[string][]string{
		"Rotation":    {"Started", "Stored", "Finished", "Integrations", "Journal", "Timeline", "Thread"},
		"Integration": {"Written", "Confirmed", "Updated"},
		"Transition":  {"At"},
		"Mark":        {"At"},
		"Thread":      nil,
	}
	timeType := reflect.TypeOf(time.Time{})
	writtenType := reflect.TypeOf(state.Written{})
	for _, v := range []any{records.Rotation{}, records.Integration{}, records.Transition{}, records.Mark{}, records.Thread{}} {
		typ := reflect.TypeOf(v)
		var deep []string
		for i := range typ.NumField() {
			f := typ.Field(i)
			switch f.Type.Kind() {
			case reflect.Map, reflect.Slice, reflect.Pointer, reflect.Interface:
				deep = append(deep, f.Name)
			case reflect.Struct:
				if f.Type == timeType || f.Type == writtenType {
					deep = append(deep, f.Name)
				} else {
					t.Errorf("records.%s.%s is a struct cloneRotation does not know", typ.Name(), f.Name)
				}
			}
		}
		if !slices.Equal(deep, known[typ.Name()]) {
			t.Errorf("records.%s has fields %v that need copying, cloneRotation copies %v: update it", typ.Name(), deep, known[typ.Name()])
		}
	}
}
