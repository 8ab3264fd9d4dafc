package cli

import (
	"io"
	"log"
	"net/url"
	"regexp"
	"strings"
	"sync"

	"github.com/rekey-dev/rekey/config"
	"github.com/rekey-dev/rekey/integrations"
	"github.com/rekey-dev/rekey/secret"
)

// redactStreams makes every byte the CLI writes to stdout and stderr pass
// r first: the second wall behind errors built from rekey's own words.
// Nothing rekey prints is meant to hold a secret (`reveal` and hand-off
// pages, which show a key to the one person holding its code, would
// write to the unwrapped stream on purpose).
func redactStreams(s Streams, r *secret.Redactor) Streams {
	if s.Out != nil {
		s.Out = r.Writer(&syncWriter{w: s.Out})
	}
	if s.Err != nil {
		s.Err = r.Writer(&syncWriter{w: s.Err})
	}
	return s
}

// syncWriter passes one write at a time to w: the logger, the live view,
// net/http's log and the command's own lines may write to stderr from
// several goroutines, and whatever stands for it (a buffer, a pipe
// wrapper) need not take that.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// Unwrap returns the writer underneath (to tell whether it is a terminal).
func (s *syncWriter) Unwrap() io.Writer { return s.w }

// redactStdlibLog sends the standard log package's output through w (the
// redacting stderr), and returns what restores it. net/http's transport
// logs there, quoted, the bytes a server sends unasked on an idle
// connection: a peer that echoes the request would print the key or the
// token it carried. That line is replaced by a fixed one.
func redactStdlibLog(w io.Writer) (restore func()) {
	prev := log.Writer()
	log.SetOutput(stdlibLog{w})
	return func() { log.SetOutput(prev) }
}

// unsolicited is how net/http's transport starts the line it logs.
const unsolicited = "Unsolicited response received on idle HTTP channel"

type stdlibLog struct{ w io.Writer }

// Write gets one log entry per call (package log writes each at once).
func (l stdlibLog) Write(p []byte) (int, error) {
	if i := strings.Index(string(p), unsolicited); i >= 0 {
		msg := string(p[:i]) + "net/http: a server sent bytes nobody asked for on an idle connection (not shown: they may quote the request)\n"
		if _, err := io.WriteString(l.w, msg); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	return l.w.Write(p)
}

var varRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// learnSecrets tells r every secret the configuration points at, before
// anything is sent anywhere: the Vault token ($VAULT_TOKEN, vault.token_env,
// AppRole's role and secret ids), Slack's bot token or webhook URL, and,
// in every integration's settings, the value of each *_env variable
// (token_env, build_hook_env, ...) and of each ${VAR}. Keys are added as
// they are read (Vault, the new key); a token Vault issues at login too.
func learnSecrets(cfg *config.Config, getenv func(string) string, r *secret.Redactor) {
	env := func(name string) {
		if name != "" {
			r.Add(getenv(name))
		}
	}
	env("VAULT_TOKEN")
	env(cfg.Vault.TokenEnv)
	if a := cfg.Vault.Auth; a != nil {
		env(a.RoleIDEnv)
		env(a.SecretIDEnv)
	}
	if sc := cfg.Notify.Slack; sc != nil {
		env(sc.TokenEnv)
		env(sc.WebhookURLEnv)
		if u, err := url.Parse(getenv(sc.WebhookURLEnv)); err == nil && sc.WebhookURLEnv != "" {
			r.Add(u.Path, u.EscapedPath()) // a webhook's path is its secret
		}
	}
	for _, in := range cfg.Integrations {
		walkSettings(in.Settings, func(key, value string) {
			if strings.HasSuffix(key, "_env") {
				env(value)
			}
			for _, m := range varRef.FindAllStringSubmatch(value, -1) {
				env(m[1])
			}
		})
	}
}

// learnIntegrationSecrets tells r the secrets in holds beyond its *_env
// values (integrations.SecretHolder: a kubeconfig's token or client key),
// before anything is sent anywhere.
func learnIntegrationSecrets(in integrations.Integration, r *secret.Redactor) {
	if h, ok := in.(integrations.SecretHolder); ok {
		r.Add(h.Secrets()...)
	}
}

// walkSettings calls f with every string in settings and the name of the
// field that holds it (the map key; for a list item, the list's).
func walkSettings(v any, f func(key, value string)) {
	var walk func(key string, v any)
	walk = func(key string, v any) {
		switch t := v.(type) {
		case string:
			f(key, t)
		case map[string]any:
			for k, x := range t {
				walk(k, x)
			}
		case map[string]string:
			for k, x := range t {
				f(k, x)
			}
		case map[any]any:
			for k, x := range t {
				if ks, ok := k.(string); ok {
					walk(ks, x)
				}
			}
		case []any:
			for _, x := range t {
				walk(key, x)
			}
		case []string:
			for _, x := range t {
				f(key, x)
			}
		}
	}
	walk("", v)
}
