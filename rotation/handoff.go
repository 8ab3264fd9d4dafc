package rotation

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/integrations"
	"github.com/rekey-dev/rekey/notifiers"
	"github.com/rekey-dev/rekey/records"
	"github.com/rekey-dev/rekey/secret"
	"github.com/rekey-dev/rekey/state"
	"github.com/rekey-dev/rekey/vaultstore"
)

// Hand-offs: a manual integration with `handoff: {ttl: ...}` gets, once
// the new key is stored, a hand-off code for its owner alone: a Vault
// response-wrapping token that opens the key once, within ttl. The code
// goes to the owner by a Slack direct message, or is printed on the
// operator's terminal to pass on (a Courier decides); it is never posted
// to the shared channel, logged, recorded or put in JSON. rekey records
// the token's accessor and a keyed hash of the code (records.Handoff), so
// that a code presented again, even a dead one, is known: a second
// opening is a possible exposure, alerted at once.
//
// A hand-off that cannot be made (Vault refuses to wrap, Slack refuses
// the message) never fails the rotation: the integration stays pending,
// and the reason says why; `rekey resume` tries again.

// Code is a hand-off code. It prints as a placeholder for every verb and
// encoding; Reveal, for the wire only, gives its value.
type Code struct{ v string }

// NewCode wraps a code as read (white space around it trimmed).
func NewCode(s string) Code { return Code{v: strings.TrimSpace(s)} }

// Reveal returns the code. Call it only to send it where it goes (Vault,
// the owner's direct message, the operator's terminal).
func (c Code) Reveal() string { return c.v }

// IsZero reports whether the code is empty.
func (c Code) IsZero() bool { return c.v == "" }

const codeShown = "<hand-off code>"

func (c Code) String() string               { return codeShown }
func (c Code) GoString() string             { return "rotation.Code(" + codeShown + ")" }
func (c Code) Format(f fmt.State, _ rune)   { fmt.Fprint(f, codeShown) }
func (c Code) LogValue() slog.Value         { return slog.StringValue(codeShown) }
func (c Code) MarshalJSON() ([]byte, error) { return []byte(`"` + codeShown + `"`), nil }
func (c Code) MarshalText() ([]byte, error) { return []byte(codeShown), nil }

func codeHash(salt []byte, code string) string {
	m := hmac.New(sha256.New, salt)
	m.Write([]byte(code))
	return hex.EncodeToString(m.Sum(nil))
}

// Wrapper is what hand-off codes need of Vault's response wrapping;
// *vaultstore.Store is one, and *vaultstore.Opener one that can only open
// codes (it holds no Vault token).
type Wrapper interface {
	// Wrap has Vault wrap data for ttl and returns the wrapping token (the
	// code), its accessor, and when it was made.
	Wrap(ctx context.Context, data map[string]string, ttl time.Duration) (token, accessor string, created time.Time, err error)
	// Unwrap opens a code once, with no other token. A code used,
	// expired or never issued is failure.ErrNotFound (Vault cannot tell
	// them apart).
	Unwrap(ctx context.Context, code string) (map[string]string, error)
	// LookupToken says, without opening it, when a code was made and for
	// how long; failure.ErrNotFound as Unwrap.
	LookupToken(ctx context.Context, code string) (created time.Time, ttl time.Duration, err error)
	// LookupAccessor says when the code with this accessor expires,
	// without the code; failure.ErrNotFound once it is used or expired.
	LookupAccessor(ctx context.Context, accessor string) (expires time.Time, err error)
}

