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
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/rekey-dev/rekey/failure"
)

// peer is text a peer chose; no description may hold it.
const peer = "peer-chose-this-0123456789"

func urlErr(err error) error {
	return &url.Error{Op: "Put", URL: "https://" + peer + ".example/?t=" + peer, Err: err}
}

func dial(errno syscall.Errno) error {
	return urlErr(&net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", errno)})
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout " + peer }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func TestDescribe(t *testing.T) {
	cases := []struct {
		name  string
		err   error
		desc  string
		class error
	}{
		{"refused", dial(syscall.ECONNREFUSED), Refused, failure.ErrTransient},
		{"reset", dial(syscall.ECONNRESET), Reset, failure.ErrTransient},
		{"unreachable", dial(syscall.EHOSTUNREACH), Unreachable, failure.ErrTransient},
		{"dns not found", urlErr(&net.OpError{Op: "dial", Err: &net.DNSError{Err: "no such host", Name: peer + ".invalid", IsNotFound: true}}), HostNotFound, failure.ErrTransient},
		{"dns failed", urlErr(&net.OpError{Op: "dial", Err: &net.DNSError{Err: "server misbehaving", Name: peer}}), DNSFailed, failure.ErrTransient},
		{"timeout", urlErr(timeoutErr{}), Timeout, failure.ErrTransient},
		{"deadline", urlErr(context.DeadlineExceeded), Timeout, failure.ErrTransient},
		{"cancelled", urlErr(context.Canceled), Cancelled, context.Canceled},
		{"malformed status", urlErr(fmt.Errorf("net/http: HTTP/1.x transport connection broken: %w", errors.New(`malformed HTTP response "`+peer+`"`))), Malformed, failure.ErrTransient},
		{"malformed header", urlErr(textproto.ProtocolError(`malformed MIME header: missing colon: "` + peer + `"`)), Malformed, failure.ErrTransient},
		{"bad location", urlErr(fmt.Errorf(`failed to parse Location header %q: %v`, peer, errors.New("invalid URL escape"))), BadRedirect, failure.ErrInvalid},
		{"redirect refused", urlErr(Refuse("to another host")), "redirect refused: to another host", failure.ErrInvalid},
		{"unknown CA", urlErr(&tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}), CertUntrusted, failure.ErrInvalid},
		{"not TLS", urlErr(tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake " + peer}), NotTLS, failure.ErrTransient},
		{"plain http", urlErr(errors.New("http: server gave HTTP response to HTTPS client")), PlainHTTP, failure.ErrTransient},
		{"eof", urlErr(io.EOF), Closed, failure.ErrTransient},
		{"http2 goaway", urlErr(errors.New(`http2: server sent GOAWAY and closed the connection; debug="` + peer + `"`)), MalformedHTTP2, failure.ErrTransient},
		{"scheme", urlErr(errors.New(`unsupported protocol scheme "` + peer + `"`)), BadScheme, failure.ErrInvalid},
		{"anything else", urlErr(errors.New(peer)), RequestFailed, failure.ErrTransient},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			desc, class := Describe(c.err)
			if desc != c.desc || class != c.class {
				t.Errorf("Describe = %q, %v; want %q, %v", desc, class, c.desc, c.class)
			}
			err := Wrap(context.Background(), "github: put secret S in repository o/r", c.err)
			if strings.Contains(err.Error(), peer) || strings.Contains(desc, peer) {
				t.Errorf("%q holds the peer's text", err)
			}
			if !errors.Is(err, c.class) {
				t.Errorf("%v does not wrap %v", err, c.class)
			}
			if desc == Timeout && !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("a timeout %v does not wrap context.DeadlineExceeded", err)
			}
			if !strings.HasPrefix(err.Error(), "github: put secret S in repository o/r: "+desc) {
				t.Errorf("error %q", err)
			}
		})
	}
}

func TestWrapSaysTheCallerStopped(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := Wrap(ctx, "http: apply PUT ${URL}", dial(syscall.ECONNRESET))
	if !errors.Is(err, context.Canceled) || err.Error() != "http: apply PUT ${URL}: context canceled" {
		t.Fatalf("Wrap with a cancelled ctx = %v", err)
	}
	if Wrap(context.Background(), "x", nil) != nil {
		t.Fatal("Wrap(nil) is not nil")
	}
	if !errors.Is(Refuse("to another host"), ErrRedirect) {
		t.Fatal("a refusal is not ErrRedirect")
	}
}
