package vaultstore

import (
	"context"
	"fmt"
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
	if a := cfg.Auth; a != nil {
		roleID := getenv(a.RoleIDEnv)
		if roleID == "" {
			return nil, fmt.Errorf("vault: approle: $%s is not set", a.RoleIDEnv)
		}
		if getenv(a.SecretIDEnv) == "" {
			return nil, fmt.Errorf("vault: approle: $%s is not set", a.SecretIDEnv)
		}
		auth, err := approle.NewAppRoleAuth(roleID, &approle.SecretID{FromString: getenv(a.SecretIDEnv)}, approle.WithMountPath(a.Mount))
		if err != nil {
			return nil, fmt.Errorf("vault: approle: %w", err)
		}
		if _, err := c.Auth().Login(ctx, auth); err != nil {
			return nil, classify("vault: approle login at "+vc.Address, err)
		}
		return c, nil
	}
	name := cfg.TokenEnv
	if name == "" {
		name = "VAULT_TOKEN"
	}
	tok := getenv(name)
	if tok == "" {
		return nil, fmt.Errorf("vault: no token: $%s is not set (or configure vault.auth)", name)
	}
	c.SetToken(tok)
	return c, nil
}