// HandoffRecords is where hand-off codes are recorded, by a keyed hash of
// the code; *vaultstore.Store is one.
type HandoffRecords interface {
	// HandoffSalt is the key of the codes' hash (made the first time).
	HandoffSalt(ctx context.Context) ([]byte, error)
	// Handoff reads a code's record; failure.ErrNotFound when none.
	Handoff(ctx context.Context, hash string) (*records.Handoff, error)
	// CreateHandoff writes a new code's record.
	CreateHandoff(ctx context.Context, h *records.Handoff) error
	// UpdateHandoff applies change with check-and-set, retrying on
	// conflict; nothing is written when change reports no change.
	UpdateHandoff(ctx context.Context, hash string, change func(*records.Handoff) bool) (*records.Handoff, error)
}

var (
	_ Wrapper        = (*vaultstore.Store)(nil)
	_ Wrapper        = (*vaultstore.Opener)(nil)
	_ HandoffRecords = (*vaultstore.Store)(nil)
)

// Courier gives a hand-off code to the one person it is for.
type Courier interface {
	// Deliver gives d.Code to d.Owner alone and says how ("slack-dm",
	// "terminal"). An error means nobody got it. The error never holds
	// the code.
	Deliver(ctx context.Context, d Delivery) (via string, err error)
}

// Delivery is one code for its owner, with what they need to use it.
type Delivery struct {
	KeyID        string
	Integration  string
	Owner        string
	Instructions string
	Fingerprint  string // of the key the code opens
	Code         Code
	Expires      time.Time
	// Page is <serve.public_url>/handoff#<code> when public_url is set:
	// the code travels in the fragment, which no request carries.
	Page string
}

// Handoffs is what an engine needs to make, open and follow hand-off
// codes. Records may be nil (`rekey reveal` without a Vault token of its
// own): codes are then opened, but nothing is recorded or alerted.
type Handoffs struct {
	Vault   Wrapper
	Records HandoffRecords
	// Courier delivers new codes; nil means none can be made.
	Courier Courier
	// PublicURL is serve.public_url: where hand-off pages are reached.
	PublicURL string
	// Learn is told each code made or presented before any text that
	// could quote it is printed, logged, posted or recorded
	// (secret.Redactor.Add).
	Learn func(string)

	mu   sync.Mutex
	salt []byte
}

func (h *Handoffs) learn(s string) {
	if h.Learn != nil && s != "" {
		h.Learn(s)
	}
}

// hashOf returns the keyed hash of code under the records' salt; an error
// when there are no records, or the salt cannot be read.
func (h *Handoffs) hashOf(ctx context.Context, code Code) (string, error) {
	if h.Records == nil {
		return "", errors.New("hand-offs: no records to look the code up in")
	}
	h.mu.Lock()
	salt := h.salt
	h.mu.Unlock()
	if salt == nil {
		s, err := h.Records.HandoffSalt(ctx)
		if err != nil {
			return "", err
		}
		h.mu.Lock()
		h.salt, salt = s, s
		h.mu.Unlock()
	}
	return codeHash(salt, code.v), nil
}

// payloadKind marks what rekey wraps, so that a code that opens to
// something else is not taken for a hand-off.
const payloadKind = "rekey-handoff/1"

// handoffTTL says whether t wants a hand-off, and its ttl.
func handoffTTL(t Target) (time.Duration, bool) {
	ho, ok := t.Integration.(interface{ HandoffTTL() time.Duration })
	if !ok {
		return 0, false
	}
	ttl := ho.HandoffTTL()
	return ttl, ttl > 0
}

// HasHandoff reports whether some target of targets wants a hand-off.
func HasHandoff(targets []Target) bool {
	for _, t := range targets {
		if _, ok := handoffTTL(t); ok {
			return true
		}
	}
	return false
}

