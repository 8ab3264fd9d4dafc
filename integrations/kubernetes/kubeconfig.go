package kubernetes

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

// This is a small kubeconfig reader, in place of k8s.io/client-go's
// clientcmd: it finds the API server, its CA and the credentials the way
// kubectl does, for the few calls this type makes. It reads:
//
//   - the file named by the kubeconfig field alone; else every file in
//     $KUBECONFIG (a list joined with the OS's path separator, files that
//     do not exist skipped), merged as kubectl merges them: the first file
//     to name a cluster, user or context wins, and the first
//     current-context set wins; else ~/.kube/config; else, in a pod, the
//     service account (KUBERNETES_SERVICE_HOST and _PORT, the token and
//     CA under /var/run/secrets/kubernetes.io/serviceaccount);
//   - the context field, else current-context;
//   - of the cluster: server, certificate-authority(-data),
//     insecure-skip-tls-verify, tls-server-name;
//   - of the user: token, tokenFile (read again at every request, as
//     projected service-account tokens rotate), client-certificate(-data)
//     and client-key(-data).
//
// Relative paths are taken from the directory of the file that holds
// them. A user that needs an exec plugin, an auth-provider or a password
// is refused with a clear error: rekey runs no credential plugins.

// serviceAccountDir is where a pod's service account is mounted.
var serviceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount"

// credentials is how to reach and authenticate to one API server.
type credentials struct {
	server    *url.URL
	tls       *tls.Config
	token     string // a static bearer token
	tokenFile string // a token read again at every request
	keyPEM    []byte // the client certificate's private key, if any
	// source names them in messages: `kubeconfig ~/.kube/config, context
	// prod (user rekey)` or `the pod's service account`.
	source string
}

type kubeconfig struct {
	CurrentContext string `yaml:"current-context"`
	Clusters       []struct {
		Name    string  `yaml:"name"`
		Cluster cluster `yaml:"cluster"`
	} `yaml:"clusters"`
	Users []struct {
		Name string `yaml:"name"`
		User user   `yaml:"user"`
	} `yaml:"users"`
	Contexts []struct {
		Name    string `yaml:"name"`
		Context struct {
			Cluster   string `yaml:"cluster"`
			User      string `yaml:"user"`
			Namespace string `yaml:"namespace"`
		} `yaml:"context"`
	} `yaml:"contexts"`
}

type cluster struct {
	Server                   string `yaml:"server"`
	CertificateAuthority     string `yaml:"certificate-authority"`
	CertificateAuthorityData string `yaml:"certificate-authority-data"`
	InsecureSkipTLSVerify    bool   `yaml:"insecure-skip-tls-verify"`
	TLSServerName            string `yaml:"tls-server-name"`
	dir                      string
}

type user struct {
	Token                 string    `yaml:"token"`
	TokenFile             string    `yaml:"tokenFile"`
	ClientCertificate     string    `yaml:"client-certificate"`
	ClientCertificateData string    `yaml:"client-certificate-data"`
	ClientKey             string    `yaml:"client-key"`
	ClientKeyData         string    `yaml:"client-key-data"`
	Username              string    `yaml:"username"`
	Password              string    `yaml:"password"`
	Exec                  yaml.Node `yaml:"exec"`
	AuthProvider          yaml.Node `yaml:"auth-provider"`
	dir                   string
}

type contextInfo struct{ cluster, user, namespace string }

// merged is kubeconfig files merged as kubectl merges them.
type merged struct {
	current  string
	clusters map[string]cluster
	users    map[string]user
	contexts map[string]contextInfo
}

