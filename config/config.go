// Package config loads and validates rekey's YAML configuration.
//
// Errors name the file, the item and the field, as *Error values, so the
// CLI can exit 2 with a message a person can act on. Integration types
// decode their own fields from Integration.Settings with DecodeSettings,
// strictly, so an unknown field is an error there too.
package config

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/viper"
)

// Config is a whole configuration file.
type Config struct {
	// File is the path the configuration was read from.
	File string `mapstructure:"-"`

	Vault        Vault         `mapstructure:"vault"`
	Notify       Notify        `mapstructure:"notify"`
	Rotation     Rotation      `mapstructure:"rotation"`
	Serve        Serve         `mapstructure:"serve"`
	SSH          SSH           `mapstructure:"ssh"`
	Keys         []Key         `mapstructure:"keys"`
	Integrations []Integration `mapstructure:"integrations"`
}

// Vault says where keys and rekey's records live and how to log in.
type Vault struct {
	Address   string     `mapstructure:"address"`
	Namespace string     `mapstructure:"namespace"`
	Mount     string     `mapstructure:"mount"`
	StatePath string     `mapstructure:"state_path"`
	TokenEnv  string     `mapstructure:"token_env"`
	Auth      *VaultAuth `mapstructure:"auth"`
}

// VaultAuth is a login method other than a token.
type VaultAuth struct {
	Method      string `mapstructure:"method"` // approle
	Mount       string `mapstructure:"mount"`  // default "approle"
	RoleIDEnv   string `mapstructure:"role_id_env"`
	SecretIDEnv string `mapstructure:"secret_id_env"`
}

// Notify configures where rotation outcomes are posted.
type Notify struct {
	Slack *Slack `mapstructure:"slack"`
	// Console prints every notification on stdout as well ("what Slack
	// would have received"); the demo and Slack-less teams use it.
	Console bool `mapstructure:"console"`
}

// Slack is a bot token with chat:write, or an incoming webhook.
type Slack struct {
	Channel       string `mapstructure:"channel"`
	TokenEnv      string `mapstructure:"token_env"`
	WebhookURLEnv string `mapstructure:"webhook_url_env"`
	APIURL        string `mapstructure:"api_url"`
}

// Rotation tunes how integrations are updated.
type Rotation struct {
	Concurrency int      `mapstructure:"concurrency"`
	Timeout     Duration `mapstructure:"timeout"`
	Retries     *int     `mapstructure:"retries"`
}

// Serve configures the daemon.
type Serve struct {
	AuditInterval Duration   `mapstructure:"audit_interval"`
	RemindBefore  []Duration `mapstructure:"remind_before"`
	Listen        string     `mapstructure:"listen"`
	LeaseTTL      Duration   `mapstructure:"lease_ttl"`
	// PublicURL is where people reach `rekey serve`'s hand-off pages
	// (<public_url>/handoff); optional.
	PublicURL string `mapstructure:"public_url"`
}

// SSH says how rekey reaches other hosts: file and exec integrations
// with a host, and ssh:// scan paths. A relative path is taken from the
// directory of the configuration file; ~ is the home directory.
type SSH struct {
	KnownHosts     string   `mapstructure:"known_hosts"`     // default ~/.ssh/known_hosts
	IdentityFile   string   `mapstructure:"identity_file"`   // default: ssh-agent, else ~/.ssh/id_ed25519, id_rsa
	PassphraseEnv  string   `mapstructure:"passphrase_env"`  // variable holding identity_file's passphrase
	ConnectTimeout Duration `mapstructure:"connect_timeout"` // default 10s
}

// Key is one credential issued by a provider.
type Key struct {
	ID           string   `mapstructure:"id"`
	Provider     string   `mapstructure:"provider"`
	VaultPath    string   `mapstructure:"vault_path"`
	RotateEvery  Duration `mapstructure:"rotate_every"`
	Owner        string   `mapstructure:"owner"`
	Instructions string   `mapstructure:"instructions"`
	ProviderURL  string   `mapstructure:"provider_url"`
	ScanPaths    []string `mapstructure:"scan_paths"`

	// provider: http
	VerifyURL   string `mapstructure:"verify_url"`
	Header      string `mapstructure:"header"`
	ValidStatus int    `mapstructure:"valid_status"`
}