// handOff makes and delivers t's hand-off code for key, once the key is
// stored, and returns what to tell about it (to add to the integration's
// reason and the owner's message): "" when t has no hand-off. It never
// fails the rotation. A code still usable from an earlier run of the same
// rotation (resume) is not made again.
func (e *Engine) handOff(ctx context.Context, job Job, t Target, key secret.Key, rotationID string) string {
	ttl, ok := handoffTTL(t)
	if !ok {
		return ""
	}
	h := e.Handoffs
	if h == nil || h.Vault == nil || h.Records == nil || h.Courier == nil {
		return "no hand-off code was made: this run cannot make one"
	}
	id := t.Config.ID
	log := e.logger().With("key", job.Key.ID, "integration", id)
	if note, done := e.earlierHandoff(ctx, job.Key.ID, id, rotationID); done {
		return note
	}
	owner, instructions := t.Config.Owner, t.Config.Instructions
	if m, ok := t.Integration.(integrations.Manual); ok {
		owner, instructions = m.Person()
	}
	fp := key.Fingerprint()
	token, accessor, created, err := h.Vault.Wrap(ctx, map[string]string{
		"rekey": payloadKind, "api_key": key.Reveal(),
		"key": job.Key.ID, "integration": id, "rotation": rotationID, "fingerprint": fp,
		"owner": owner, "instructions": instructions,
	}, ttl)
	if err != nil {
		log.Info("no hand-off code: Vault did not wrap the key", "err", e.redact(err.Error()))
		return "no hand-off code: Vault did not wrap the key (" + e.redact(err.Error()) + "); run `rekey resume " + job.Key.ID + "` to try again"
	}
	h.learn(token)
	code := NewCode(token)
	expires := created.Add(ttl)
	hash, err := h.hashOf(ctx, code)
	rec := &records.Handoff{
		CodeHash: hash, Accessor: accessor, KeyID: job.Key.ID, RotationID: rotationID, Integration: id,
		Fingerprint: fp, Owner: owner, Created: created, Expires: expires,
	}
	if err == nil {
		err = h.Records.CreateHandoff(ctx, rec)
	}
	if err != nil {
		// A code rekey has no record of is never handed out.
		e.destroy(ctx, code, log)
		log.Info("no hand-off code: it could not be recorded", "err", e.redact(err.Error()))
		return "no hand-off code: it could not be recorded in Vault (" + e.redact(err.Error()) + "); run `rekey resume " + job.Key.ID + "` to try again"
	}
	if err := e.Store.UpdateKeyState(context.WithoutCancel(ctx), job.Key.ID, func(st *records.KeyState) {
		if st.Handoffs == nil {
			st.Handoffs = map[string]records.HandoffRef{}
		}
		st.Handoffs[id] = records.HandoffRef{RotationID: rotationID, CodeHash: hash, Created: created}
	}); err != nil {
		log.Warn("the hand-off code's record is not linked from the key's state; status will not show it", "err", e.redact(err.Error()))
	}
	d := Delivery{KeyID: job.Key.ID, Integration: id, Owner: owner, Instructions: instructions, Fingerprint: fp, Code: code, Expires: expires}
	if h.PublicURL != "" {
		d.Page = strings.TrimRight(h.PublicURL, "/") + "/handoff#" + code.Reveal()
	}
	via, derr := h.Courier.Deliver(ctx, d)
	now := e.now()
	if derr != nil {
		e.destroy(ctx, code, log)
		why := e.redact(derr.Error())
		e.updateHandoff(ctx, hash, func(r *records.Handoff) bool { r.NotSent = why; return true }, log)
		log.Info("hand-off code not delivered; destroyed", "err", why)
		return "no hand-off code: it could not be delivered to " + owner + " (" + why + "); run `rekey resume " + job.Key.ID + "` to try again"
	}
	e.updateHandoff(ctx, hash, func(r *records.Handoff) bool { r.Delivery, r.Sent = via, now; return true }, log)
	log.Info("hand-off code delivered", "via", via, "expires", expires)
	return "a one-time hand-off code was " + deliveryWords(via, owner) + " (it works once, until " + expires.Format(time.RFC3339) + ")"
}

