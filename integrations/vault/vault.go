// Package vault is the `vault` integration type: one field of a KV
// version 2 secret that an application reads, in rekey's own Vault or
// another one.
//
//	integrations:
//	  - {id: reporting, key: actionnetwork-main, type: vault,
//	     mount: apps, path: reporting/config, field: ACTION_NETWORK_KEY}
//	  - {id: other-vault, key: actionnetwork-main, type: vault,
//	     address: https://vault.other.example:8200, namespace: team-a,
//	     token_env: OTHER_VAULT_TOKEN, mount: kv, path: sync, field: an_key}
//
// Apply reads the secret, changes only its field (every other field is
// kept), and writes a new version with check-and-set on the version it
// read. When someone else writes in between, Vault refuses the write; Apply
// reads again and retries a couple of times before it reports a conflict.
// When the field already holds the key nothing is written. The integration
// is a Reader: its state is read back and compared.
//
// Defaults: address is vault.address from the configuration, else
// $VAULT_ADDR. The token is $<token_env>, else rekey's own (the variable in
// vault.token_env, else $VAULT_TOKEN); with AppRole login give token_env.
// Without an explicit address the namespace defaults to rekey's own
// (vault.namespace, else $VAULT_NAMESPACE); with one it defaults to none.
// TLS settings come from the standard VAULT_CACERT, VAULT_CLIENT_CERT, ...
// variables, read by the Vault client.
//
// The client never retries by itself (MaxRetries 0): every failure is
// classified by package vaulterr, as rekey's own store's are, and the
// engine decides. Errors keep Vault's own messages (never a body that is
// not Vault's JSON) and never a transport error's text.
package vault

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/rekey-dev/rekey/config"
	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/integrations"
	"github.com/rekey-dev/rekey/internal/vaulterr"
	"github.com/rekey-dev/rekey/secret"
)

// Type is the name of this integration type in the configuration.
const Type = "vault"

// Attempts is how many times Apply tries its read-modify-write when
// check-and-set fails because someone else wrote in between.
const Attempts = 3

type fields struct {
	Mount     string `mapstructure:"mount"`
	Path      string `mapstructure:"path"`
	Field     string `mapstructure:"field"`
	Namespace string `mapstructure:"namespace"`
	Address   string `mapstructure:"address"`
	TokenEnv  string `mapstructure:"token_env"`
}

// Vault is one field of one KV v2 secret.
type Vault struct {
	id       string
	mount    string
	path     string
	field    string
	target   string // for errors: "apps/reporting/config field ACTION_NETWORK_KEY"
	tokenEnv string
	getenv   func(string) string
	client   *vaultapi.Client
	log      *slog.Logger

	mu        sync.Mutex
	mountOK   bool
	lastToken string
}

var (
	_ integrations.Integration = (*Vault)(nil)
	_ integrations.Reader      = (*Vault)(nil)
	_ integrations.Preflighter = (*Vault)(nil)
	_ integrations.Factory     = New
)

