// Package state is the one set of words for where an integration stands:
// the progress states of a rotation, the outcomes an audit reports, and
// how an outcome was proven. The engine, records, notifiers, the live
// view, the CLI and metrics all use these, and nothing else.
//
// It imports nothing of rekey's, so any package may use it.
package state

import "time"

// State is where an integration stands.
type State string

// Progress states, which an integration passes through during a rotation.
const (
	Waiting   State = "waiting"   // planned, not started yet
	Applying  State = "applying"  // the key is being written
	Verifying State = "verifying" // written; its state is being worked out
)

// Outcomes, as SPEC.md names them for `rekey audit`.
const (
	Current     State = "current"     // holds the current version and works
	Stale       State = "stale"       // holds a superseded version
	Compromised State = "compromised" // holds a version replaced by `rekey leak`
	Pending     State = "pending"     // waiting for a person
	Failing     State = "failing"     // holds no key, an unknown key, or does not work
	Unknown     State = "unknown"     // could not be known; never a guess
)

// Outcomes lists every outcome, in the order reports show them.
var Outcomes = []State{Current, Stale, Compromised, Pending, Failing, Unknown}

// Final reports whether s is an outcome rather than a progress state.
func (s State) Final() bool {
	switch s {
	case Waiting, Applying, Verifying, "":
		return false
	}
	return true
}

// NeedsAction reports whether s asks somebody to do something: the
// integration is not current, and not merely on its way there.
func (s State) NeedsAction() bool {
	switch s {
	case Failing, Pending, Stale, Compromised:
		return true
	}
	return false
}

// Proof is how an integration's state is known.
type Proof string

const (
	// Exact: the value was read back and its fingerprint compared.
	Exact Proof = "exact"
	// Timestamp: a write-only target's last write time, against rekey's record of writing it.
	Timestamp Proof = "timestamp"
	// Probe: a verify request or command passed.
	Probe Proof = "probe"
	// Person: a person confirmed it.
	Person Proof = "person"
	// NoProof: nothing can prove it; such an integration is never current.
	NoProof Proof = "none"
)

// Written is a record of rekey writing a key to an integration (or a person confirming they did).
type Written struct {
	Fingerprint string    `json:"fingerprint,omitempty"`
	At          time.Time `json:"at,omitzero"`
}

// Status is an integration's state with the reason it was given.
type Status struct {
	State  State  `json:"state"`
	Reason string `json:"reason"`
	// Fingerprint of what the target holds, when it could be read.
	Fingerprint string `json:"fingerprint,omitempty"`
	// Proof is how the state was established; NoProof when it could not be.
	Proof Proof `json:"proof,omitempty"`
}