// earlierHandoff looks for a code made for integration by an earlier run of
// rotationID, and reports whether it stands (no new code is to be made),
// with what to say of it.
func (e *Engine) earlierHandoff(ctx context.Context, keyID, integration, rotationID string) (string, bool) {
	st, _, err := e.Store.KeyState(ctx, keyID)
	if err != nil || st == nil {
		return "", false
	}
	ref, ok := st.Handoffs[integration]
	if !ok || ref.RotationID != rotationID {
		return "", false
	}
	prev, err := e.Handoffs.Records.Handoff(ctx, ref.CodeHash)
	if err != nil {
		return "", false
	}
	hs := e.handoffStatus(ctx, prev)
	switch hs.State {
	case records.HandoffOpened, records.HandoffTriedTwice:
		return "the hand-off code was opened at " + hs.when() + "; waiting for " + prev.Owner + " to paste the key and confirm", true
	case records.HandoffUnopened:
		return "the hand-off code " + deliveryWords(prev.Delivery, prev.Owner) + " at " + prev.Sent.Format(time.RFC3339) +
			" is still unopened (it works until " + prev.Expires.Format(time.RFC3339) + "); no new one was made", true
	}
	return "", false // expired or never sent: a new one
}

func deliveryWords(via, owner string) string {
	switch via {
	case "slack-dm":
		return "sent to " + owner + " by Slack direct message"
	case "terminal":
		return "printed on the operator's terminal, to pass on to " + owner
	}
	return "sent to " + owner
}

// destroy opens a code nobody will get, so that it opens nothing more.
func (e *Engine) destroy(ctx context.Context, code Code, log *slog.Logger) {
	if _, err := e.Handoffs.Vault.Unwrap(context.WithoutCancel(ctx), code.Reveal()); err != nil && !errors.Is(err, failure.ErrNotFound) {
		log.Error("could not destroy an undelivered hand-off code; it expires by itself", "err", e.redact(err.Error()))
	}
}

func (e *Engine) updateHandoff(ctx context.Context, hash string, change func(*records.Handoff) bool, log *slog.Logger) *records.Handoff {
	r, err := e.Handoffs.Records.UpdateHandoff(context.WithoutCancel(ctx), hash, change)
	if err != nil {
		log.Warn("could not update the hand-off record", "err", e.redact(err.Error()))
	}
	return r
}

// HandoffStatus is where one manual integration's latest hand-off code
// stands, as `status` and `audit` show it.
type HandoffStatus struct {
	Integration string               `json:"integration"`
	State       records.HandoffState `json:"state"`
	Owner       string               `json:"owner,omitempty"`
	RotationID  string               `json:"rotation_id,omitempty"`
	Delivery    string               `json:"delivery,omitempty"`
	Sent        *time.Time           `json:"sent,omitempty"`
	Expires     time.Time            `json:"expires"`
	// Opened is when the code was opened, when rekey can tell; OpenedVia
	// how ("reveal", "page", or "outside rekey" when Vault says it is
	// gone before its time and rekey did not open it).
	Opened    *time.Time `json:"opened,omitempty"`
	OpenedVia string     `json:"opened_via,omitempty"`
	Confirmed *time.Time `json:"confirmed,omitempty"`
	// Tries counts attempts to open it again once it was opened.
	Tries  int    `json:"tries,omitempty"`
	Detail string `json:"detail"`
}

func (s HandoffStatus) when() string {
	if s.Opened == nil {
		return "a time rekey could not see"
	}
	return s.Opened.Format(time.RFC3339)
}