// New builds a vault integration from its configuration item.
func New(h integrations.Host, in config.Integration) (integrations.Integration, error) {
	var f fields
	if err := h.Config.DecodeSettings(in, &f); err != nil {
		return nil, err
	}
	getenv := h.Getenv
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	f.Mount, f.Path = strings.Trim(f.Mount, "/"), strings.Trim(f.Path, "/")
	switch {
	case f.Mount == "":
		return nil, h.Config.Required(in, "mount", "(the KV v2 mount, such as secret)")
	case !cleanPath(f.Mount):
		return nil, h.Config.Invalid(in, "mount", "%q is not a mount path", f.Mount)
	case f.Path == "":
		return nil, h.Config.Required(in, "path", "(the secret's path inside the mount)")
	case !cleanPath(f.Path) || strings.HasPrefix(f.Path, "data/") || strings.HasPrefix(f.Path, "metadata/"):
		return nil, h.Config.Invalid(in, "path", "%q: give the path inside the mount, without data/ or metadata/", f.Path)
	case f.Field == "":
		return nil, h.Config.Required(in, "field", "(the field of the secret that holds the key)")
	}

	v := &Vault{
		id: in.ID, mount: f.Mount, path: f.Path, field: f.Field,
		target: f.Mount + "/" + f.Path + " field " + f.Field,
		getenv: getenv, log: h.Logger,
	}
	if v.log == nil {
		v.log = slog.New(slog.DiscardHandler)
	}

	addr, ns := f.Address, f.Namespace
	if addr == "" {
		addr = h.Config.Vault.Address
		if addr == "" {
			addr = getenv("VAULT_ADDR")
		}
		if ns == "" {
			ns = h.Config.Vault.Namespace
			if ns == "" {
				ns = getenv("VAULT_NAMESPACE")
			}
		}
	} else {
		v.target += " at " + addr
	}
	if addr == "" {
		return nil, h.Config.Required(in, "address", "(no vault.address in the configuration and VAULT_ADDR is not set)")
	}
	if u, err := url.Parse(addr); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, h.Config.Invalid(in, "address", "%q is not an http(s) URL", addr)
	}
	if ns != "" {
		v.target += " in namespace " + ns
	}

	// rekey's own token may write every key it manages: it goes to rekey's
	// own Vault only. Another address needs a token of its own.
	own := h.Config.Vault.Address
	if own == "" {
		own = getenv("VAULT_ADDR")
	}
	if f.Address != "" && f.TokenEnv == "" && strings.TrimRight(f.Address, "/") != strings.TrimRight(own, "/") {
		return nil, h.Config.Required(in, "token_env", "with an address other than rekey's own Vault (rekey's token is not sent to another Vault)")
	}
	switch {
	case f.TokenEnv != "":
		v.tokenEnv = f.TokenEnv
	case h.Config.Vault.TokenEnv != "":
		v.tokenEnv = h.Config.Vault.TokenEnv
	default:
		v.tokenEnv = "VAULT_TOKEN"
	}

	cfg := vaultapi.DefaultConfig()
	if cfg.Error != nil {
		return nil, fmt.Errorf("vault: %s: client settings from VAULT_* variables: %w: %w", v.target, cfg.Error, failure.ErrInvalid)
	}
	cfg.Address = addr
	cfg.AgentAddress = ""
	cfg.MaxRetries = 0
	c, err := vaultapi.NewClient(cfg)
	if err != nil {
		return nil, h.Config.Invalid(in, "address", "%v", err)
	}
	c.SetToken("") // NewClient took $VAULT_TOKEN from the process; tokens come from Getenv
	if ns != "" {
		c.SetNamespace(ns)
	} else {
		c.ClearNamespace()
	}
	v.client = c
	return v, nil
}

func cleanPath(p string) bool {
	for _, seg := range strings.Split(p, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return false
		}
	}
	return !strings.ContainsAny(p, "?#\x00")
}

// ID implements integrations.Integration.
func (v *Vault) ID() string { return v.id }

func (v *Vault) dataPath() string { return v.mount + "/data/" + v.path }

// current is what the secret holds now.
type current struct {
	data    map[string]any // nil when the secret does not exist or its version is deleted
	version int64          // 0 when the secret does not exist
	created time.Time
}

// Apply implements integrations.Integration.
func (v *Vault) Apply(ctx context.Context, req integrations.ApplyRequest) (integrations.ApplyResult, error) {
	what := "vault: write " + v.target
	if err := ctx.Err(); err != nil {
		return integrations.ApplyResult{}, fmt.Errorf("%s: %w", what, err)
	}
	if req.Key.IsZero() {
		return integrations.ApplyResult{}, fmt.Errorf("%s: empty key: %w", what, failure.ErrInvalid)
	}
	for attempt := 1; ; attempt++ {
		cur, err := v.read(ctx)
		if err != nil {
			return integrations.ApplyResult{}, err
		}
		if s, ok := cur.data[v.field].(string); ok && secret.New(s).Equal(req.Key) {
			v.log.DebugContext(ctx, "vault: field already holds the key", "integration", v.id, "version", cur.version)
			return integrations.ApplyResult{Changed: false, At: cur.created}, nil
		}
		merged := make(map[string]any, len(cur.data)+1)
		for k, val := range cur.data {
			merged[k] = val
		}
		merged[v.field] = req.Key.Reveal()
		res, err := v.write(ctx, merged, cur.version)
		if err == nil {
			v.log.InfoContext(ctx, "vault: key written", "integration", v.id, "target", v.target, "version", res.version, "fingerprint", req.Key.Fingerprint())
			return integrations.ApplyResult{Changed: true, At: res.created}, nil
		}
		if !errors.Is(err, errCAS) {
			return integrations.ApplyResult{}, err
		}
		if attempt == Attempts {
			return integrations.ApplyResult{}, fmt.Errorf("%s: someone else wrote it between each of %d reads and writes: %w", what, Attempts, failure.ErrConflict)
		}
		v.log.DebugContext(ctx, "vault: check-and-set lost a race; reading again", "integration", v.id, "version", cur.version)
	}
}

