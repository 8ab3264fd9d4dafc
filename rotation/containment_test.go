package rotation

import (
	"slices"
	"testing"
	"time"

	"github.com/rekey-dev/rekey/records"
)

func TestContainmentOf(t *testing.T) {
	t0 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	current := func(id string, ms int) (*records.Integration, records.Transition) {
		return &records.Integration{ID: id, State: "current", Updated: at(ms)},
			records.Transition{At: at(ms), Integration: id, From: "verifying", To: "current"}
	}
	rec := func(marks []records.Mark, ins ...any) *records.Rotation {
		r := &records.Rotation{Stored: at(100), NewVersion: 2, Timeline: marks, Integrations: map[string]*records.Integration{}}
		for _, x := range ins {
			switch v := x.(type) {
			case *records.Integration:
				r.Integrations[v.ID] = v
			case records.Transition:
				r.Journal = append(r.Journal, v)
			}
		}
		return r
	}
	declared := records.Mark{At: at(0), What: MarkLeakDeclared}
	dead := func(ms int) records.Mark { return records.Mark{At: at(ms), What: MarkOldKeyDead} }
	siteIn, siteT := current("site", 300)
	ciIn, ciT := current("ci", 500)

	tests := []struct {
		name      string
		rec       *records.Rotation
		ok        bool
		contained time.Duration // -1: not contained
		open      []string
	}{
		{"not a leak", rec(nil, siteIn, siteT), false, -1, nil},
		{"dead after every integration", rec([]records.Mark{declared, dead(900)}, siteIn, siteT, ciIn, ciT), true, 900 * time.Millisecond, nil},
		{"every integration after dead", rec([]records.Mark{declared, dead(50)}, siteIn, siteT, ciIn, ciT), true, 500 * time.Millisecond, nil},
		{"leaked key not dead", rec([]records.Mark{declared}, siteIn, siteT), true, -1, []string{"the leaked key is not confirmed dead"}},
		{"one pending", rec([]records.Mark{declared, dead(50)}, siteIn, siteT, &records.Integration{ID: "callhub", State: "pending"}), true, -1, []string{"callhub pending"}},
		{"both open", rec([]records.Mark{declared}, &records.Integration{ID: "ci", State: "failing"}), true, -1, []string{"the leaked key is not confirmed dead", "ci failing"}},
		{"confirmed later", rec([]records.Mark{declared, dead(50)}, siteIn, siteT,
			&records.Integration{ID: "callhub", State: "current", Updated: at(60000)},
			records.Transition{At: at(200), Integration: "callhub", To: "pending"},
			records.Transition{At: at(60000), Integration: "callhub", From: "pending", To: "current"}), true, time.Minute, nil},
		{"no integrations", rec([]records.Mark{declared, dead(50)}), true, 100 * time.Millisecond, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, ok := ContainmentOf(tt.rec)
			if ok != tt.ok {
				t.Fatalf("ok = %v, want %v", ok, tt.ok)
			}
			if !ok {
				return
			}
			if tt.contained < 0 {
				if !c.Contained.IsZero() || c.TimeToContain != 0 {
					t.Errorf("contained at %v after %v, want open", c.Contained, c.TimeToContain)
				}
			} else if c.TimeToContain != tt.contained || !c.Contained.Equal(at(0).Add(tt.contained)) {
				t.Errorf("time to contain %v (at %v), want %v", c.TimeToContain, c.Contained, tt.contained)
			}
			if !slices.Equal(c.Open, tt.open) {
				t.Errorf("open = %q, want %q", c.Open, tt.open)
			}
		})
	}
}

func TestSortTimeline(t *testing.T) {
	t0 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	got := SortTimeline([]records.Mark{
		{At: t0.Add(2 * time.Second), What: "c"},
		{At: t0, What: "a"},
		{At: t0.Add(time.Second), What: "b1"},
		{At: t0.Add(time.Second), What: "b2"},
		{At: t0, What: "a"},
	})
	var whats []string
	for _, m := range got {
		whats = append(whats, m.What)
	}
	if want := []string{"a", "b1", "b2", "c"}; !slices.Equal(whats, want) {
		t.Errorf("SortTimeline = %q, want %q", whats, want)
	}
}