// HandoffStatuses says where the latest hand-off code of each of job's manual
// integrations with a hand-off stands. A code rekey has no record of is
// "not-sent".
func (e *Engine) HandoffStatuses(ctx context.Context, job Job) []HandoffStatus {
	var out []HandoffStatus
	var st *records.KeyState
	for _, t := range job.Targets {
		if _, ok := handoffTTL(t); !ok {
			continue
		}
		if st == nil {
			var err error
			if st, _, err = e.Store.KeyState(ctx, job.Key.ID); err != nil {
				st = &records.KeyState{}
			}
		}
		hs := HandoffStatus{Integration: t.Config.ID, State: records.HandoffNotSent, Owner: t.Config.Owner, Detail: "no hand-off code made yet"}
		if ref, ok := st.Handoffs[t.Config.ID]; ok && e.Handoffs != nil && e.Handoffs.Records != nil {
			if rec, err := e.Handoffs.Records.Handoff(ctx, ref.CodeHash); err == nil {
				hs = e.handoffStatus(ctx, rec)
			} else {
				hs.Detail = "its record could not be read: " + e.redact(err.Error())
			}
		}
		out = append(out, hs)
	}
	return out
}

// handoffStatus works out where the code of rec stands: from the record,
// and, for a code rekey has not seen opened, from Vault by its accessor.
func (e *Engine) handoffStatus(ctx context.Context, rec *records.Handoff) HandoffStatus {
	hs := HandoffStatus{Integration: rec.Integration, Owner: rec.Owner, RotationID: rec.RotationID, Delivery: rec.Delivery, Expires: rec.Expires, Tries: len(rec.Tries)}
	if !rec.Sent.IsZero() {
		t := rec.Sent
		hs.Sent = &t
	}
	if !rec.Opened.IsZero() {
		t := rec.Opened
		hs.Opened, hs.OpenedVia = &t, rec.OpenedVia
	}
	if !rec.Confirmed.IsZero() {
		t := rec.Confirmed
		hs.Confirmed = &t
	}
	now := e.now()
	switch {
	case rec.NotSent != "":
		hs.State, hs.Detail = records.HandoffNotSent, "not sent: "+rec.NotSent
	case len(rec.Tries) > 0 && !rec.Opened.IsZero():
		hs.State = records.HandoffTriedTwice
		last := rec.Tries[len(rec.Tries)-1]
		hs.Detail = fmt.Sprintf("opened at %s via %s, then tried again %s (last at %s via %s): a possible exposure",
			rec.Opened.Format(time.RFC3339), viaWords(rec.OpenedVia), times(len(rec.Tries)), last.At.Format(time.RFC3339), viaWords(last.Via))
	case !rec.Opened.IsZero():
		hs.State, hs.Detail = records.HandoffOpened, "opened at "+rec.Opened.Format(time.RFC3339)+" via "+viaWords(rec.OpenedVia)
		if !rec.Confirmed.IsZero() {
			hs.Detail += "; pasted, confirmed at " + rec.Confirmed.Format(time.RFC3339)
		}
	case rec.Sent.IsZero():
		hs.State, hs.Detail = records.HandoffNotSent, "made but not delivered (the run stopped before it was)"
	case !now.Before(rec.Expires):
		hs.State, hs.Detail = records.HandoffExpired, "expired unopened at "+rec.Expires.Format(time.RFC3339)
		if len(rec.Tries) > 0 {
			hs.Detail += "; tried " + times(len(rec.Tries)) + " since"
		}
	default:
		hs.State, hs.Detail = records.HandoffUnopened, deliveryWords(rec.Delivery, rec.Owner)+" at "+rec.Sent.Format(time.RFC3339)+", unopened; it works until "+rec.Expires.Format(time.RFC3339)
		if e.Handoffs == nil || e.Handoffs.Vault == nil {
			break
		}
		_, err := e.Handoffs.Vault.LookupAccessor(ctx, rec.Accessor)
		switch {
		case errors.Is(err, failure.ErrNotFound):
			hs.State, hs.OpenedVia = records.HandoffOpened, "outside rekey"
			hs.Detail = "opened where rekey could not see it (Vault says the code is used, before its time): by `rekey reveal` without a Vault token, or by something else"
		case err != nil:
			hs.Detail += " (as far as rekey's records go: Vault could not be asked: " + e.redact(err.Error()) + ")"
		}
	}
	return hs
}

