// Package integrations defines what every integration type provides, the
// errors they classify failures with, and how an integration's state is
// worked out from what it can tell.
//
// An integration type has one required method, Apply. Extra abilities are
// found by type assertion: a Reader can read back the key it holds, a
// Verifier can prove the target works, a Timestamper (a write-only target
// such as a GitHub secret) can say when its copy was last written, and a
// Manual integration needs a person. A type that cannot do one of these is
// not forced to pretend.
package integrations

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/rekey-dev/rekey/config"
	"github.com/rekey-dev/rekey/internal/sshpool"
	"github.com/rekey-dev/rekey/secret"
	"github.com/rekey-dev/rekey/state"
)

// Integration is one place that holds a copy of a key.
type Integration interface {
	// ID is the integration's id in the configuration.
	ID() string

	// Apply makes the target hold req.Key. It is idempotent: when the target
	// already holds the key it writes nothing and returns Changed false.
	// It honours ctx promptly. A failure is classified by wrapping one of
	// failure.ErrTransient (the engine retries), failure.ErrUnauthorized, failure.ErrNotFound,
	// failure.ErrConflict or failure.ErrInvalid; it may be a *RetryAfterError. Errors name
	// the target, never the key, and never include a response body.
	Apply(ctx context.Context, req ApplyRequest) (ApplyResult, error)
}

// ApplyRequest is what one Apply is given.
type ApplyRequest struct {
	Key        secret.Key
	RotationID string
	// Last is what rekey last recorded writing to this integration, if
	// anything. Write-only targets use it to stay idempotent.
	Last state.Written
}

// ApplyResult says what Apply did.
type ApplyResult struct {
	Changed bool      // false when the target already held the key
	At      time.Time // when the target was written (or found current)
}

// Reader is an integration that can read back the key its target holds.
// A target that holds no key returns an error wrapping failure.ErrNotFound; one
// that cannot be reached wraps failure.ErrTransient.
type Reader interface {
	Read(ctx context.Context) (secret.Key, error)
}

// Verifier is an integration that can prove its target works with the key
// it holds. nil means it works. An error wrapping failure.ErrTransient means the
// probe could not tell (unknown); any other error means it does not work.
type Verifier interface {
	Verify(ctx context.Context) error
}

// Timestamper is a write-only target that can say when its copy was last
// written (a GitHub Actions secret's updated_at).
type Timestamper interface {
	UpdatedAt(ctx context.Context) (time.Time, error)
}

// Manual is an integration that a person updates. Apply only records the
// request; its state is pending until `rekey confirm`.
type Manual interface {
	Person() (owner, instructions string)
}

// Preflighter is an integration that can check, without writing
// anything, that its target is reachable and that rekey is authorised to
// write it (`rekey check` and rotation preflight). Errors are classified
// like Apply's.
type Preflighter interface {
	Preflight(ctx context.Context) error
}

// Remote is an integration whose target is on another host, reached over
// SSH (a file or exec integration with host). Preflight checks the host
// before anything else: reachable, its key trusted, an identity accepted.
// An integration on this machine says Host "".
type Remote interface {
	// Host names the host as configured.
	Host() string
	// CheckHost connects and logs in to the host (or finds the
	// connection already made). A host key rekey does not trust is an
	// error wrapping failure.ErrUnauthorized that names the host and the
	// key's fingerprint.
	CheckHost(ctx context.Context) error
}

// probeKeyCtx is the context key of WithProbeKey.
type probeKeyCtx struct{}

// WithProbeKey returns ctx carrying key: the version an integration is
// expected to hold, which a Reader's or a Verifier's request may
// authenticate with ({{key}} in an http integration's read or verify).
// Observe sets it; a probe that needs it and finds none cannot tell.
func WithProbeKey(ctx context.Context, key secret.Key) context.Context {
	return context.WithValue(ctx, probeKeyCtx{}, key)
}

// ProbeKey returns the key WithProbeKey put in ctx, if any.
func ProbeKey(ctx context.Context) (secret.Key, bool) {
	k, ok := ctx.Value(probeKeyCtx{}).(secret.Key)
	return k, ok && !k.IsZero()
}

// Host is what a factory is given to build an integration.
type Host struct {
	Config *config.Config
	Logger *slog.Logger
	// Getenv reads rekey's environment (token_env fields, ${VAR}).
	Getenv func(string) string
	// HTTPClient is the base client for HTTP-speaking types. Types must
	// not follow redirects to another host with credentials.
	HTTPClient *http.Client
	// SSH reaches other hosts: one connection per host per run, shared
	// by every integration there. Nil when the run has none (tests).
	SSH *sshpool.Pool
}

// Factory builds one integration from its configuration item. It decodes
// the type's fields with Host.Config.DecodeSettings and returns a
// *config.Error for a missing or bad field.
type Factory func(h Host, in config.Integration) (Integration, error)

// RemoteHost resolves the host field of an integration with h.SSH (an
// alias of ~/.ssh/config is looked up there; nothing is connected). A bad
// host is a *config.Error on field host.
func RemoteHost(h Host, in config.Integration, host string) (*sshpool.Host, error) {
	if h.SSH == nil {
		return nil, h.Config.Invalid(in, "host", "this run has no SSH connection pool")
	}
	rh, err := h.SSH.Host(host)
	if err != nil {
		return nil, h.Config.Invalid(in, "host", "%v", err)
	}
	return rh, nil
}