// Integration is one place that holds a copy of a key. Fields that belong
// to its type stay in Settings until the type decodes them.
type Integration struct {
	ID           string         `mapstructure:"id"`
	Key          string         `mapstructure:"key"`
	Type         string         `mapstructure:"type"`
	Owner        string         `mapstructure:"owner"`
	Instructions string         `mapstructure:"instructions"`
	Settings     map[string]any `mapstructure:",remain"`
}

// Defaults.
const (
	DefaultMount       = "secret"
	DefaultStatePath   = "rekey"
	DefaultConcurrency = 16
	DefaultTimeout     = Duration(30 * 1e9)
	DefaultRetries     = 3
	DefaultListen      = "127.0.0.1:9464"
	DefaultKnownHosts  = "~/.ssh/known_hosts"
	DefaultSSHTimeout  = Duration(10 * 1e9)
)

// Error is a configuration problem, located as precisely as it can be.
type Error struct {
	File  string // the configuration file
	Item  string // "integrations[2] (site-env)", "vault", ...
	Field string // "path", "rotate_every", ...
	Msg   string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Item != "" {
		b.WriteString(": " + e.Item)
	}
	if e.Field != "" {
		b.WriteString(": field " + e.Field)
	}
	b.WriteString(": " + e.Msg)
	return b.String()
}

// Errors is every problem found in one file.
type Errors []*Error

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Resolve finds the configuration file: flag, else $REKEY_CONFIG, else ./rekey.yaml.
func Resolve(flag string) string {
	if flag != "" {
		return flag
	}
	if env := os.Getenv("REKEY_CONFIG"); env != "" {
		return env
	}
	return "rekey.yaml"
}

// Load reads, decodes, defaults and validates one file. Every error it
// returns is an *Error or Errors.
func Load(path string) (*Config, error) {
	v := viper.New()
	v.SetConfigFile(path)
	v.SetConfigType("yaml")
	if err := v.ReadInConfig(); err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			return nil, &Error{File: path, Msg: pe.Err.Error()}
		}
		return nil, &Error{File: path, Msg: "not valid YAML: " + strings.TrimSpace(err.Error())}
	}
	var c Config
	if err := v.UnmarshalExact(&c, viper.DecodeHook(durationHook)); err != nil {
		return nil, decodeErrors(path, v, err)
	}
	c.File = path
	c.applyDefaults()
	if errs := c.validate(); len(errs) > 0 {
		return nil, errs
	}
	return &c, nil
}

func (c *Config) applyDefaults() {
	if c.Vault.Mount == "" {
		c.Vault.Mount = DefaultMount
	}
	if c.Vault.StatePath == "" {
		c.Vault.StatePath = DefaultStatePath
	}
	c.Vault.Mount = strings.Trim(c.Vault.Mount, "/")
	c.Vault.StatePath = strings.Trim(c.Vault.StatePath, "/")
	if c.Vault.Auth != nil && c.Vault.Auth.Mount == "" {
		c.Vault.Auth.Mount = "approle"
	}
	if c.Rotation.Concurrency == 0 {
		c.Rotation.Concurrency = DefaultConcurrency
	}
	if c.Rotation.Timeout == 0 {
		c.Rotation.Timeout = DefaultTimeout
	}
	if c.Rotation.Retries == nil {
		r := DefaultRetries
		c.Rotation.Retries = &r
	}
	if c.Serve.AuditInterval == 0 {
		c.Serve.AuditInterval = Duration(3600 * 1e9)
	}
	if c.Serve.RemindBefore == nil {
		day := Duration(24 * 3600 * 1e9)
		c.Serve.RemindBefore = []Duration{14 * day, 7 * day, day}
	}
	if c.Serve.Listen == "" {
		c.Serve.Listen = DefaultListen
	}
	if c.SSH.KnownHosts == "" {
		c.SSH.KnownHosts = DefaultKnownHosts
	}
	if c.SSH.ConnectTimeout == 0 {
		c.SSH.ConnectTimeout = DefaultSSHTimeout
	}
	if c.Serve.LeaseTTL == 0 {
		c.Serve.LeaseTTL = Duration(60 * 1e9)
	}
}

var providers = []string{"actionnetwork", "http", "none"}