func times(n int) string {
	switch n {
	case 1:
		return "once"
	case 2:
		return "twice"
	}
	return fmt.Sprintf("%d times", n)
}

func viaWords(via string) string {
	switch via {
	case "page":
		return "the hand-off page"
	case "reveal":
		return "`rekey reveal`"
	}
	return via
}

// Opened is what a hand-off code opened to: the key, and what its holder
// needs to know to use it.
type Opened struct {
	Key          secret.Key
	KeyID        string
	Integration  string
	RotationID   string
	Fingerprint  string
	Owner        string
	Instructions string
}

// CodeRefusal is why a code did not open.
type CodeRefusal string

const (
	CodeExpired  CodeRefusal = "expired"
	CodeUsed     CodeRefusal = "already opened"
	CodeNotValid CodeRefusal = "not valid"
)

// CodeError says why a hand-off code did not open. Its message names the
// integration and key when rekey knows them, never the code.
type CodeError struct {
	Why    CodeRefusal
	Record *records.Handoff // nil when rekey has no record of the code
	// Alerted says the team was alerted (a second opening).
	Alerted bool
	msg     string
}

func (e *CodeError) Error() string { return e.msg }

// Reveal opens code once, with Vault (no Vault token but the code), and
// records when and how (via: "reveal" or "page"). A code that no longer
// opens is a *CodeError: expired, or already opened, in which case this
// is a second attempt, a possible exposure: the team is alerted (urgent,
// naming the integration and the key's fingerprint) and the attempt is
// recorded. Other errors mean Vault could not be asked.
func (e *Engine) Reveal(ctx context.Context, code Code, via string) (*Opened, error) {
	h := e.Handoffs
	if h == nil || h.Vault == nil {
		return nil, errors.New("hand-offs: no Vault to open the code with")
	}
	h.learn(code.Reveal())
	if code.IsZero() {
		return nil, &CodeError{Why: CodeNotValid, msg: "the hand-off code is empty"}
	}
	data, err := h.Vault.Unwrap(ctx, code.Reveal())
	if errors.Is(err, failure.ErrNotFound) {
		return nil, e.deadCode(ctx, code, via)
	}
	if err != nil {
		return nil, fmt.Errorf("could not open the hand-off code: %w", err)
	}
	if data["rekey"] != payloadKind || data["api_key"] == "" {
		return nil, &CodeError{Why: CodeNotValid, msg: "the code opened, but to something that is not a rekey hand-off: nothing is shown"}
	}
	h.learn(data["api_key"]) // shown to the code's holder alone; redacted anywhere else
	key := secret.New(data["api_key"])
	o := &Opened{
		Key: key, KeyID: data["key"], Integration: data["integration"], RotationID: data["rotation"],
		Fingerprint: key.Fingerprint(), Owner: data["owner"], Instructions: data["instructions"],
	}
	log := e.logger().With("key", o.KeyID, "integration", o.Integration)
	if hash, err := h.hashOf(ctx, code); err == nil {
		now := e.now()
		e.updateHandoff(ctx, hash, func(r *records.Handoff) bool {
			if !r.Opened.IsZero() {
				return false
			}
			r.Opened, r.OpenedVia = now, via
			return true
		}, log)
	} else if h.Records != nil {
		log.Warn("the opening of a hand-off code could not be recorded", "err", e.redact(err.Error()))
	}
	log.Info("hand-off code opened", "via", via, "fingerprint", o.Fingerprint)
	return o, nil
}

