package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"time"

	"github.com/rekey-dev/rekey/config"
	"github.com/rekey-dev/rekey/integrations"
	"github.com/rekey-dev/rekey/integrations/all"
	"github.com/rekey-dev/rekey/internal/sshpool"
	"github.com/rekey-dev/rekey/notifiers"
	"github.com/rekey-dev/rekey/notifiers/console"
	"github.com/rekey-dev/rekey/notifiers/slack"
	"github.com/rekey-dev/rekey/providers"
	provall "github.com/rekey-dev/rekey/providers/all"
	"github.com/rekey-dev/rekey/records"
	"github.com/rekey-dev/rekey/rotation"
	"github.com/rekey-dev/rekey/secret"
	"github.com/rekey-dev/rekey/store"
	"github.com/rekey-dev/rekey/vaultstore"
)

// app is what a command works with once the configuration is loaded.
type app struct {
	g      *GlobalOptions
	s      Streams
	cfg    *config.Config
	log    *slog.Logger
	getenv func(string) string
	http   *http.Client
	ssh    *sshpool.Pool // connections to other hosts, one per host per run

	built map[string]integrations.Integration // every integration, built once by load

	store store.Store       // nil until connectVault
	vault *vaultstore.Store // the store, when it is Vault

	courier *courier // hand-off codes' delivery (handoff.go); nil until needed
}

// load reads and validates the configuration and every integration's
// fields. Any problem is a usage error (exit 2).
func load(g *GlobalOptions, s Streams) (*app, error) { return loadWith(g, s, loadOptions{}) }

// loadOptions are what a command changes in the run load sets up. The
// integrations are built once, with the logger and the SSH pool chosen
// here, and keep both: a command cannot swap them afterwards.
type loadOptions struct {
	daemon bool // rekey serve: JSON logs from Info up, SSH connections closed when idle
}

func loadWith(g *GlobalOptions, s Streams, o loadOptions) (*app, error) {
	if g.Output != "text" && g.Output != "json" {
		return nil, exit(ExitUsage, fmt.Errorf("--output must be text or json, not %q", g.Output), "")
	}
	path := config.Resolve(g.ConfigPath)
	cfg, err := config.Load(path)
	if err != nil {
		return nil, exit(ExitUsage, err, configHint(path, err))
	}
	level, sshIdle := slog.LevelWarn, time.Duration(0)
	if o.daemon {
		level, sshIdle = slog.LevelInfo, serveSSHIdle
	}
	if g.Verbose {
		level = slog.LevelDebug
	}
	var h slog.Handler = slog.NewTextHandler(s.Err, &slog.HandlerOptions{Level: level})
	if o.daemon {
		h = slog.NewJSONHandler(s.Err, &slog.HandlerOptions{Level: level})
	}
	a := &app{
		g: g, s: s, cfg: cfg,
		log:    slog.New(g.redact.Handler(h)),
		getenv: os.Getenv,
		http:   httpClient(cfg),
	}
	learnSecrets(cfg, a.getenv, g.redact)
	a.ssh = sshPool(cfg, a.getenv, a.log, sshIdle)
	// Check each key's provider settings and build every integration,
	// which validates their fields; commands use them as built.
	var errs config.Errors
	for i, k := range cfg.Keys {
		if err := provall.Validate(k); err != nil {
			errs = append(errs, &config.Error{File: cfg.File, Item: fmt.Sprintf("keys[%d] (%s)", i, k.ID), Msg: err.Error()})
		}
	}
	a.built = make(map[string]integrations.Integration, len(cfg.Integrations))
	for _, in := range cfg.Integrations {
		integ, err := all.New(a.host(), in)
		learnIntegrationSecrets(integ, g.redact)
		var ce *config.Error
		switch {
		case err == nil:
			a.built[in.ID] = integ
		case errors.As(err, &ce):
			errs = append(errs, ce)
		default:
			errs = append(errs, &config.Error{File: cfg.File, Item: cfg.ItemName(in), Msg: err.Error()})
		}
	}
	if len(errs) > 0 {
		return nil, exit(ExitUsage, errs, "")
	}
	var ids []string
	for _, k := range cfg.Keys {
		ids = append(ids, k.ID)
	}
	for _, in := range cfg.Integrations {
		ids = append(ids, in.ID)
	}
	s.guard.configure(ids, a.knownKeys)
	a.trace("config")
	return a, nil
}

