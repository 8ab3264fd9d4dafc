// Package all is the list of providers: it builds the Checker for a
// configured key. It is its own package so that providers/ itself imports
// none of its implementations.
package all

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/rekey-dev/rekey/config"
	"github.com/rekey-dev/rekey/providers"
	"github.com/rekey-dev/rekey/providers/actionnetwork"
	httpprovider "github.com/rekey-dev/rekey/providers/http"
	"github.com/rekey-dev/rekey/providers/none"
	"github.com/rekey-dev/rekey/secret"
)

// Names lists the providers For knows, as config accepts them.
var Names = []string{"actionnetwork", "http", "none"}

// For returns the Checker for key k's provider; never nil. client and
// logger may be nil. Action Network checks share the process-wide per-key
// Limiter. When k's provider fields cannot work (see Validate), the
// Checker answers every check unknown with the problem as its reason:
// call Validate first to report it as a configuration error.
func For(k config.Key, client *http.Client, logger *slog.Logger) providers.Checker {
	c, err := build(k, client, logger)
	if err != nil {
		return misconfigured{err}
	}
	return c
}

// Validate reports, naming the key and the field, why k's provider fields
// cannot work: an unknown provider, a provider_url or verify_url that is
// not an http(s) URL, a header that is not a header name, a valid_status
// that cannot mean a working key.
func Validate(k config.Key) error {
	_, err := build(k, nil, nil)
	return err
}

func build(k config.Key, client *http.Client, logger *slog.Logger) (providers.Checker, error) {
	switch k.Provider {
	case "actionnetwork":
		if k.ProviderURL != "" {
			if err := actionnetwork.ValidateBaseURL(k.ProviderURL); err != nil {
				return nil, fmt.Errorf("providers: key %s: %w", k.ID, err)
			}
		}
		return actionnetwork.New(actionnetwork.Options{
			BaseURL:    k.ProviderURL,
			HTTPClient: client,
			Logger:     logger,
		}), nil
	case "http":
		c, err := httpprovider.New(httpprovider.Options{
			URL:         k.VerifyURL,
			Header:      k.Header,
			ValidStatus: k.ValidStatus,
			HTTPClient:  client,
			Logger:      logger,
		})
		if err != nil {
			return nil, fmt.Errorf("providers: key %s: %w", k.ID, err)
		}
		return c, nil
	case "none":
		return none.New(), nil
	}
	return nil, fmt.Errorf("providers: key %s: unknown provider %q", k.ID, k.Provider)
}

// misconfigured answers unknown: a check that cannot be made proves nothing.
type misconfigured struct{ err error }

var _ providers.Checker = misconfigured{}

func (m misconfigured) Check(context.Context, secret.Key) providers.Result {
	return providers.Result{Validity: providers.Unknown, Reason: m.err.Error()}
}