// deadCode says why code, which Vault no longer opens, did not open, from
// rekey's record of it; a code that was opened before is alerted.
func (e *Engine) deadCode(ctx context.Context, code Code, via string) error {
	h := e.Handoffs
	hash, err := h.hashOf(ctx, code)
	var rec *records.Handoff
	if err == nil {
		rec, err = h.Records.Handoff(ctx, hash)
	}
	if err != nil {
		msg := "the hand-off code is not valid: it expired, was already opened, or was never issued"
		if !errors.Is(err, failure.ErrNotFound) {
			msg += " (rekey's records, which would say which, could not be read: " + e.redact(err.Error()) + ")"
		}
		return &CodeError{Why: CodeNotValid, msg: msg}
	}
	now := e.now()
	what := fmt.Sprintf("the hand-off code for %s (key %s, %s)", rec.Integration, rec.KeyID, rec.Fingerprint)
	switch {
	case rec.Opened.IsZero() && !now.Before(rec.Expires):
		e.updateHandoff(ctx, hash, func(r *records.Handoff) bool {
			r.Tries = append(r.Tries, records.HandoffTry{At: now, Via: via, Found: records.HandoffExpired})
			return true
		}, e.logger())
		return &CodeError{Why: CodeExpired, Record: rec, msg: fmt.Sprintf("%s expired at %s, unopened; ask the operator for a new one (`rekey resume %s`)", what, rec.Expires.Format(time.RFC3339), rec.KeyID)}
	case rec.NotSent != "":
		return &CodeError{Why: CodeNotValid, Record: rec, msg: what + " was never delivered and no longer opens; ask the operator for a new one (`rekey resume " + rec.KeyID + "`)"}
	}
	// Opened before (by rekey, or where rekey could not see): this is a
	// second attempt. Whoever holds the code may hold the key.
	first := "at a time rekey could not see (not by rekey)"
	if !rec.Opened.IsZero() {
		first = "at " + rec.Opened.Format(time.RFC3339) + " via " + viaWords(rec.OpenedVia)
	}
	ev := notifiers.Event{
		Kind: notifiers.LeakAlert, Urgent: true, KeyID: rec.KeyID, RotationID: rec.RotationID,
		Fingerprint: rec.Fingerprint, Owner: rec.Owner,
		Title: fmt.Sprintf("Possible exposure of %s: the hand-off code for %s was used twice", rec.KeyID, rec.Integration),
		Text: fmt.Sprintf("The one-time code that opens %s (%s) for %s was opened %s, and someone tried to open it again at %s via %s. "+
			"If %s did not do both, someone else may hold the key: run `rekey leak %s`.",
			rec.KeyID, rec.Fingerprint, rec.Integration, first, now.Format(time.RFC3339), viaWords(via), orUnknown(rec.Owner), rec.KeyID),
		Integrations: []notifiers.Integration{{ID: rec.Integration, Type: "manual", State: state.Pending, Owner: rec.Owner,
			Reason: "hand-off code used twice: possible exposure"}},
	}
	if e.Store != nil {
		if r, err := e.Store.Rotation(ctx, rec.KeyID, rec.RotationID); err == nil {
			e.resumeThread(r) // the alert goes in the rotation's thread, and to the channel
		}
	}
	alerted := e.Notifier != nil
	e.notify(ctx, ev)
	e.logger().Info("hand-off code used twice: possible exposure", "key", rec.KeyID, "integration", rec.Integration, "fingerprint", rec.Fingerprint, "via", via)
	e.updateHandoff(ctx, hash, func(r *records.Handoff) bool {
		r.Tries = append(r.Tries, records.HandoffTry{At: now, Via: via, Found: records.HandoffOpened, Alerted: alerted})
		return true
	}, e.logger())
	return &CodeError{Why: CodeUsed, Record: rec, Alerted: alerted,
		msg: fmt.Sprintf("%s was already opened %s: it opens once. A second attempt may mean someone else holds the key; the team has been alerted", what, first)}
}

func orUnknown(s string) string {
	if s == "" {
		return "its owner"
	}
	return s
}

// CodeInfo is what the hand-off page shows of a code before it is opened.
type CodeInfo struct {
	KeyID       string               `json:"key"`
	Integration string               `json:"integration"`
	Fingerprint string               `json:"fingerprint"`
	Owner       string               `json:"owner,omitempty"`
	Expires     time.Time            `json:"expires"`
	State       records.HandoffState `json:"state"`
	Detail      string               `json:"detail"`
}