// loadCredentials finds the API server and credentials. explicit is the
// kubeconfig field, context the context field.
func loadCredentials(explicit, context string, getenv func(string) string) (*credentials, error) {
	var files []string
	switch {
	case explicit != "":
		files = []string{expandHome(explicit, getenv)}
	case getenv("KUBECONFIG") != "":
		for _, f := range filepath.SplitList(getenv("KUBECONFIG")) {
			if f == "" {
				continue
			}
			if _, err := os.Stat(expandHome(f, getenv)); err == nil {
				files = append(files, expandHome(f, getenv))
			}
		}
		if len(files) == 0 {
			return nil, errors.New("$KUBECONFIG names no file that exists")
		}
	default:
		home := homeDir(getenv)
		if home != "" {
			def := filepath.Join(home, ".kube", "config")
			if _, err := os.Stat(def); err == nil {
				files = []string{def}
			}
		}
		if files == nil {
			if getenv("KUBERNETES_SERVICE_HOST") != "" {
				if context != "" {
					return nil, errors.New("context is given but there is no kubeconfig: in a pod, rekey uses the pod's service account")
				}
				return inCluster(getenv)
			}
			return nil, errors.New("no kubeconfig: set kubeconfig, or $KUBECONFIG, or create ~/.kube/config (or run rekey in a pod with a service account)")
		}
	}
	m := &merged{clusters: map[string]cluster{}, users: map[string]user{}, contexts: map[string]contextInfo{}}
	for _, f := range files {
		if err := m.add(f); err != nil {
			return nil, err
		}
	}
	name := context
	if name == "" {
		name = m.current
	}
	where := "kubeconfig " + strings.Join(files, string(filepath.ListSeparator))
	if name == "" {
		return nil, fmt.Errorf("%s sets no current-context: give context", where)
	}
	c, ok := m.contexts[name]
	if !ok {
		return nil, fmt.Errorf("%s has no context %q", where, name)
	}
	cl, ok := m.clusters[c.cluster]
	if !ok {
		return nil, fmt.Errorf("%s: context %q names cluster %q, which it does not define", where, name, c.cluster)
	}
	u, ok := m.users[c.user]
	if !ok && c.user != "" {
		return nil, fmt.Errorf("%s: context %q names user %q, which it does not define", where, name, c.user)
	}
	cred := &credentials{source: fmt.Sprintf("the credentials of user %q of context %q in %s", c.user, name, where)}
	if err := cred.fromCluster(cl); err != nil {
		return nil, fmt.Errorf("%s: cluster %q: %w", where, c.cluster, err)
	}
	if err := cred.fromUser(u); err != nil {
		return nil, fmt.Errorf("%s: user %q: %w", where, c.user, err)
	}
	return cred, nil
}

var yamlLine = regexp.MustCompile(`line (\d+)`)

// add merges one file; the first definition of each name wins.
func (m *merged) add(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("kubeconfig %s does not exist", path)
		}
		return fmt.Errorf("read kubeconfig %s: %w", path, errors.Unwrap(err))
	}
	var k kubeconfig
	if err := yaml.Unmarshal(b, &k); err != nil {
		// yaml's message may quote the file, which holds credentials.
		where := ""
		if l := yamlLine.FindString(err.Error()); l != "" {
			where = " (" + l + ")"
		}
		return fmt.Errorf("kubeconfig %s is not a valid kubeconfig%s", path, where)
	}
	dir := filepath.Dir(path)
	if m.current == "" {
		m.current = k.CurrentContext
	}
	for _, c := range k.Clusters {
		if _, ok := m.clusters[c.Name]; !ok {
			c.Cluster.dir = dir
			m.clusters[c.Name] = c.Cluster
		}
	}
	for _, u := range k.Users {
		if _, ok := m.users[u.Name]; !ok {
			u.User.dir = dir
			m.users[u.Name] = u.User
		}
	}
	for _, c := range k.Contexts {
		if _, ok := m.contexts[c.Name]; !ok {
			m.contexts[c.Name] = contextInfo{cluster: c.Context.Cluster, user: c.Context.User, namespace: c.Context.Namespace}
		}
	}
	return nil
}

func (c *credentials) fromCluster(cl cluster) error {
	u, err := url.Parse(cl.Server)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("server %q is not an http(s) URL", cl.Server)
	}
	c.server = u
	c.tls = &tls.Config{MinVersion: tls.VersionTLS12, ServerName: cl.TLSServerName, InsecureSkipVerify: cl.InsecureSkipTLSVerify}
	ca, err := material(cl.CertificateAuthorityData, cl.CertificateAuthority, cl.dir, "certificate-authority")
	if err != nil {
		return err
	}
	if ca != nil {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(ca) {
			return errors.New("certificate-authority holds no PEM certificate")
		}
		c.tls.RootCAs = pool
	}
	return nil
}

