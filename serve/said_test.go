package serve

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rekey-dev/rekey/config"
	"github.com/rekey-dev/rekey/state"
)

func TestObserve(t *testing.T) {
	const (
		cur = state.Current
		st  = state.Stale
		unk = state.Unknown
		fl  = state.Failing
		cmp = state.Compromised
	)
	tests := []struct {
		name string
		seen []state.State
		want string // the alerts, "prev>state" separated by spaces
	}{
		{"first state is a baseline", []state.State{st}, ""},
		{"steady", []state.State{cur, cur, cur}, ""},
		{"one change, one alert", []state.State{cur, st, st, st}, "current>stale"},
		{"there and back", []state.State{cur, st, cur}, "current>stale stale>current"},
		{"one unknown is a blip", []state.State{cur, unk, cur}, ""},
		{"unknown twice is told once", []state.State{cur, unk, unk, unk}, "current>unknown"},
		{"back from unknown", []state.State{cur, unk, unk, cur}, "current>unknown unknown>current"},
		{"blip then real change", []state.State{cur, unk, fl}, "current>failing"},
		{"unknown at first waits for a known state", []state.State{unk, cur, st}, "current>stale"},
		{"unknown from the start becomes the baseline", []state.State{unk, unk, cur}, "unknown>current"},
		{"compromised", []state.State{st, cmp}, "stale>compromised"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var k KeySaid
			var got []string
			for _, s := range tt.seen {
				if c, ok := observe(&k, "ci", s); ok {
					if c.ID != "ci" {
						t.Errorf("change of %q, want ci", c.ID)
					}
					got = append(got, fmt.Sprintf("%s>%s", c.Previous, c.State))
				}
			}
			if g := strings.Join(got, " "); g != tt.want {
				t.Errorf("alerts %q, want %q", g, tt.want)
			}
		})
	}
}

func TestForget(t *testing.T) {
	var k KeySaid
	observe(&k, "a", state.Current)
	observe(&k, "b", state.Current)
	forget(&k, []string{"a"})
	if _, ok := k.Integrations["b"]; ok || len(k.Integrations) != 1 {
		t.Errorf("after forget: %v", k.Integrations)
	}
}

func TestRemind(t *testing.T) {
	day := 24 * time.Hour
	stored := time.Date(2025, 1, 1, 9, 0, 0, 0, time.UTC)
	due := stored.Add(90 * day)
	before := []config.Duration{config.Duration(7 * day), config.Duration(14 * day), config.Duration(day)}
	type at struct {
		offset  time.Duration // from the due time
		version int
	}
	tests := []struct {
		name string
		at   []at
		want string // reminders: a threshold, or "+N" for N days overdue, space separated
	}{
		{"too early", []at{{-20 * day, 1}}, ""},
		{"each threshold once", []at{{-14 * day, 1}, {-13 * day, 1}, {-7 * day, 1}, {-6 * day, 1}, {-day + time.Hour, 1}, {-time.Hour, 1}}, "14d 7d 1d"},
		{"down for a week: the nearest only", []at{{-3 * day, 1}, {-2 * day, 1}}, "7d"},
		{"due day and daily after", []at{{0, 1}, {time.Hour, 1}, {23 * time.Hour, 1}, {day, 1}, {day + time.Hour, 1}, {2*day + time.Minute, 1}}, "+0 +1 +2"},
		{"back after days overdue", []at{{5*day + time.Hour, 1}, {5*day + 2*time.Hour, 1}, {6 * day, 1}}, "+5 +6"},
		{"a new version starts again", []at{{-14 * day, 1}, {-14 * day, 2}, {-13 * day, 2}}, "14d 14d"},
		{"a rotation stops the overdue reminders", []at{{day, 1}, {2 * day, 2}, {3 * day, 2}}, "+1 +2 +3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var k KeySaid
			var got []string
			for _, a := range tt.at {
				r, ok := remind(&k, due.Add(a.offset), stored, a.version, 90*day, before)
				if !ok {
					continue
				}
				if !r.Due.Equal(due) {
					t.Errorf("due %v, want %v", r.Due, due)
				}
				if r.Overdue() {
					got = append(got, fmt.Sprintf("+%d", r.OverdueDays))
				} else {
					got = append(got, r.Before)
				}
			}
			if g := strings.Join(got, " "); g != tt.want {
				t.Errorf("reminders %q, want %q", g, tt.want)
			}
		})
	}
}

func TestRemindNeedsSchedule(t *testing.T) {
	var k KeySaid
	now := time.Now()
	if _, ok := remind(&k, now, now.Add(-365*24*time.Hour), 1, 0, []config.Duration{config.Duration(time.Hour)}); ok {
		t.Error("reminded for a key without rotate_every")
	}
	if _, ok := remind(&k, now, time.Time{}, 1, time.Hour, nil); ok {
		t.Error("reminded for a key without a stored time")
	}
}