// knownKeys reads every retained version of every configured key, and
// rekey's history of each, for the guard to recognise one typed as an
// argument. What cannot be read is left out.
func (a *app) knownKeys(ctx context.Context) onRecord {
	var out onRecord
	if a.connectVault(ctx) != nil {
		return out
	}
	for _, k := range a.cfg.Keys {
		if versions, _, err := a.store.Versions(ctx, k.VaultPath); err == nil {
			for _, v := range versions {
				out.keys = append(out.keys, v.Key)
			}
		}
		if h, _, err := a.store.History(ctx, k.ID); err == nil && h != nil {
			out.histories = append(out.histories, h)
		}
	}
	return out
}

// httpClient is the client integrations and providers share: a request
// takes at most rotation.timeout, and as many connections to one host stay
// open as integrations are updated at once (many http integrations often
// talk to one host).
func httpClient(cfg *config.Config) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = cfg.Rotation.Concurrency
	return &http.Client{Timeout: cfg.Rotation.Timeout.D(), Transport: t}
}

// sshPool is the run's connections to other hosts. Relative paths in the
// ssh section are taken from the configuration file's directory.
func sshPool(cfg *config.Config, getenv func(string) string, log *slog.Logger, idle time.Duration) *sshpool.Pool {
	rel := func(p string) string {
		if p == "" || filepath.IsAbs(p) || strings.HasPrefix(p, "~") {
			return p
		}
		return filepath.Join(filepath.Dir(cfg.File), p)
	}
	return sshpool.New(sshpool.Options{
		KnownHosts:     rel(cfg.SSH.KnownHosts),
		IdentityFile:   rel(cfg.SSH.IdentityFile),
		PassphraseEnv:  cfg.SSH.PassphraseEnv,
		ConnectTimeout: cfg.SSH.ConnectTimeout.D(),
		Sessions:       cfg.Rotation.Concurrency,
		IdleTimeout:    idle,
		Getenv:         getenv,
		Logger:         log,
	})
}

func configHint(path string, err error) string {
	if strings.Contains(err.Error(), "no such file") {
		return "pass --config PATH or set REKEY_CONFIG; configs/example.yaml is a starting point"
	}
	return ""
}

func (a *app) host() integrations.Host {
	return integrations.Host{Config: a.cfg, Logger: a.log, Getenv: a.getenv, HTTPClient: a.http, SSH: a.ssh}
}

// key returns the configured key with that id, or a usage error.
func (a *app) key(id string) (*config.Key, error) {
	k, ok := a.cfg.KeyByID(id)
	if !ok {
		ids := make([]string, len(a.cfg.Keys))
		for i, k := range a.cfg.Keys {
			ids[i] = k.ID
		}
		return nil, exit(ExitUsage, fmt.Errorf("no key %q in %s", id, a.cfg.File), fmt.Sprintf("configured keys: %v", ids))
	}
	return k, nil
}

// targets builds the integrations of a key.
func (a *app) targets(keyID string) ([]rotation.Target, error) {
	var out []rotation.Target
	for _, in := range a.cfg.IntegrationsOf(keyID) {
		integ, ok := a.built[in.ID]
		if !ok {
			var err error
			if integ, err = all.New(a.host(), in); err != nil {
				return nil, exit(ExitUsage, err, "")
			}
		}
		out = append(out, rotation.Target{Config: in, Integration: integ})
	}
	return out, nil
}

// open looks up a key and its integrations and logs in to Vault: what
// every command about one key starts with.
func (a *app) open(ctx context.Context, keyID string) (*config.Key, []rotation.Target, error) {
	k, err := a.key(keyID)
	if err != nil {
		return nil, nil, err
	}
	targets, err := a.targets(k.ID)
	if err != nil {
		return nil, nil, err
	}
	if err := a.connectVault(ctx); err != nil {
		return nil, nil, err
	}
	return k, targets, nil
}

