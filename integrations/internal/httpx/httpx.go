// Package httpx holds what the HTTP-speaking integration types share: a
// client that keeps credentials on their host, and the classification of
// transport errors.
package httpx

import (
	"context"
	"net/http"

	"github.com/rekey-dev/rekey/internal/neterr"
)

// ErrRedirect is a redirect that was not followed.
var ErrRedirect = neterr.ErrRedirect

// Client copies base (nil means a zero http.Client) and refuses redirects
// that leave the host or scheme, or change the method: credentials are
// never sent to another host, and a PUT is never turned into a GET. The
// refusal names neither the redirect's host nor its URL: the peer chose
// them, and may have put what the request carried into them.
func Client(base *http.Client) *http.Client {
	c := &http.Client{}
	if base != nil {
		*c = *base
	}
	c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		first := via[0]
		switch {
		case req.URL.Host != first.URL.Host || req.URL.Scheme != first.URL.Scheme:
			return neterr.Refuse("to another host")
		case req.Method != first.Method:
			return neterr.Refuse("that turns " + first.Method + " into " + req.Method)
		case len(via) >= 5:
			return neterr.Refuse("after 5 redirects")
		}
		return nil
	}
	return c
}

// TransportError classifies an error from http.Client.Do and prefixes it
// with what (see package neterr): it keeps context errors as they are,
// calls a refused or malformed redirect or a certificate that does not
// verify invalid, and everything else (refused connections, resets,
// timeouts, malformed answers) transient. None of the error's own text is
// kept: it can quote the answer, the redirect's host, or the URL (which
// may hold a value from the environment).
func TransportError(ctx context.Context, what string, err error) error {
	return neterr.Wrap(ctx, what, err)
}