func (c *credentials) fromUser(u user) error {
	switch {
	case !u.Exec.IsZero():
		return errors.New("it uses an exec credential plugin, which rekey does not run; give it a token, a tokenFile (a service-account token) or client certificates")
	case !u.AuthProvider.IsZero():
		return errors.New("it uses an auth-provider, which rekey does not support; give it a token, a tokenFile or client certificates")
	case u.Username != "" || u.Password != "":
		return errors.New("it uses a username and password, which rekey does not send; give it a token, a tokenFile or client certificates")
	}
	c.token = u.Token
	if u.TokenFile != "" {
		c.tokenFile = resolve(u.TokenFile, u.dir)
	}
	cert, err := material(u.ClientCertificateData, u.ClientCertificate, u.dir, "client-certificate")
	if err != nil {
		return err
	}
	key, err := material(u.ClientKeyData, u.ClientKey, u.dir, "client-key")
	if err != nil {
		return err
	}
	switch {
	case cert != nil && key != nil:
		pair, err := tls.X509KeyPair(cert, key)
		if err != nil {
			return errors.New("client-certificate and client-key are not a matching PEM certificate and key")
		}
		c.tls.Certificates = []tls.Certificate{pair}
		c.keyPEM = key
	case cert != nil || key != nil:
		return errors.New("give client-certificate and client-key together")
	}
	if c.token == "" && c.tokenFile == "" && len(c.tls.Certificates) == 0 {
		return errors.New("it has no token, tokenFile or client certificate")
	}
	return nil
}

// inCluster is the pod's service account.
func inCluster(getenv func(string) string) (*credentials, error) {
	host, port := getenv("KUBERNETES_SERVICE_HOST"), getenv("KUBERNETES_SERVICE_PORT")
	if port == "" {
		port = "443"
	}
	c := &credentials{
		server:    &url.URL{Scheme: "https", Host: net.JoinHostPort(host, port)},
		tokenFile: filepath.Join(serviceAccountDir, "token"),
		tls:       &tls.Config{MinVersion: tls.VersionTLS12},
		source:    "the pod's service account",
	}
	ca, err := os.ReadFile(filepath.Join(serviceAccountDir, "ca.crt"))
	if err != nil {
		return nil, fmt.Errorf("in a pod, but the service account's CA %s cannot be read", filepath.Join(serviceAccountDir, "ca.crt"))
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("the service account's CA %s holds no PEM certificate", filepath.Join(serviceAccountDir, "ca.crt"))
	}
	c.tls.RootCAs = pool
	if _, err := os.Stat(c.tokenFile); err != nil {
		return nil, fmt.Errorf("in a pod, but the service account token %s cannot be read (automountServiceAccountToken: false?)", c.tokenFile)
	}
	return c, nil
}

// secrets are the credentials themselves, for the run's redactor: the
// static token, the token file's content (read now), the client key as
// PEM and each base64 line of its body.
func (c *credentials) secrets() []string {
	var out []string
	add := func(v string) {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	add(c.token)
	if c.tokenFile != "" {
		if t, err := c.bearer(); err == nil {
			add(t)
		}
	}
	if len(c.keyPEM) > 0 {
		out = append(out, string(c.keyPEM))
		add(string(c.keyPEM))
		for _, l := range strings.Split(string(c.keyPEM), "\n") {
			if !strings.HasPrefix(l, "-----") {
				add(l)
			}
		}
	}
	return out
}

// bearer is the token to send: the token file's, read now, else the static one.
func (c *credentials) bearer() (string, error) {
	if c.tokenFile != "" {
		b, err := os.ReadFile(c.tokenFile)
		if err != nil {
			return "", fmt.Errorf("read the token file %s: %w", c.tokenFile, errors.Unwrap(err))
		}
		if len(b) > 64<<10 {
			return "", fmt.Errorf("the token file %s is larger than 64 KiB", c.tokenFile)
		}
		return strings.TrimSpace(string(b)), nil
	}
	return c.token, nil
}

// material is inline base64 data, else a file's contents, else nil.
func material(data, file, dir, name string) ([]byte, error) {
	switch {
	case data != "":
		b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(data))
		if err != nil {
			return nil, fmt.Errorf("%s-data is not base64", name)
		}
		return b, nil
	case file != "":
		p := resolve(file, dir)
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("%s %s cannot be read", name, p)
		}
		return b, nil
	}
	return nil, nil
}

func resolve(p, dir string) string {
	if filepath.IsAbs(p) || dir == "" {
		return p
	}
	return filepath.Join(dir, p)
}

func homeDir(getenv func(string) string) string {
	if h := getenv("HOME"); h != "" {
		return h
	}
	h, _ := os.UserHomeDir()
	return h
}

func expandHome(p string, getenv func(string) string) string {
	if p == "~" || strings.HasPrefix(p, "~/") {
		return filepath.Join(homeDir(getenv), p[1:])
	}
	return p
}