// Read implements integrations.Reader.
func (v *Vault) Read(ctx context.Context) (secret.Key, error) {
	what := "vault: read " + v.target
	cur, err := v.read(ctx)
	if err != nil {
		return secret.Key{}, err
	}
	if cur.data == nil {
		return secret.Key{}, fmt.Errorf("%s: the secret does not exist or its latest version is deleted: %w", what, failure.ErrNotFound)
	}
	val, ok := cur.data[v.field]
	if !ok || val == nil || val == "" {
		return secret.Key{}, fmt.Errorf("%s: the secret has no value in that field: %w", what, failure.ErrNotFound)
	}
	s, ok := val.(string)
	if !ok {
		return secret.Key{}, fmt.Errorf("%s: the field holds a %T, not a string: %w", what, val, failure.ErrInvalid)
	}
	return secret.New(s), nil
}

func (v *Vault) read(ctx context.Context) (current, error) {
	what := "vault: read " + v.target
	if err := v.prepare(ctx, what); err != nil {
		return current{}, err
	}
	s, err := v.client.Logical().ReadWithContext(ctx, v.dataPath())
	if err != nil {
		return current{}, v.classify(ctx, what, err)
	}
	if s == nil {
		return current{}, nil
	}
	cur := current{}
	cur.data, _ = s.Data["data"].(map[string]any)
	if md, ok := s.Data["metadata"].(map[string]any); ok {
		cur.version = number(md["version"])
		cur.created, _ = time.Parse(time.RFC3339Nano, fmt.Sprint(md["created_time"]))
	}
	if cur.version == 0 && cur.data != nil {
		return current{}, fmt.Errorf("%s: answer has no metadata version: %w", what, failure.ErrInvalid)
	}
	return cur, nil
}

var errCAS = errors.New("check-and-set did not match the current version")

func (v *Vault) write(ctx context.Context, data map[string]any, cas int64) (current, error) {
	what := "vault: write " + v.target
	s, err := v.client.Logical().WriteWithContext(ctx, v.dataPath(), map[string]any{
		"data":    data,
		"options": map[string]any{"cas": cas},
	})
	if err != nil {
		err = v.classify(ctx, what, err)
		if errors.Is(err, failure.ErrConflict) {
			return current{}, fmt.Errorf("%s: %w", what, errCAS)
		}
		return current{}, err
	}
	out := current{created: time.Now()}
	if s != nil {
		out.version = number(s.Data["version"])
		if t, err := time.Parse(time.RFC3339Nano, fmt.Sprint(s.Data["created_time"])); err == nil {
			out.created = t
		}
	}
	return out, nil
}

