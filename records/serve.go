package records

import (
	"time"

	"github.com/rekey-dev/rekey/state"
)

// Said is what `rekey serve` has told the team, so that a restart or a new
// leader repeats nothing. It holds states, versions and times, never a key.
type Said struct {
	// LastRound is when the latest audit round began.
	LastRound time.Time `json:"last_round,omitzero"`
	// By is the instance that ran it.
	By   string              `json:"by,omitempty"`
	Keys map[string]*KeySaid `json:"keys,omitempty"`
}

// KeySaid is what was said about one key.
type KeySaid struct {
	// Version is the key version the reminders below refer to; a new
	// version starts the reminders afresh.
	Version int `json:"version,omitempty"`
	// Reminded lists the remind_before thresholds ("14d") already reminded
	// for Version.
	Reminded []string `json:"reminded,omitempty"`
	// OverdueSent counts the days overdue already reminded: after the
	// reminder of day n overdue (0 on the due day) it is n+1.
	OverdueSent int `json:"overdue_sent,omitempty"`
	// Integrations are the states last told, by integration id.
	Integrations map[string]IntegrationSaid `json:"integrations,omitempty"`
	// Leaks is what was last told of each leaked version not yet known
	// dead, by version number.
	Leaks map[int]LeakSaid `json:"leaks,omitempty"`
}

// LeakSaid is what was last told of a leaked version not yet known dead:
// "works" or "gone" (from the store, so it cannot be asked about), and
// when.
type LeakSaid struct {
	State string    `json:"state"`
	At    time.Time `json:"at"`
}

// IntegrationSaid is one integration's state as last told, and as last seen.
type IntegrationSaid struct {
	// Alerted is the state the team last heard of (the first state seen,
	// which was not announced, at first).
	Alerted state.State `json:"alerted,omitempty"`
	// Seen is the state the latest audit found.
	Seen state.State `json:"seen,omitempty"`
}

// ServeLease is the record that says which `rekey serve` instance does the
// scheduled work.
type ServeLease struct {
	Held     bool      `json:"held"`
	Holder   string    `json:"holder,omitempty"` // instance id
	Host     string    `json:"host,omitempty"`
	PID      int       `json:"pid,omitempty"`
	Acquired time.Time `json:"acquired,omitzero"`
	Renewed  time.Time `json:"renewed,omitzero"`
	// Expires is when the holder's lease runs out by the holder's clock.
	// Other instances judge expiry by their own clock.
	Expires  time.Time `json:"expires,omitzero"`
	TTL      string    `json:"ttl,omitempty"`
	Released time.Time `json:"released,omitzero"`
}
