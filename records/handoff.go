package records

import "time"

// HandoffState is where a hand-off code stands, as `status` and `audit`
// say it.
type HandoffState string

const (
	// HandoffNotSent: the code could not be made, recorded or delivered
	// (and was destroyed); `rekey resume` makes a new one.
	HandoffNotSent HandoffState = "not-sent"
	// HandoffUnopened: delivered, and not opened yet.
	HandoffUnopened HandoffState = "unopened"
	// HandoffOpened: opened once (by `rekey reveal`, the hand-off page,
	// or, when rekey could not see it, by something else).
	HandoffOpened HandoffState = "opened"
	// HandoffExpired: its TTL ran out before anyone opened it.
	HandoffExpired HandoffState = "expired"
	// HandoffTriedTwice: someone tried to open it again after it was
	// opened: a possible exposure, alerted.
	HandoffTriedTwice HandoffState = "tried-twice"
	// HandoffReplaced: a newer code was made for the integration; this one
	// was destroyed unopened.
	HandoffReplaced HandoffState = "replaced"
)

// Handoff is one hand-off code, as rekey keeps it under
// <state_path>/handoffs/<code hash>: never the code (a Vault
// response-wrapping token), only its accessor and a keyed hash of it, by
// which a code presented later (even a dead one) is found again.
type Handoff struct {
	// CodeHash is hex HMAC-SHA-256 of the code under the salt of
	// HandoffSalt; also the record's name.
	CodeHash string `json:"code_hmac"`
	// Accessor is Vault's accessor of the wrapping token: it looks the
	// token up (alive or gone) without being able to open it.
	Accessor    string    `json:"accessor"`
	KeyID       string    `json:"key"`
	RotationID  string    `json:"rotation_id"`
	Integration string    `json:"integration"`
	Fingerprint string    `json:"fingerprint"` // of the key handed off
	Owner       string    `json:"owner,omitempty"`
	Created     time.Time `json:"created"`
	Expires     time.Time `json:"expires"`
	// Delivery is how the code went to its owner: "slack-dm" or
	// "terminal" (printed for the operator to pass on).
	Delivery string    `json:"delivery,omitempty"`
	Sent     time.Time `json:"sent,omitzero"`
	// NotSent says why the code was destroyed undelivered.
	NotSent string `json:"not_sent,omitempty"`
	// Opened is when rekey opened it for its holder, and OpenedVia how
	// ("reveal" or "page").
	Opened    time.Time `json:"opened,omitzero"`
	OpenedVia string    `json:"opened_via,omitempty"`
	// Replaced is when a newer code for the integration replaced this one.
	Replaced time.Time `json:"replaced,omitzero"`
	// Confirmed is when its holder said, on the hand-off page, that the
	// key was pasted.
	Confirmed time.Time `json:"confirmed,omitzero"`
	// Tries are attempts to open it once it no longer could be.
	Tries []HandoffTry `json:"tries,omitempty"`
}

// HandoffTry is one attempt to open a code that was already opened,
// expired or replaced.
type HandoffTry struct {
	At  time.Time `json:"at"`
	Via string    `json:"via"` // reveal, page
	// Found is what the code was then: opened, expired, replaced.
	Found HandoffState `json:"found"`
	// Alerted says the team was alerted (a second opening is a possible
	// exposure).
	Alerted bool `json:"alerted,omitempty"`
}

// HandoffRef points from a key's state to the latest code made for an
// integration.
type HandoffRef struct {
	RotationID string    `json:"rotation_id"`
	CodeHash   string    `json:"code_hmac"`
	Created    time.Time `json:"created"`
}

// HandoffSalt is the HMAC key of every hand-off code's hash, kept at
// <state_path>/handoffs/salt.
type HandoffSalt struct {
	Salt      string `json:"salt"` // standard base64, SaltLen bytes
	Algorithm string `json:"algorithm"`
}

// NewHandoffSalt returns a fresh random salt and its record.
func NewHandoffSalt() ([]byte, HandoffSalt, error) {
	salt, b64, err := newSalt("hand-off")
	if err != nil {
		return nil, HandoffSalt{}, err
	}
	return salt, HandoffSalt{Salt: b64, Algorithm: HashAlgorithm}, nil
}

// Bytes returns the salt; an error when the record holds none usable.
func (s HandoffSalt) Bytes() ([]byte, error) { return saltBytes("hand-off code", s.Algorithm, s.Salt) }

// Identity is which Action Network group or list a key belongs to, as
// the wrong-group guard keeps it: each tag identifier hashed under Salt
// (package actionnetwork's HashIdentity), never the identifiers.
type Identity struct {
	Salt      string `json:"salt"` // standard base64
	Algorithm string `json:"algorithm"`
	// Fingerprint is the version the identity was read with.
	Fingerprint string `json:"fingerprint"`
	// Hashes is empty when the identity could not be told (no tags, or
	// the read failed); Reason says why.
	Hashes     []string  `json:"hashes,omitempty"`
	Reason     string    `json:"reason,omitempty"`
	At         time.Time `json:"at"`
	RotationID string    `json:"rotation_id,omitempty"`
	// Inherited says Hashes were read with the version this one replaced
	// (the new one's could not be read, and its group was taken as
	// unchanged).
	Inherited bool `json:"inherited,omitempty"`
}
