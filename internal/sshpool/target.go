package sshpool

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/kevinburke/ssh_config"
)

// endpoint is a host resolved: who logs in where, through which jump
// hosts, with which identities of its own.
type endpoint struct {
	name       string // the host as configured: "deploy@web1:22", "web1"
	alias      string // the host part, looked up in ~/.ssh/config
	user       string
	host       string // HostName
	port       int
	identities []string  // IdentityFile lines of ~/.ssh/config for this alias
	via        *endpoint // the last ProxyJump hop, if any
}

func (e *endpoint) addr() string { return net.JoinHostPort(e.host, strconv.Itoa(e.port)) }

// key identifies the connection: one per user, address and route.
func (e *endpoint) key() string {
	k := e.user + "@" + e.addr()
	if e.via != nil {
		k += " via " + e.via.key()
	}
	return k
}

// describe names the endpoint in errors: as configured, and where that
// is an alias, what it stands for.
func (e *endpoint) describe() string {
	full := e.user + "@" + e.addr()
	if e.name == full {
		return e.name
	}
	return e.name + " (" + full + ")"
}

// ParseTarget splits [user@]host[:port]. An IPv6 address with a port is
// written in brackets: [2001:db8::1]:2222. port is 0 when not given.
func ParseTarget(s string) (user, host string, port int, err error) {
	if s == "" {
		return "", "", 0, errors.New("empty host")
	}
	if i := strings.LastIndexByte(s, '@'); i >= 0 {
		user, s = s[:i], s[i+1:]
		if user == "" {
			return "", "", 0, errors.New("empty user before @")
		}
	}
	host = s
	switch {
	case strings.HasPrefix(s, "["):
		h, p, err := net.SplitHostPort(s)
		if err != nil {
			return "", "", 0, fmt.Errorf("%q: want [address]:port", s)
		}
		host, port, err = h, 0, nil
		if port, err = parsePort(p); err != nil {
			return "", "", 0, err
		}
	case strings.Count(s, ":") == 1:
		h, p, _ := strings.Cut(s, ":")
		host = h
		if port, err = parsePort(p); err != nil {
			return "", "", 0, err
		}
	}
	if host == "" {
		return "", "", 0, errors.New("empty host")
	}
	if strings.HasPrefix(host, "-") || strings.ContainsAny(host, " \t\r\n/\\'\"`$;&|<>()") || strings.ContainsAny(user, " \t\r\n:/\\'\"`$;&|<>()") {
		return "", "", 0, fmt.Errorf("%q is not a host name", s)
	}
	return user, host, port, nil
}

func parsePort(p string) (int, error) {
	n, err := strconv.Atoi(p)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("port %q: want a number from 1 to 65535", p)
	}
	return n, nil
}

// maxHops bounds a ProxyJump chain (and catches a loop).
const maxHops = 8

// resolve turns a configured host into an endpoint, taking HostName,
// User, Port, IdentityFile and ProxyJump from ~/.ssh/config where the
// host part is an alias there, as ssh(1) would. What the configured host
// says explicitly (user@, :port) wins over the file.
func (p *Pool) resolve(name string, depth int) (*endpoint, error) {
	if depth > maxHops {
		return nil, fmt.Errorf("ProxyJump goes through more than %d hosts (a loop?)", maxHops)
	}
	user, alias, port, err := ParseTarget(name)
	if err != nil {
		return nil, err
	}
	cfg, err := p.sshConfig()
	if err != nil {
		return nil, err
	}
	get := func(key string) string {
		if cfg == nil {
			return ""
		}
		v, _ := cfg.Get(alias, key)
		return strings.TrimSpace(v)
	}
	e := &endpoint{name: name, alias: alias, user: user, host: alias, port: port}
	if hn := get("HostName"); hn != "" {
		e.host = strings.ReplaceAll(hn, "%h", alias)
	}
	if e.user == "" {
		e.user = get("User")
	}
	if e.user == "" {
		e.user = p.o.User
	}
	if e.port == 0 {
		if v := get("Port"); v != "" {
			if e.port, err = parsePort(v); err != nil {
				return nil, fmt.Errorf("%s: Port in %s: %w", alias, p.o.SSHConfig, err)
			}
		}
	}
	if e.port == 0 {
		e.port = 22
	}
	if pc := get("ProxyCommand"); pc != "" && !strings.EqualFold(pc, "none") {
		return nil, fmt.Errorf("%s: ProxyCommand in %s is not supported: use ProxyJump", alias, p.o.SSHConfig)
	}
	if cfg != nil {
		ids, _ := cfg.GetAll(alias, "IdentityFile")
		for _, id := range ids {
			e.identities = append(e.identities, p.expand(id, e))
		}
	}
	if pj := get("ProxyJump"); pj != "" && !strings.EqualFold(pj, "none") {
		var prev *endpoint
		for hop := range strings.SplitSeq(pj, ",") {
			hop = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(hop), "ssh://"))
			if hop == alias {
				return nil, fmt.Errorf("%s: ProxyJump names the host itself", alias)
			}
			h, err := p.resolve(hop, depth+1)
			if err != nil {
				return nil, fmt.Errorf("%s: ProxyJump %s: %w", alias, hop, err)
			}
			if prev != nil {
				// Each hop is reached through the one before it.
				h = h.through(prev)
			}
			prev = h
		}
		e.via = prev
	}
	return e, nil
}

// through is e reached through hop (appended to the end of e's own chain).
func (e *endpoint) through(hop *endpoint) *endpoint {
	cp := *e
	if cp.via == nil {
		cp.via = hop
	} else {
		cp.via = cp.via.through(hop)
	}
	return &cp
}

// expand replaces ~ and the tokens ssh_config(5) allows in IdentityFile
// that rekey knows: %d (home), %u (local user), %r (remote user), %h
// (host name), %%.
func (p *Pool) expand(path string, e *endpoint) string {
	if path == "~" || strings.HasPrefix(path, "~/") {
		path = filepath.Join(p.o.Home, path[1:])
	}
	r := strings.NewReplacer("%d", p.o.Home, "%u", p.o.User, "%r", e.user, "%h", e.host, "%%", "%")
	return r.Replace(path)
}

// sshConfig reads ~/.ssh/config once. A missing file is no
// configuration; one that cannot be parsed is an error.
func (p *Pool) sshConfig() (*ssh_config.Config, error) {
	p.cfgOnce.Do(func() {
		if p.o.SSHConfig == "" {
			return
		}
		f, err := os.Open(p.o.SSHConfig)
		if errors.Is(err, os.ErrNotExist) {
			return
		}
		if err != nil {
			p.cfgErr = fmt.Errorf("read %s: %w", p.o.SSHConfig, err)
			return
		}
		defer f.Close()
		if p.cfg, err = ssh_config.Decode(f); err != nil {
			p.cfgErr = fmt.Errorf("read %s: %w", p.o.SSHConfig, err)
		}
	})
	return p.cfg, p.cfgErr
}