// prepare sets the token and, once, checks that the mount is KV version 2:
// a write to <mount>/data/<path> on a version 1 mount would store the
// request as a plain secret.
func (v *Vault) prepare(ctx context.Context, what string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	token := v.getenv(v.tokenEnv)
	if token == "" {
		return fmt.Errorf("%s: no Vault token: $%s is empty or not set: %w", what, v.tokenEnv, failure.ErrUnauthorized)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if token != v.lastToken {
		v.client.SetToken(token)
		v.lastToken = token
	}
	if v.mountOK {
		return nil
	}
	// sys/internal/ui/mounts/<path> answers for any token that can use the
	// path, as the vault CLI's kv commands rely on.
	s, err := v.client.Logical().ReadWithContext(ctx, "sys/internal/ui/mounts/"+v.mount+"/"+v.path)
	if err != nil {
		var re *vaultapi.ResponseError
		if errors.As(err, &re) && (re.StatusCode == http.StatusForbidden || re.StatusCode == http.StatusNotFound) {
			return nil // cannot tell; the data path's own answer will say
		}
		return v.classify(ctx, what, err)
	}
	if s == nil {
		return nil
	}
	mountPath := strings.Trim(fmt.Sprint(s.Data["path"]), "/")
	opts, _ := s.Data["options"].(map[string]any)
	if s.Data["type"] != "kv" || opts == nil || fmt.Sprint(opts["version"]) != "2" {
		return fmt.Errorf("%s: %s is not a KV version 2 mount: %w", what, mountPath, failure.ErrInvalid)
	}
	if mountPath != v.mount {
		return fmt.Errorf("%s: the mount is %s, not %s: set mount and path accordingly: %w", what, mountPath, v.mount, failure.ErrInvalid)
	}
	v.mountOK = true
	return nil
}

// Preflight implements integrations.Preflighter: it checks, writing
// nothing, what Apply needs, in this order:
//
//   - the token ($token_env, or rekey's own) is set and Vault accepts it;
//   - the mount is KV version 2 (sys/internal/ui/mounts, as Apply checks
//     before its first write); a mount Vault does not know is ErrNotFound;
//   - the secret reads, as Apply's read-modify-write and the read-back of
//     the state need;
//   - Vault says (sys/capabilities-self on <mount>/data/<path>, a question
//     about the token that changes nothing) that the token may read the
//     secret and write its next version: "update" when the secret exists,
//     "create" when it does not yet (a policy may grant one and not the
//     other);
//   - check-and-set: Apply writes with check-and-set on the version it read
//     (0 for a new secret), which a mount or a secret with cas_required
//     takes, so the mode needs no permission of its own; Preflight reads
//     the version the write will check against.
//
// A missing secret is not a failure: Apply creates it.
func (v *Vault) Preflight(ctx context.Context) error {
	what := "vault: check the write of " + v.target
	cur, err := v.read(ctx)
	if err != nil {
		return err
	}
	if err := v.mountKnown(ctx, what); err != nil {
		return err
	}
	caps, err := v.client.Sys().CapabilitiesSelfWithContext(ctx, v.dataPath())
	if err != nil {
		return v.classify(ctx, what+": ask Vault what the token may do", err)
	}
	has := func(c string) bool { return slices.Contains(caps, c) || slices.Contains(caps, "root") }
	var lack []string
	need := "update"
	why := "the secret exists (version " + strconv.FormatInt(cur.version, 10) + "), so a write updates it"
	if cur.version == 0 {
		need, why = "create", "the secret does not exist yet, so the first write creates it"
	}
	if !has(need) {
		lack = append(lack, need)
	}
	if !has("read") {
		lack = append(lack, "read")
	}
	if len(lack) > 0 {
		return fmt.Errorf("%s: the token in $%s lacks %s on %s (%s; Vault grants %s): %w",
			what, v.tokenEnv, strings.Join(lack, " and "), v.dataPath(), why, capList(caps), failure.ErrUnauthorized)
	}
	return nil
}

func capList(caps []string) string {
	if len(caps) == 0 || slices.Equal(caps, []string{"deny"}) {
		return "nothing"
	}
	return strings.Join(caps, ", ")
}

// mountKnown makes sure prepare found the mount to be KV version 2: when
// Vault would not say (a mount it does not know), a write would fail.
func (v *Vault) mountKnown(ctx context.Context, what string) error {
	v.mu.Lock()
	ok := v.mountOK
	v.mu.Unlock()
	if ok {
		return nil
	}
	return fmt.Errorf("%s: Vault has no KV version 2 mount at %s that this token can see: %w", what, v.mount, failure.ErrNotFound)
}

// classify turns a Vault client error into a classified one: package
// vaulterr, the classifier rekey's own store uses too.
func (v *Vault) classify(ctx context.Context, what string, err error) error {
	return vaulterr.ClassifyToken(ctx, what, v.tokenEnv, err)
}

func number(v any) int64 {
	switch n := v.(type) {
	case json.Number:
		i, _ := n.Int64()
		return i
	case float64:
		return int64(n)
	case int64:
		return n
	case int:
		return int64(n)
	}
	return 0
}
