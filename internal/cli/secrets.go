package cli

import (
	"io"
	"log"
	"net/url"
	"regexp"
	"strings"

	"github.com/rekey-dev/rekey/config"
	"github.com/rekey-dev/rekey/secret"
)

// redactStreams makes every byte the CLI writes to stdout and stderr pass
// r first: the second wall behind errors built from rekey's own words.
// Nothing rekey prints is meant to hold a secret (`reveal` and hand-off
// pages, which show a key to the one person holding its code, would
// write to the unwrapped stream on purpose).
func redactStreams(s Streams, r *secret.Redactor) Streams {
	if s.Out != nil {
		s.Out = r.Writer(s.Out)
	}
	if s.Err != nil {
		s.Err = r.Writer(s.Err)
	}
	return s
}

// redactStdlibLog sends the standard log package's output (net/http's
// transport logs bytes a peer sent unasked on an idle connection there,
// quoted) through w, and returns what restores it.
func redactStdlibLog(w io.Writer) (restore func()) {
	prev := log.Writer()
	log.SetOutput(w)
	return func() { log.SetOutput(prev) }
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
