// Package httpx holds what the HTTP-speaking integration types share: a
// client that keeps credentials on their host, and the classification of
// transport errors.
package httpx

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/url"

	"github.com/rekey-dev/rekey/failure"
)

// ErrRedirect is a redirect that was not followed.
var ErrRedirect = errors.New("refused a redirect")

// Client copies base (nil means a zero http.Client) and refuses redirects
// that leave the host or scheme, or change the method: credentials are
// never sent to another host, and a PUT is never turned into a GET.
func Client(base *http.Client) *http.Client {
	c := &http.Client{}
	if base != nil {
		*c = *base
	}
	c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		first := via[0]
		switch {
		case req.URL.Host != first.URL.Host || req.URL.Scheme != first.URL.Scheme:
			return fmt.Errorf("%w to another host (%s)", ErrRedirect, req.URL.Host)
		case req.Method != first.Method:
			return fmt.Errorf("%w that turns %s into %s", ErrRedirect, first.Method, req.Method)
		case len(via) >= 5:
			return fmt.Errorf("%w: more than 5 redirects", ErrRedirect)
		}
		return nil
	}
	return c
}

// TransportError classifies an error from http.Client.Do and prefixes it
// with what. It drops *url.Error's copy of the URL (which may hold a value
// from the environment), keeps context errors as they are, calls a refused
// redirect or a certificate that does not verify invalid, and everything
// else (refused connections, resets, timeouts) transient.
func TransportError(ctx context.Context, what string, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("%s: %w", what, ctxErr)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var certErr *tls.CertificateVerificationError
	var unknownCA x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	switch {
	case errors.Is(err, ErrRedirect), errors.As(err, &certErr), errors.As(err, &unknownCA), errors.As(err, &hostErr):
		return fmt.Errorf("%s: %w: %w", what, err, failure.ErrInvalid)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%s: %w", what, err)
	}
	return fmt.Errorf("%s: %w: %w", what, err, failure.ErrTransient)
}
