package sshpool

import (
	"errors"
	"fmt"
	"net"
	"os"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/rekey-dev/rekey/failure"
)

// HostKeyError is a host whose key rekey does not trust: not in
// known_hosts, different from the one there, or revoked. It wraps
// failure.ErrUnauthorized. Nothing is sent to such a host.
type HostKeyError struct {
	Host        string // the host as configured, and what it resolves to
	KeyType     string // ssh-ed25519, ...
	Fingerprint string // SHA256:..., as ssh-keygen -l prints it
	KnownHosts  string // the file consulted
	// Changed: known_hosts holds another key for the host, at Line.
	Changed bool
	Line    int
	Revoked bool
}

func (e *HostKeyError) Error() string {
	switch {
	case e.Revoked:
		return fmt.Sprintf("ssh: %s: host key %s %s is marked @revoked in %s: refused", e.Host, e.KeyType, e.Fingerprint, e.KnownHosts)
	case e.Changed:
		return fmt.Sprintf("ssh: %s: HOST KEY CHANGED: the host offered %s %s, which is not the key %s holds for it (line %d): refused, nothing was sent; if the host's key really changed, replace that line after checking the new fingerprint with the host's administrator",
			e.Host, e.KeyType, e.Fingerprint, e.KnownHosts, e.Line)
	}
	return fmt.Sprintf("ssh: %s: host key %s %s is not in %s: refused, nothing was sent; rekey never adds a host key: check the fingerprint with the host's administrator, then add the host's line (ssh-keyscan) to that file",
		e.Host, e.KeyType, e.Fingerprint, e.KnownHosts)
}

// Unwrap classifies the error.
func (e *HostKeyError) Unwrap() error { return failure.ErrUnauthorized }

// trustCheck is the host key check of one dial.
type trustCheck struct {
	callback   ssh.HostKeyCallback
	algorithms []string
	refused    *HostKeyError // set by callback when it refuses
}

// trust builds the host key check for ep from the known_hosts file. It
// asks the host only for key types known_hosts holds for it, so a host
// with several keys is checked against the one that is there (without
// this, the handshake could pick a type known_hosts lacks and look like a
// changed key).
func (p *Pool) trust(ep *endpoint) (*trustCheck, error) {
	if _, err := os.Stat(p.o.KnownHosts); errors.Is(err, os.ErrNotExist) {
		// No file: no host is trusted. The handshake goes on far enough
		// to name the key the host offers, and refuses it.
		tc := &trustCheck{}
		tc.callback = func(_ string, _ net.Addr, key ssh.PublicKey) error {
			tc.refused = &HostKeyError{Host: ep.describe(), KeyType: key.Type(), Fingerprint: ssh.FingerprintSHA256(key), KnownHosts: p.o.KnownHosts + " (which does not exist)"}
			return tc.refused
		}
		return tc, nil
	} else if err != nil {
		return nil, fmt.Errorf("known_hosts %s: %w: %w", p.o.KnownHosts, unwrapPath(err), failure.ErrUnauthorized)
	}
	cb, err := knownhosts.New(p.o.KnownHosts)
	if err != nil {
		return nil, fmt.Errorf("known_hosts %s: %w: %w", p.o.KnownHosts, unwrapPath(err), failure.ErrInvalid)
	}
	tc := &trustCheck{}
	tc.algorithms = knownAlgorithms(cb, ep.addr())
	tc.callback = func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		err := cb(hostname, remote, key)
		if err == nil {
			return nil
		}
		hk := &HostKeyError{Host: ep.describe(), KeyType: key.Type(), Fingerprint: ssh.FingerprintSHA256(key), KnownHosts: p.o.KnownHosts}
		var ke *knownhosts.KeyError
		var re *knownhosts.RevokedError
		switch {
		case errors.As(err, &re):
			hk.Revoked = true
		case errors.As(err, &ke) && len(ke.Want) > 0:
			hk.Changed, hk.Line = true, ke.Want[0].Line
		case errors.As(err, &ke):
		default:
			return fmt.Errorf("check host key: %w", err)
		}
		tc.refused = hk
		return hk
	}
	return tc, nil
}

// knownAlgorithms lists the host key algorithms for the key types
// known_hosts holds for addr, asking the callback with a key that cannot
// be there (its KeyError lists what is). Nil when it holds none: then the
// host's own choice shows in the refusal.
func knownAlgorithms(cb ssh.HostKeyCallback, addr string) []string {
	probe := probeKey{}
	err := cb(addr, &net.TCPAddr{IP: net.IPv4zero}, probe)
	var ke *knownhosts.KeyError
	if !errors.As(err, &ke) {
		return nil
	}
	var out []string
	seen := map[string]bool{}
	add := func(a ...string) {
		for _, x := range a {
			if !seen[x] {
				seen[x] = true
				out = append(out, x)
			}
		}
	}
	for _, k := range ke.Want {
		switch t := k.Key.Type(); t {
		case ssh.KeyAlgoRSA:
			add(ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA)
		default:
			add(t)
		}
	}
	return out
}

// probeKey is a public key no known_hosts line can hold.
type probeKey struct{}

func (probeKey) Type() string                        { return "rekey-probe" }
func (probeKey) Marshal() []byte                     { return []byte("rekey-probe") }
func (probeKey) Verify([]byte, *ssh.Signature) error { return errors.New("probe key") }

func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
