// Package neterr describes a failed HTTP round trip in rekey's own words.
//
// The text of an error from net/http can quote bytes the peer chose: the
// status line (`malformed HTTP response "<line>"`), a header line
// (`malformed MIME header: missing colon: "<line>"`), a Location value
// (`failed to parse Location header "<value>"`), the host of a redirect, a
// DNS name, an HTTP/2 GOAWAY's debug data. A peer that echoes the request
// would thereby put the key or a token it carried into an error, and from
// there into the terminal, Slack and Vault. So no text of such an error is
// ever kept: Describe gives a fixed description of its class (connection
// refused, timeout, malformed response, TLS handshake failed, redirect
// refused, ...), and Error builds the error from what rekey knows (the
// request as configured) and that description.
//
// It imports nothing of rekey's but package failure.
package neterr

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"net/url"
	"strings"
	"syscall"

	"github.com/rekey-dev/rekey/failure"
)

// ErrRedirect is a redirect that a client of rekey refused to follow.
var ErrRedirect = errors.New("redirect refused")

// RedirectError is a refused redirect. Why is fixed text from rekey's
// code ("to another host"), never the redirect's URL or host.
type RedirectError struct{ Why string }

func (e *RedirectError) Error() string { return "redirect refused: " + e.Why }

func (e *RedirectError) Unwrap() error { return ErrRedirect }

// Refuse returns the error a CheckRedirect func returns to refuse a
// redirect; why must be fixed text.
func Refuse(why string) error { return &RedirectError{Why: why} }

// Descriptions, fixed.
const (
	Cancelled        = "cancelled"
	Timeout          = "timeout"
	Refused          = "connection refused"
	Reset            = "connection reset"
	Closed           = "connection closed before a complete response"
	Unreachable      = "host unreachable"
	NetUnreachable   = "network unreachable"
	HostNotFound     = "DNS: host not found"
	DNSFailed        = "DNS lookup failed"
	Malformed        = "malformed response"
	MalformedHTTP2   = "malformed response (HTTP/2 protocol error)"
	BadRedirect      = "malformed redirect (a Location header that does not parse)"
	CertUntrusted    = "TLS certificate not trusted"
	TLSFailed        = "TLS handshake failed"
	NotTLS           = "TLS handshake failed (the server does not speak TLS)"
	PlainHTTP        = "the server answered plain HTTP to an HTTPS request"
	BadScheme        = "unsupported URL scheme"
	RequestFailed    = "request failed"
	redirectFallback = "redirect refused"
)

// Describe says what went wrong with a round trip, from err's types and
// the class of its message, and which failure class it belongs to:
// failure.ErrInvalid for what no retry can fix (a refused or malformed
// redirect, a certificate that does not verify, a scheme net/http does not
// speak), context.Canceled for a cancelled request, failure.ErrTransient
// for the rest. The description never holds any of err's text.
func Describe(err error) (desc string, class error) {
	var (
		re       *RedirectError
		dnsErr   *net.DNSError
		certErr  *tls.CertificateVerificationError
		unknown  x509.UnknownAuthorityError
		hostErr  x509.HostnameError
		invalid  x509.CertificateInvalidError
		recErr   tls.RecordHeaderError
		alertErr tls.AlertError
		proto    textproto.ProtocolError
		netErr   net.Error
	)
	// The message is matched, never kept: net/http's errors for a
	// malformed answer and a bad Location have no type of their own.
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	switch {
	case err == nil:
		return "", nil
	case errors.Is(err, context.Canceled):
		return Cancelled, context.Canceled
	case errors.As(err, &re):
		return "redirect refused: " + re.Why, failure.ErrInvalid
	case errors.Is(err, ErrRedirect):
		return redirectFallback, failure.ErrInvalid
	case strings.Contains(msg, "failed to parse Location header"):
		return BadRedirect, failure.ErrInvalid
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		return Timeout, failure.ErrTransient
	case errors.As(err, &certErr), errors.As(err, &unknown), errors.As(err, &hostErr), errors.As(err, &invalid):
		return CertUntrusted, failure.ErrInvalid
	case errors.As(err, &recErr):
		return NotTLS, failure.ErrTransient
	case errors.As(err, &alertErr), strings.Contains(msg, "tls: "):
		return TLSFailed, failure.ErrTransient
	case strings.Contains(msg, "server gave HTTP response to HTTPS client"):
		return PlainHTTP, failure.ErrTransient
	case errors.As(err, &dnsErr):
		if dnsErr.IsNotFound {
			return HostNotFound, failure.ErrTransient
		}
		return DNSFailed, failure.ErrTransient
	case errors.Is(err, syscall.ECONNREFUSED):
		return Refused, failure.ErrTransient
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.ECONNABORTED), errors.Is(err, syscall.EPIPE):
		return Reset, failure.ErrTransient
	case errors.Is(err, syscall.EHOSTUNREACH):
		return Unreachable, failure.ErrTransient
	case errors.Is(err, syscall.ENETUNREACH):
		return NetUnreachable, failure.ErrTransient
	case errors.As(err, &proto), strings.Contains(msg, "malformed"), strings.Contains(msg, "transfer encoding"),
		strings.Contains(msg, "Content-Length"), strings.Contains(msg, "invalid Trailer"), strings.Contains(msg, "header"):
		return Malformed, failure.ErrTransient
	case strings.Contains(msg, "http2"):
		return MalformedHTTP2, failure.ErrTransient
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed),
		strings.Contains(msg, "server closed idle connection"), strings.Contains(msg, "connection broken"):
		return Closed, failure.ErrTransient
	case strings.Contains(msg, "unsupported protocol scheme"):
		return BadScheme, failure.ErrInvalid
	}
	return RequestFailed, failure.ErrTransient
}

// Error is a failed round trip: what names the request as rekey knows it
// (configured target, method, never a value from the environment), Desc
// says what happened in fixed words, and the error wraps its class (and
// context.DeadlineExceeded for a timeout). None of the cause's text is kept.
type Error struct {
	What    string
	Desc    string
	class   error
	timeout bool
}

func (e *Error) Error() string {
	if e.class == context.Canceled {
		return e.What + ": " + e.Desc
	}
	return e.What + ": " + e.Desc + ": " + e.class.Error()
}

// Unwrap gives the class, and context.DeadlineExceeded for a timeout.
func (e *Error) Unwrap() []error {
	if e.timeout {
		return []error{e.class, context.DeadlineExceeded}
	}
	return []error{e.class}
}

// Wrap classifies an error from http.Client.Do (or any client built on
// it) and prefixes it with what. When ctx has ended, the error says so
// (wrapping ctx.Err()): the request was stopped by rekey, not failed by
// the peer.
func Wrap(ctx context.Context, what string, err error) error {
	if err == nil {
		return nil
	}
	if ctx != nil {
		if cerr := ctx.Err(); cerr != nil {
			return fmt.Errorf("%s: %w", what, cerr)
		}
	}
	desc, class := Describe(err)
	return &Error{What: what, Desc: desc, class: class, timeout: desc == Timeout}
}

// IsTransport reports whether err came from a round trip (a *url.Error
// or a network error) rather than from an answer that arrived.
func IsTransport(err error) bool {
	var ue *url.Error
	var ne net.Error
	var oe *net.OpError
	return errors.As(err, &ue) || errors.As(err, &ne) || errors.As(err, &oe)
}
