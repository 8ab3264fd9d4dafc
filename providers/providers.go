// Package providers checks a key with the provider that issued it.
package providers

import (
	"context"

	"github.com/rekey-dev/rekey/secret"
)

// Validity is what a provider said about a key.
type Validity string

const (
	Valid   Validity = "valid"   // an authenticated request succeeded
	Invalid Validity = "invalid" // the provider refused the key (401, 403)
	Unknown Validity = "unknown" // 429, 5xx, timeout, network: never taken as invalid
)

// Result is a check's outcome with a reason a person can read. The reason
// never holds the key or a response body.
type Result struct {
	Validity Validity
	Reason   string
}

// Checker checks whether a key works with its provider. It honours ctx,
// retries nothing on its own beyond honouring Retry-After within ctx, and
// never returns a response body in Reason.
type Checker interface {
	Check(ctx context.Context, key secret.Key) Result
}

// Former is a provider that says what its keys look like (secret.Form).
// Before the owner is told to click, the preflight asks every
// integrations.Acceptor whether it would take keys of that form, so that
// a target that could not hold the new key is found while the old one
// still works. A provider that cannot say is not a Former.
type Former interface {
	KeyForm() secret.Form
}