func (c *Config) validate() Errors {
	var errs Errors
	add := func(item, field, format string, args ...any) {
		errs = append(errs, &Error{File: c.File, Item: item, Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	if a := c.Vault.Auth; a != nil {
		if a.Method != "approle" {
			add("vault.auth", "method", "must be approle, got %q", a.Method)
		}
		if a.RoleIDEnv == "" {
			add("vault.auth", "role_id_env", "required for approle")
		}
		if a.SecretIDEnv == "" {
			add("vault.auth", "secret_id_env", "required for approle")
		}
	}
	if s := c.Notify.Slack; s != nil {
		switch {
		case s.TokenEnv == "" && s.WebhookURLEnv == "":
			add("notify.slack", "token_env", "required (or webhook_url_env)")
		case s.TokenEnv != "" && s.WebhookURLEnv != "":
			add("notify.slack", "webhook_url_env", "give token_env or webhook_url_env, not both")
		case s.TokenEnv != "" && s.Channel == "":
			add("notify.slack", "channel", "required with token_env")
		}
	}
	if msg := checkPublicURL(c.Serve.PublicURL); msg != "" {
		add("serve", "public_url", "%s", msg)
	}
	if c.Rotation.Concurrency < 1 || c.Rotation.Concurrency > 1024 {
		add("rotation", "concurrency", "must be between 1 and 1024, got %d", c.Rotation.Concurrency)
	}
	if r := *c.Rotation.Retries; r < 0 || r > 20 {
		add("rotation", "retries", "must be between 0 and 20, got %d", r)
	}
	if d := c.SSH.ConnectTimeout; d < 0 || d > Duration(600*1e9) {
		add("ssh", "connect_timeout", "must be between 1s and 10m, got %s", d.D())
	}
	if e := c.SSH.PassphraseEnv; e != "" && !envNameRE.MatchString(e) {
		add("ssh", "passphrase_env", "%q is not a variable name", e)
	}

	keys := map[string]bool{}
	for i, k := range c.Keys {
		item := fmt.Sprintf("keys[%d]", i)
		if k.ID != "" {
			item += " (" + k.ID + ")"
		}
		switch {
		case k.ID == "":
			add(item, "id", "required")
		case keys[k.ID]:
			add(item, "id", "duplicate id %q", k.ID)
		case !validID(k.ID):
			add(item, "id", "%q: use letters, digits, '-', '_' and '.'", k.ID)
		}
		keys[k.ID] = true
		if k.Provider == "" {
			add(item, "provider", "required (one of %s)", strings.Join(providers, ", "))
		} else if !slices.Contains(providers, k.Provider) {
			add(item, "provider", "unknown provider %q (one of %s)", k.Provider, strings.Join(providers, ", "))
		}
		if k.VaultPath == "" {
			add(item, "vault_path", "required")
		}
		if k.Provider == "http" {
			if k.VerifyURL == "" {
				add(item, "verify_url", "required for provider http")
			}
			if k.Header == "" {
				add(item, "header", "required for provider http")
			}
		} else if k.VerifyURL != "" || k.Header != "" || k.ValidStatus != 0 {
			add(item, "verify_url", "verify_url, header and valid_status are for provider http only")
		}
	}
	seen := map[string]bool{}
	for i, in := range c.Integrations {
		item := fmt.Sprintf("integrations[%d]", i)
		if in.ID != "" {
			item += " (" + in.ID + ")"
		}
		switch {
		case in.ID == "":
			add(item, "id", "required")
		case seen[in.ID]:
			add(item, "id", "duplicate id %q", in.ID)
		case !validID(in.ID):
			add(item, "id", "%q: use letters, digits, '-', '_' and '.'", in.ID)
		}
		seen[in.ID] = true
		if in.Key == "" {
			add(item, "key", "required")
		} else if !keys[in.Key] {
			add(item, "key", "names unknown key %q", in.Key)
		}
		if in.Type == "" {
			add(item, "type", "required")
		}
	}
	errs = append(errs, c.vaultTargets(os.Getenv)...)
	return errs
}

// checkPublicURL says what is wrong with serve.public_url, or "".
func checkPublicURL(raw string) string {
	if raw == "" {
		return ""
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return "not an http(s) URL like https://rekey.example.org"
	case (u.Scheme != "https" && u.Scheme != "http") || u.Host == "":
		return fmt.Sprintf("%q is not an http(s) URL like https://rekey.example.org", raw)
	case u.User != nil:
		return "give the address only: no user or password in it" // and not repeated here
	case u.RawQuery != "" || u.Fragment != "":
		return fmt.Sprintf("%q: give the address only, with no query or fragment", raw)
	}
	return ""
}

var (
	idRE      = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$`)
	envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

func validID(s string) bool { return idRE.MatchString(s) }

// KeyByID returns the key with that id.
func (c *Config) KeyByID(id string) (*Key, bool) {
	for i := range c.Keys {
		if c.Keys[i].ID == id {
			return &c.Keys[i], true
		}
	}
	return nil, false
}

// IntegrationsOf returns the integrations that use key id, in file order.
func (c *Config) IntegrationsOf(id string) []Integration {
	var out []Integration
	for _, in := range c.Integrations {
		if in.Key == id {
			out = append(out, in)
		}
	}
	return out
}

// ItemName names integration i of the file the way errors do.
func (c *Config) ItemName(in Integration) string {
	for i := range c.Integrations {
		if c.Integrations[i].ID == in.ID {
			return fmt.Sprintf("integrations[%d] (%s)", i, in.ID)
		}
	}
	return "integration " + in.ID
}

// DecodeSettings decodes an integration's type-specific fields into dst
// strictly: an unknown field or a wrong type is an *Error naming the file,
// the item and the field.
func (c *Config) DecodeSettings(in Integration, dst any) error {
	var md mapstructure.Metadata
	dec, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{
		DecodeHook:       durationHook,
		ErrorUnused:      true,
		WeaklyTypedInput: false,
		Metadata:         &md,
		Result:           dst,
	})
	if err != nil {
		return err
	}
	if err := dec.Decode(in.Settings); err != nil {
		field, msg := splitDecodeError(err)
		// mapstructure names the root after dst's type ("file.settings").
		root := reflect.TypeOf(dst).Elem().String()
		field = strings.TrimPrefix(strings.TrimPrefix(field, root), ".")
		return &Error{File: c.File, Item: c.ItemName(in), Field: field, Msg: msg}
	}
	return nil
}

// Required returns an *Error for a missing field of an integration.
func (c *Config) Required(in Integration, field, why string) error {
	msg := "required"
	if why != "" {
		msg += " " + why
	}
	return &Error{File: c.File, Item: c.ItemName(in), Field: field, Msg: msg}
}

// Invalid returns an *Error for a bad field of an integration.
func (c *Config) Invalid(in Integration, field, format string, args ...any) error {
	return &Error{File: c.File, Item: c.ItemName(in), Field: field, Msg: fmt.Sprintf(format, args...)}
}

var (
	invalidKeysRE = regexp.MustCompile(`'([^']*)' has invalid keys: ([^\n]+)`)
	quotedRE      = regexp.MustCompile(`'([^']+)'`)
)

// splitDecodeError turns mapstructure's messages into a field and a reason.
func splitDecodeError(err error) (field, msg string) {
	s := err.Error()
	if m := invalidKeysRE.FindStringSubmatch(s); m != nil {
		f := m[2]
		if m[1] != "" {
			f = m[1] + "." + f
		}
		return f, "unknown field"
	}
	for _, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "*"))
		if line == "" || strings.HasPrefix(line, "decoding failed") || strings.HasSuffix(line, "error(s) decoding:") {
			continue
		}
		if m := quotedRE.FindStringSubmatch(line); m != nil {
			rest := strings.TrimSpace(strings.Replace(line, m[0], "", 1))
			return m[1], rest
		}
		return "", line
	}
	return "", s
}