// selectKeys returns the keys named by ids, or every key when none is.
func (a *app) selectKeys(ids ...string) ([]config.Key, error) {
	var keys []config.Key
	for _, id := range ids {
		if id == "" {
			continue
		}
		k, err := a.key(id)
		if err != nil {
			return nil, err
		}
		keys = append(keys, *k)
	}
	if len(keys) == 0 {
		return a.cfg.Keys, nil
	}
	return keys, nil
}

// connectVault logs in to Vault. A failure stops the command (exit 1).
func (a *app) connectVault(ctx context.Context) error {
	if a.store != nil {
		return nil
	}
	if st := a.g.store; st != nil {
		if o, ok := st.(interface{ OnKey(func(secret.Key)) }); ok {
			o.OnKey(func(k secret.Key) { a.g.redact.AddKey(k) })
		}
		a.store = st
		a.s.guard.settle(ctx)
		a.trace("vault")
		return nil
	}
	c, err := vaultstore.Connect(ctx, a.cfg.Vault, a.getenv)
	if err != nil {
		return exit(ExitStopped, err, "set VAULT_ADDR and VAULT_TOKEN (or vault.auth in the configuration)")
	}
	a.g.redact.Add(c.Token()) // an AppRole login's token, too
	a.vault = vaultstore.New(c, a.cfg.Vault.Mount, a.cfg.Vault.StatePath)
	a.vault.OnKey(func(k secret.Key) { a.g.redact.AddKey(k) })
	a.store = a.vault
	a.s.guard.settle(ctx)
	a.trace("vault")
	return nil
}

func (a *app) checker(k config.Key) providers.Checker {
	return provall.For(k, a.http, a.log)
}

// notifier builds the configured notifiers: Slack (bot or webhook) and,
// with notify.console, the console. Nil when none is configured.
func (a *app) notifier() (notifiers.Notifier, error) {
	var ns notifiers.Multi
	if sc := a.cfg.Notify.Slack; sc != nil {
		opts := slack.Options{Channel: sc.Channel, APIURL: sc.APIURL, Logger: a.log, HTTPClient: &http.Client{Timeout: 15 * time.Second}, Retries: max(*a.cfg.Rotation.Retries, 3)}
		if sc.TokenEnv != "" {
			if opts.Token = a.getenv(sc.TokenEnv); opts.Token == "" {
				return nil, fmt.Errorf("notify.slack: $%s is not set", sc.TokenEnv)
			}
		} else if opts.WebhookURL = a.getenv(sc.WebhookURLEnv); opts.WebhookURL == "" {
			return nil, fmt.Errorf("notify.slack: $%s is not set", sc.WebhookURLEnv)
		}
		n, err := slack.New(opts)
		if err != nil {
			return nil, fmt.Errorf("notify.slack: %w", err)
		}
		ns = append(ns, n)
	}
	if a.cfg.Notify.Console {
		ns = append(ns, console.New(a.s.Out))
	}
	if len(ns) == 0 {
		return nil, nil
	}
	return notifiers.Redacted(ns, a.g.redact.Redact), nil
}

// engine builds a rotation engine from the configuration.
func (a *app) engine(n notifiers.Notifier) *rotation.Engine {
	return &rotation.Engine{
		Store:       a.store,
		Notifier:    n,
		Logger:      a.log,
		Concurrency: a.cfg.Rotation.Concurrency,
		Timeout:     a.cfg.Rotation.Timeout.D(),
		Retries:     *a.cfg.Rotation.Retries,
		Operator:    operator(),
		Redact:      a.g.redact.Redact,
		Handoffs:    a.handoffs(),
		Trace:       func(s rotation.Step) { a.trace(string(s)) },
	}
}

func operator() records.Lock {
	name := os.Getenv("USER")
	if u, err := user.Current(); err == nil && u.Username != "" {
		name = u.Username
	}
	host, _ := os.Hostname()
	return records.Lock{User: name, Host: host, PID: os.Getpid()}
}

func (a *app) json() bool { return a.g.Output == "json" }

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
