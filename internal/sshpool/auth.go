package sshpool

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/rekey-dev/rekey/failure"
)

// defaultIdentities are tried, in order, when no identity is configured
// and no agent holds a key.
var defaultIdentities = []string{"id_ed25519", "id_ecdsa", "id_rsa"}

// identityFiles is what ep logs in with, when files are configured: the
// pool's identity_file, then the alias's IdentityFile lines.
func (p *Pool) identityFiles(ep *endpoint) []string {
	var files []string
	if p.o.IdentityFile != "" {
		files = append(files, p.o.IdentityFile)
	}
	return append(files, ep.identities...)
}

// offered names the identities tried, for an error: file names, or "the
// agent's keys". Never key material.
func (p *Pool) offered(ep *endpoint) string {
	if files := p.identityFiles(ep); len(files) > 0 {
		return strings.Join(files, ", ")
	}
	if p.o.Getenv("SSH_AUTH_SOCK") != "" {
		return "the keys of ssh-agent, then ~/.ssh/" + strings.Join(defaultIdentities, ", ")
	}
	return "~/.ssh/" + strings.Join(defaultIdentities, ", ")
}

// auth gives the methods ep logs in with, and a func that closes the
// agent connection once the handshake is done.
func (p *Pool) auth(ep *endpoint) ([]ssh.AuthMethod, func(), error) {
	nothing := func() {}
	if files := p.identityFiles(ep); len(files) > 0 {
		var signers []ssh.Signer
		for _, f := range files {
			s, err := p.loadIdentity(f)
			if err != nil {
				return nil, nothing, err
			}
			signers = append(signers, s)
		}
		return []ssh.AuthMethod{ssh.PublicKeys(signers...)}, nothing, nil
	}
	var signers []ssh.Signer
	closeAgent := nothing
	if sock := p.o.Getenv("SSH_AUTH_SOCK"); sock != "" {
		if c, err := net.Dial("unix", sock); err == nil {
			if ss, err := agent.NewClient(c).Signers(); err == nil && len(ss) > 0 {
				signers = append(signers, ss...)
				closeAgent = func() { c.Close() }
			} else {
				c.Close()
			}
		} else {
			p.o.Logger.Debug("ssh: ssh-agent not reachable; trying the default identities", "err", err)
		}
	}
	for _, name := range defaultIdentities {
		path := filepath.Join(p.o.Home, ".ssh", name)
		if _, err := os.Stat(path); err != nil {
			continue
		}
		s, err := p.loadIdentity(path)
		if err != nil {
			if len(signers) == 0 {
				closeAgent()
				return nil, nothing, err
			}
			continue // the agent's keys may do
		}
		signers = append(signers, s)
	}
	if len(signers) == 0 {
		closeAgent()
		return nil, nothing, fmt.Errorf("no identity to log in with: set ssh.identity_file, load a key into ssh-agent, or create ~/.ssh/id_ed25519: %w", failure.ErrUnauthorized)
	}
	return []ssh.AuthMethod{ssh.PublicKeys(signers...)}, closeAgent, nil
}

// loadIdentity reads a private key, opening it with the passphrase from
// passphrase_env when it has one; once per run.
func (p *Pool) loadIdentity(path string) (ssh.Signer, error) {
	p.idMu.Lock()
	defer p.idMu.Unlock()
	if s, ok := p.identities[path]; ok {
		return s, nil
	}
	s, err := p.openIdentity(path)
	if err == nil {
		p.identities[path] = s
	}
	return s, err
}

func (p *Pool) openIdentity(path string) (ssh.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("identity %s: %w: %w", path, unwrapPath(err), failure.ErrUnauthorized)
	}
	s, err := ssh.ParsePrivateKey(b)
	var missing *ssh.PassphraseMissingError
	switch {
	case err == nil:
		return s, nil
	case errors.As(err, &missing):
		if p.o.PassphraseEnv == "" {
			return nil, fmt.Errorf("identity %s has a passphrase: set ssh.passphrase_env to the name of a variable that holds it, or load the key into ssh-agent: %w", path, failure.ErrUnauthorized)
		}
		pass := p.o.Getenv(p.o.PassphraseEnv)
		if pass == "" {
			return nil, fmt.Errorf("identity %s has a passphrase and $%s (ssh.passphrase_env) is not set: %w", path, p.o.PassphraseEnv, failure.ErrUnauthorized)
		}
		s, err = ssh.ParsePrivateKeyWithPassphrase(b, []byte(pass))
		if errors.Is(err, x509.IncorrectPasswordError) || err != nil && strings.Contains(err.Error(), "decryption") {
			return nil, fmt.Errorf("identity %s: the passphrase in $%s does not open it: %w", path, p.o.PassphraseEnv, failure.ErrUnauthorized)
		}
		if err != nil {
			return nil, fmt.Errorf("identity %s: not a private key rekey can read: %w", path, failure.ErrInvalid)
		}
		return s, nil
	}
	return nil, fmt.Errorf("identity %s: not a private key rekey can read: %w", path, failure.ErrInvalid)
}
