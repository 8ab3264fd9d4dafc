package rotation

import (
	"sort"
	"strings"
	"time"

	"github.com/rekey-dev/rekey/records"
	"github.com/rekey-dev/rekey/state"
)

// Marks of an incident timeline. The engine adds "new key … stored", one
// "<integration> current" per integration and MarkAllCurrent; `rekey leak`
// adds MarkLeakDeclared before it runs the engine and MarkOldKeyDead when
// the provider refuses the leaked key.
const (
	MarkLeakDeclared = "leak declared"
	MarkOldKeyDead   = "old key confirmed dead"
	MarkAllCurrent   = "every integration current"
)

// Containment is how far a leak rotation got: a leak is contained when
// the leaked key is confirmed dead and every integration holds the new
// key. Its times come from the rotation's record alone, so it can be
// worked out again at any later time (after `rekey confirm`, say).
type Containment struct {
	Declared   time.Time `json:"declared"`
	OldKeyDead time.Time `json:"old_key_dead,omitzero"`
	AllCurrent time.Time `json:"all_current,omitzero"`
	// Contained is the later of OldKeyDead and AllCurrent; zero while
	// either is missing.
	Contained time.Time `json:"contained,omitzero"`
	// TimeToContain is Contained minus Declared.
	TimeToContain time.Duration `json:"time_to_contain_ns,omitempty"`
	// Open says what is still missing, e.g. "the leaked key is not
	// confirmed dead", "callhub pending".
	Open []string `json:"open,omitempty"`
}

// ContainmentOf works out the containment of rec. ok is false when rec
// has no MarkLeakDeclared (it is not a leak rotation).
//
// Every integration is current when each one's state is current; the time
// it became so is the latest journal transition of each to current (or its
// confirmation), so a manual integration confirmed an hour later moves
// AllCurrent an hour later. A rotation without integrations is all current
// when its key is stored.
func ContainmentOf(rec *records.Rotation) (c Containment, ok bool) {
	for _, m := range rec.Timeline {
		switch m.What {
		case MarkLeakDeclared:
			if !ok || m.At.Before(c.Declared) {
				c.Declared, ok = m.At, true
			}
		case MarkOldKeyDead:
			if c.OldKeyDead.IsZero() || m.At.Before(c.OldKeyDead) {
				c.OldKeyDead = m.At
			}
		}
	}
	if !ok {
		return Containment{}, false
	}
	if c.OldKeyDead.IsZero() {
		c.Open = append(c.Open, "the leaked key is not confirmed dead")
	}

	ids := make([]string, 0, len(rec.Integrations))
	for id := range rec.Integrations {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var latest time.Time
	all := !rec.Stored.IsZero() || rec.NewVersion > 0
	since := currentTimes(rec)
	if !all {
		c.Open = append(c.Open, "the new key is not stored")
	}
	for _, id := range ids {
		r := rec.Integrations[id]
		if r.State != state.Current {
			all = false
			st := r.State
			if st == "" {
				st = state.Unknown
			}
			c.Open = append(c.Open, id+" "+string(st))
			continue
		}
		at := since[id]
		if at.IsZero() {
			at = r.Confirmed.At
			if at.IsZero() {
				at = r.Updated
			}
		}
		if at.After(latest) {
			latest = at
		}
	}
	if all {
		if latest.IsZero() {
			latest = rec.Stored
		}
		c.AllCurrent = latest
	}
	if !c.OldKeyDead.IsZero() && !c.AllCurrent.IsZero() {
		c.Contained = c.OldKeyDead
		if c.AllCurrent.After(c.Contained) {
			c.Contained = c.AllCurrent
		}
		c.TimeToContain = max(c.Contained.Sub(c.Declared), 0)
	}
	return c, true
}

// currentTimes is when each integration of rec last became current, from
// its journal (one pass: a rotation may have thousands).
func currentTimes(rec *records.Rotation) map[string]time.Time {
	at := make(map[string]time.Time, len(rec.Integrations))
	for _, t := range rec.Journal {
		if t.To == state.Current && t.At.After(at[t.Integration]) {
			at[t.Integration] = t.At
		}
	}
	return at
}

// SortTimeline orders marks by time, keeping the order of marks made at
// the same moment, and drops exact duplicates.
func SortTimeline(marks []records.Mark) []records.Mark {
	sort.SliceStable(marks, func(i, j int) bool { return marks[i].At.Before(marks[j].At) })
	out := marks[:0]
	seen := map[string]bool{}
	for _, m := range marks {
		k := m.At.Format(time.RFC3339Nano) + "\x00" + strings.TrimSpace(m.What)
		if seen[k] {
			continue
		}
		seen[k] = true
		out = append(out, m)
	}
	return out
}
