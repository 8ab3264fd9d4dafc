package vaultstore

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	vault "github.com/hashicorp/vault/api"
	"github.com/hashicorp/vault/api/auth/approle"

	"github.com/rekey-dev/rekey/config"
)

// Connect builds a Vault client from the configuration and environment:
// address from the file, else $VAULT_ADDR; namespace from the file, else
// $VAULT_NAMESPACE; a token from the variable named by token_env, else
// $VAULT_TOKEN, or an AppRole login.
func Connect(ctx context.Context, cfg config.Vault, getenv func(string) string) (*vault.Client, error) {
	vc := vault.DefaultConfig()
	if vc.Error != nil {
		return nil, fmt.Errorf("vault: %w", vc.Error)
	}
	if addr := cfg.Address; addr != "" {
		vc.Address = addr
	} else if addr := getenv("VAULT_ADDR"); addr != "" {
		vc.Address = addr
	}
	vc.Timeout = 30 * time.Second
	// rekey decides itself what to retry: a blind retry of a
	// check-and-set write could mistake its own success for a conflict.
	vc.MaxRetries = 0
	c, err := vault.NewClient(vc)
	if err != nil {
		return nil, fmt.Errorf("vault: client for %s: %w", vc.Address, err)
	}
	c.ClearToken()
	ns := cfg.Namespace
	if ns == "" {
		ns = getenv("VAULT_NAMESPACE")
	}
	if ns != "" {
		c.SetNamespace(ns)
	}
	if err := login(ctx, c, cfg, getenv); err != nil {
		return nil, err
	}
	return c, nil
}

// login sets the client's token: AppRole when configured, else the
// variable named by token_env, else $VAULT_TOKEN.
func login(ctx context.Context, c *vault.Client, cfg config.Vault, getenv func(string) string) error {
	if a := cfg.Auth; a != nil {
		roleID := getenv(a.RoleIDEnv)
		if roleID == "" {
			return fmt.Errorf("vault: approle: $%s is not set", a.RoleIDEnv)
		}
		if getenv(a.SecretIDEnv) == "" {
			return fmt.Errorf("vault: approle: $%s is not set", a.SecretIDEnv)
		}
		auth, err := approle.NewAppRoleAuth(roleID, &approle.SecretID{FromString: getenv(a.SecretIDEnv)}, approle.WithMountPath(a.Mount))
		if err != nil {
			return fmt.Errorf("vault: approle: %w", err)
		}
		if _, err := c.Auth().Login(ctx, auth); err != nil {
			return classify(ctx, "vault: approle login at "+c.Address(), err)
		}
		return nil
	}
	name := cfg.TokenEnv
	if name == "" {
		name = "VAULT_TOKEN"
	}
	tok := getenv(name)
	if tok == "" {
		return fmt.Errorf("vault: no token: $%s is not set (or configure vault.auth)", name)
	}
	c.SetToken(tok)
	return nil
}

// KeepLoggedIn keeps a long-running process's token alive until ctx ends:
// it renews a renewable token as its lease runs down, and when the token
// can be renewed no more (its max TTL), logs in again with AppRole. A
// token that never expires needs nothing. It returns when ctx ends, or
// when the token will expire and cannot be replaced (said in the log).
// onToken, if set, is given each new token a login brings (the run's
// redactor must know it) before the client uses it for anything else.
func KeepLoggedIn(ctx context.Context, c *vault.Client, cfg config.Vault, getenv func(string) string, log *slog.Logger, onToken func(string)) {
	for ctx.Err() == nil {
		self, err := c.Auth().Token().LookupSelfWithContext(ctx)
		if err != nil {
			log.Warn("vault: could not look up the token; trying again in a minute", "err", classify(ctx, "vault: token lookup", err).Error())
			if !sleepCtx(ctx, time.Minute) {
				return
			}
			continue
		}
		ttl, _ := self.TokenTTL()
		if ttl == 0 {
			return // a token that never expires (root)
		}
		if renewable, _ := self.TokenIsRenewable(); renewable {
			sec, err := c.Auth().Token().RenewSelfWithContext(ctx, 0)
			if err == nil && sec != nil && sec.Auth != nil {
				w, err := c.NewLifetimeWatcher(&vault.LifetimeWatcherInput{Secret: sec})
				if err == nil {
					go w.Start()
					select {
					case <-ctx.Done():
						w.Stop()
						return
					case err := <-w.DoneCh():
						if err != nil {
							log.Warn("vault: token renewal stopped", "err", classify(ctx, "vault: token renewal", err).Error())
						}
					}
					w.Stop()
				}
			}
		}
		if cfg.Auth == nil {
			// Wait out what is left, then say the token is gone.
			self, err := c.Auth().Token().LookupSelfWithContext(ctx)
			if err == nil {
				ttl, _ = self.TokenTTL()
			}
			log.Error("vault: the token cannot be renewed and expires; restart with a new token, or use vault.auth (AppRole)", "expires_in", ttl.String())
			return
		}
		if err := login(ctx, c, cfg, getenv); err != nil {
			log.Error("vault: could not log in again; trying again in a minute", "err", err.Error())
			if !sleepCtx(ctx, time.Minute) {
				return
			}
			continue
		}
		if onToken != nil {
			onToken(c.Token())
		}
		log.Info("vault: logged in again with AppRole")
	}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
