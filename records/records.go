// Package records defines what rekey keeps about its own work: rotations
// and their journals, per-integration state, locks, compromised versions,
// audits, what `rekey serve` said. A store keeps them (package store: in
// Vault under <mount>/<state_path>/, see vaultstore) and they hold
// fingerprints, never keys: no type here has a field for one.
package records

import (
	"time"

	"github.com/rekey-dev/rekey/state"
)

// Phase is how far a rotation got.
type Phase string

const (
	// PhasePlanned: the record exists, the key is not stored yet. A crash
	// here changed nothing unless the key's metadata names this rotation.
	PhasePlanned Phase = "planned"
	// PhaseStored: the new version is in Vault; integrations are being updated.
	PhaseStored Phase = "stored"
	// PhaseDone: every integration reached an outcome for this run.
	PhaseDone Phase = "done"
	// PhaseAborted: stopped before Vault was written; nothing changed.
	PhaseAborted Phase = "aborted"
)

// Rotation is one run that replaces a key.
type Rotation struct {
	ID       string    `json:"id"`
	KeyID    string    `json:"key"`
	Reason   string    `json:"reason"` // scheduled, leak, manual
	Operator string    `json:"operator"`
	Started  time.Time `json:"started"`
	Stored   time.Time `json:"stored,omitzero"`
	Finished time.Time `json:"finished,omitzero"`
	Phase    Phase     `json:"phase"`
	Error    string    `json:"error,omitempty"`

	OldVersion     int    `json:"old_version,omitempty"`
	OldFingerprint string `json:"old_fingerprint,omitempty"`
	NewVersion     int    `json:"new_version,omitempty"`
	NewFingerprint string `json:"new_fingerprint,omitempty"`

	Integrations map[string]*Integration `json:"integrations"`
	Journal      []Transition            `json:"journal"`
	// JournalParts is how many full parts of the journal are stored in
	// records of their own before Journal (the store's business: a record
	// read through the store has the whole journal in Journal).
	JournalParts int `json:"journal_parts,omitempty"`
	// Timeline marks the moments of an incident (leak declared, old key
	// confirmed dead, new key stored, each integration current).
	Timeline []Mark `json:"timeline,omitempty"`
	// Thread is where the rotation's notifications are threaded (a Slack
	// channel and message), so resume and confirm reply in the same one.
	Thread *Thread `json:"thread,omitempty"`
}

// Thread names the first message of a rotation's notifications.
type Thread struct {
	Channel string `json:"channel"`
	TS      string `json:"ts"`
}

// Integration is one integration's record within a rotation.
type Integration struct {
	ID        string        `json:"id"`
	Type      string        `json:"type"`
	State     state.State   `json:"state"` // a progress state or an outcome
	Reason    string        `json:"reason,omitempty"`
	Proof     state.Proof   `json:"proof,omitempty"` // how an outcome was proven
	Attempts  int           `json:"attempts,omitempty"`
	Written   state.Written `json:"written,omitzero"`
	Confirmed state.Written `json:"confirmed,omitzero"`
	// ConfirmedBy and Note record who confirmed a manual integration.
	ConfirmedBy string    `json:"confirmed_by,omitempty"`
	Note        string    `json:"note,omitempty"`
	Updated     time.Time `json:"updated"`
}

// Transition is one journal line: an integration moving between states.
type Transition struct {
	At          time.Time   `json:"at"`
	Integration string      `json:"integration"`
	From        state.State `json:"from"`
	To          state.State `json:"to"`
	Fingerprint string      `json:"fingerprint,omitempty"`
	Reason      string      `json:"reason,omitempty"`
}

// Mark is one moment of an incident timeline.
type Mark struct {
	At   time.Time `json:"at"`
	What string    `json:"what"`
}

// Lock says who holds a key's rotation lock and since when.
type Lock struct {
	Held bool   `json:"held"`
	User string `json:"user,omitempty"`
	Host string `json:"host,omitempty"`
	PID  int    `json:"pid,omitempty"`
	// BootID and PIDNamespace say where PID means something: the kernel's
	// boot id (/proc/sys/kernel/random/boot_id) and the holder's PID
	// namespace (/proc/self/ns/pid, e.g. "pid:[4026531836]"). A PID is
	// only ever judged dead by a process of the same boot and namespace.
	BootID       string    `json:"boot_id,omitempty"`
	PIDNamespace string    `json:"pid_namespace,omitempty"`
	Since        time.Time `json:"since,omitzero"`
	Expires      time.Time `json:"expires,omitzero"`
	RotationID   string    `json:"rotation_id,omitempty"`
	Command      string    `json:"command,omitempty"`
}

// KeyState is what rekey knows about a key across rotations.
type KeyState struct {
	LatestRotation string `json:"latest_rotation,omitempty"`
	// Compromised lists versions replaced by `rekey leak`, by version number.
	Compromised map[int]CompromisedVersion `json:"compromised,omitempty"`
	// LastAudit is where rekey kept the latest audit of the key's
	// integrations before stores kept it apart (store.Records.LastAudit);
	// a store reads it only when it has no audit of its own yet, and
	// nothing writes it.
	LastAudit *Audit `json:"last_audit,omitempty"`
	// Identity is the group or list the current version belongs to, as
	// its latest rotation found it (hashed): the wrong-group guard's
	// reference once that version no longer works.
	Identity *Identity `json:"identity,omitempty"`
	// Handoffs names, by integration, the latest hand-off code made for
	// it (the record handoffs/<code hash>).
	Handoffs map[string]HandoffRef `json:"handoffs,omitempty"`
}

// CompromisedVersion records why a version is compromised.
type CompromisedVersion struct {
	Fingerprint string    `json:"fingerprint"`
	At          time.Time `json:"at"`
	RotationID  string    `json:"rotation_id,omitempty"`
	// Dead is when the provider was first found to refuse it; zero while
	// it may still work (`rekey serve` checks it again each round).
	Dead time.Time `json:"dead,omitzero"`
}

// Audit is one audit of a key's integrations.
type Audit struct {
	At           time.Time               `json:"at"`
	Duration     time.Duration           `json:"duration_ns"`
	Integrations map[string]state.Status `json:"integrations"`
}