var indexRE = regexp.MustCompile(`^(keys|integrations)\[(\d+)\]\.?(.*)$`)

// decodeErrors turns a failed whole-file decode into located errors.
func decodeErrors(path string, v *viper.Viper, err error) error {
	field, msg := splitDecodeError(err)
	// mapstructure names the root after the Go type ("config.Config").
	field = strings.TrimPrefix(strings.TrimPrefix(field, "config.Config"), ".")
	item := ""
	if m := indexRE.FindStringSubmatch(field); m != nil {
		item = m[1] + "[" + m[2] + "]"
		if id := idAt(v, m[1], m[2]); id != "" {
			item += " (" + id + ")"
		}
		field = m[3]
	} else if i := strings.LastIndexByte(field, '.'); i > 0 {
		item, field = field[:i], field[i+1:]
	} else if msg == "unknown field" {
		item = "top level"
	}
	return &Error{File: path, Item: item, Field: field, Msg: msg}
}

func idAt(v *viper.Viper, list, index string) string {
	items, ok := v.Get(list).([]any)
	if !ok {
		return ""
	}
	var i int
	fmt.Sscan(index, &i)
	if i < 0 || i >= len(items) {
		return ""
	}
	m, ok := items[i].(map[string]any)
	if !ok {
		return ""
	}
	id, _ := m["id"].(string)
	return id
}
