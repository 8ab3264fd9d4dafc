package serve

import (
	"slices"
	"sort"
	"time"

	"github.com/rekey-dev/rekey/config"
	"github.com/rekey-dev/rekey/records"
	"github.com/rekey-dev/rekey/state"
)

// Said is what the daemon has told the team (records.Said), kept so that a
// restart or a new leader repeats nothing.
type Said = records.Said

// KeySaid is what was said about one key.
type KeySaid = records.KeySaid

// IntegrationSaid is one integration's state as last told, and as last seen.
type IntegrationSaid = records.IntegrationSaid

func clone(k *KeySaid) *KeySaid {
	c := &KeySaid{Version: k.Version, OverdueSent: k.OverdueSent, Reminded: slices.Clone(k.Reminded)}
	if k.Integrations != nil {
		c.Integrations = make(map[string]IntegrationSaid, len(k.Integrations))
		for id, s := range k.Integrations {
			c.Integrations[id] = s
		}
	}
	if k.Leaks != nil {
		c.Leaks = make(map[int]records.LeakSaid, len(k.Leaks))
		for v, l := range k.Leaks {
			c.Leaks[v] = l
		}
	}
	return c
}

// Change is one integration's change of state worth an alert.
type Change struct {
	ID       string
	Previous state.State
	State    state.State
}

// observe records in k that an audit found integration id in state got, and
// reports whether the team must hear of it. The first state seen is a
// baseline, not a change. A change to unknown (the check could not reach
// its target) is told only when the next audit finds it unknown again,
// so that one network blip does not send two alerts.
func observe(k *KeySaid, id string, got state.State) (Change, bool) {
	if k.Integrations == nil {
		k.Integrations = map[string]IntegrationSaid{}
	}
	s := k.Integrations[id]
	defer func() { k.Integrations[id] = s }()
	lastSeen := s.Seen
	s.Seen = got
	switch {
	case s.Alerted == got:
		return Change{}, false
	case got == state.Unknown && lastSeen != state.Unknown:
		return Change{}, false // wait for a second audit
	case s.Alerted == "":
		s.Alerted = got // baseline
		return Change{}, false
	}
	c := Change{ID: id, Previous: s.Alerted, State: got}
	s.Alerted = got
	return c, true
}

// forget drops integrations that are no longer configured.
func forget(k *KeySaid, configured []string) {
	keep := make(map[string]bool, len(configured))
	for _, id := range configured {
		keep[id] = true
	}
	for id := range k.Integrations {
		if !keep[id] {
			delete(k.Integrations, id)
		}
	}
}

// Reminder is one reminder to send.
type Reminder struct {
	Due time.Time
	// Before is the threshold reached ("7d"); empty when overdue.
	Before string
	// OverdueDays is how many whole days the key is overdue (0 on the due
	// day); meaningful only when Before is empty.
	OverdueDays int
}

// Overdue reports whether the reminder is for an overdue key.
func (r Reminder) Overdue() bool { return r.Before == "" }

// remind works out whether a key stored at stored (version), due every
// every, needs a reminder at now, given the thresholds before (any
// order), and records it as said in k. It reminds once per threshold per
// version: when several thresholds were reached at once (the daemon was
// down), it sends one, for the nearest. Once the key is due it reminds
// once a day.
func remind(k *KeySaid, now, stored time.Time, version int, every time.Duration, before []config.Duration) (Reminder, bool) {
	if every <= 0 || stored.IsZero() {
		return Reminder{}, false
	}
	if k.Version != version {
		k.Version, k.Reminded, k.OverdueSent = version, nil, 0
	}
	due := stored.Add(every)
	if !now.Before(due) {
		days := int(now.Sub(due) / (24 * time.Hour))
		if days+1 <= k.OverdueSent {
			return Reminder{}, false
		}
		k.OverdueSent = days + 1
		return Reminder{Due: due, OverdueDays: days}, true
	}
	bs := slices.Clone(before)
	sort.Slice(bs, func(i, j int) bool { return bs[i] > bs[j] })
	var nearest string
	for _, b := range bs {
		if now.Before(due.Add(-b.D())) {
			continue
		}
		label := b.String()
		if slices.Contains(k.Reminded, label) {
			nearest = ""
			continue
		}
		k.Reminded = append(k.Reminded, label)
		nearest = label
	}
	if nearest == "" {
		return Reminder{}, false
	}
	return Reminder{Due: due, Before: nearest}, true
}