// LookupCode says, without opening code, which key and integration it is
// for and whether it still opens: Vault's sys/wrapping/lookup, and rekey's
// record of the code by its keyed hash. A code rekey has no record of is
// a *CodeError.
func (e *Engine) LookupCode(ctx context.Context, code Code) (*CodeInfo, error) {
	h := e.Handoffs
	if h == nil || h.Vault == nil || h.Records == nil {
		return nil, errors.New("hand-offs: no Vault to look the code up in")
	}
	h.learn(code.Reveal())
	_, _, lerr := h.Vault.LookupToken(ctx, code.Reveal())
	if lerr != nil && !errors.Is(lerr, failure.ErrNotFound) {
		return nil, fmt.Errorf("could not look the hand-off code up: %w", lerr)
	}
	hash, err := h.hashOf(ctx, code)
	if err != nil {
		return nil, fmt.Errorf("could not look the hand-off code up: %w", err)
	}
	rec, err := h.Records.Handoff(ctx, hash)
	if errors.Is(err, failure.ErrNotFound) {
		return nil, &CodeError{Why: CodeNotValid, msg: "rekey issued no such hand-off code"}
	}
	if err != nil {
		return nil, fmt.Errorf("could not look the hand-off code up: %w", err)
	}
	info := &CodeInfo{KeyID: rec.KeyID, Integration: rec.Integration, Fingerprint: rec.Fingerprint, Owner: rec.Owner, Expires: rec.Expires}
	hs := e.handoffStatus(ctx, rec)
	info.State, info.Detail = hs.State, hs.Detail
	if lerr == nil {
		info.State, info.Detail = records.HandoffUnopened, "it opens once, until "+rec.Expires.Format(time.RFC3339)
	} else if hs.State == records.HandoffUnopened {
		info.State = records.HandoffOpened // Vault says it is gone
	}
	return info, nil
}

// ConfirmByCode records, for the holder of code (opened before, on the
// hand-off page or with `rekey reveal`), that the key was pasted, as
// `rekey confirm` would: the integration's probe runs, and the rotation's
// thread is told. jobs are the configured keys.
func (e *Engine) ConfirmByCode(ctx context.Context, jobs []Job, code Code) (Result, error) {
	h := e.Handoffs
	if h == nil || h.Records == nil {
		return Result{}, errors.New("hand-offs: no records to confirm against")
	}
	h.learn(code.Reveal())
	hash, err := h.hashOf(ctx, code)
	if err != nil {
		return Result{}, err
	}
	rec, err := h.Records.Handoff(ctx, hash)
	if errors.Is(err, failure.ErrNotFound) {
		return Result{}, &CodeError{Why: CodeNotValid, msg: "rekey issued no such hand-off code"}
	}
	if err != nil {
		return Result{}, err
	}
	if rec.Opened.IsZero() {
		return Result{}, &CodeError{Why: CodeNotValid, Record: rec, msg: "the hand-off code has not been opened: reveal the key first"}
	}
	for _, job := range jobs {
		if job.Key.ID != rec.KeyID {
			continue
		}
		for _, t := range job.Targets {
			if t.Config.ID != rec.Integration {
				continue
			}
			res, err := e.Confirm(ctx, job, t, "pasted, confirmed on the hand-off page")
			if err != nil {
				return res, err
			}
			now := e.now()
			e.updateHandoff(ctx, hash, func(r *records.Handoff) bool {
				if !r.Confirmed.IsZero() {
					return false
				}
				r.Confirmed = now
				return true
			}, e.logger())
			return res, nil
		}
	}
	return Result{}, fmt.Errorf("integration %s of key %s is no longer configured", rec.Integration, rec.KeyID)
}
