// Package integrations defines what every integration type provides, the
// errors they classify failures with, and how an integration's state is
// worked out from what it can tell.
//
// An integration type has one required method, Apply. Extra abilities are
// found by type assertion: a Reader can read back the key it holds, a
// Verifier can prove the target works, a Timestamper (a write-only target
// such as a GitHub secret) can say when its copy was last written, and a
// Manual integration needs a person. Before the owner is told to click, a
// Preflighter proves its write path, an Acceptor says whether a key of the
// provider's form fits its target, and a SecretHolder gives the run's
// redactor the credentials it holds. A type that cannot do one of these
// is not forced to pretend.
package integrations

import (
	"context"
	"fmt"
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
//
// Preflight runs before the owner is told to click: whatever it can
// prove about the write path (the target there, the credentials
// accepted, the permission to write, the commands a write runs found)
// it proves, so that nothing it could have found stops the rotation
// after the click. "Without writing" means nothing the target holds
// changes: a type may create and remove a probe of its own beside the
// target (a temporary file or directory next to a file) when that is
// the only way to prove a write would succeed, and says so in its
// documentation. A Reader's Preflight reads too; when ctx carries a
// probe key (WithProbeKey), a read or verify request that needs it is
// sent, and otherwise skipped. The error names the target and what is
// wrong, never a value.
type Preflighter interface {
	Preflight(ctx context.Context) error
}

// Acceptor is an integration whose target cannot hold every key: a
// dotenv file cannot hold one it cannot quote safely, a raw file or a
// command's stdin line one with a line break, an HTTP header one with a
// line break or NUL. Accepts reports, without any I/O, whether Apply
// would refuse key for its shape: nil means the shape is fine (Apply may
// still fail for other reasons); an error wraps failure.ErrInvalid,
// names the target and what the key holds that it cannot take ("a
// backslash", "a line break"), never the key.
//
// The preflight asks every Acceptor before the owner is told to click,
// with keys of the provider's form (see CheckAccepts and secret.Form),
// so that a target that could not take any key the provider issues is
// found while the old key still works; Apply refuses such a key in the
// same words.
type Acceptor interface {
	Accepts(key secret.Key) error
}

// CheckAccepts asks in, when it is an Acceptor, whether it would take
// every key of form f (each of f.Samples()). It returns nil when in is no
// Acceptor or takes them all, else the first refusal, which says what
// the provider's keys look like. The samples are made up, not secrets.
func CheckAccepts(in Integration, f secret.Form) error {
	a, ok := in.(Acceptor)
	if !ok {
		return nil
	}
	for _, k := range f.Samples() {
		if err := a.Accepts(k); err != nil {
			return fmt.Errorf("%w (the provider's keys are %s)", err, f)
		}
	}
	return nil
}

// SecretHolder is an integration that holds secrets of its own beyond
// the values of its *_env settings (which the CLI already knows): a
// kubeconfig's bearer token, the content of a token file, a client
// certificate's private key. Secrets returns them, so that the run's
// secret.Redactor takes them out of every output, error and log line,
// however a peer may have quoted them back. It may read the files that
// hold them; one it cannot read is left out (using it will fail in
// rekey's own words). Empty strings are left out too.
type SecretHolder interface {
	Secrets() []string
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
