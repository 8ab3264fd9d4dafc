package config

import (
	"fmt"
	"net/url"

	"strings"
)

// vaultTargets finds vault integrations that would write into rekey's own
// records (<mount>/<state_path>/) or over a key rekey manages (a key's
// vault_path), in the Vault and mount rekey uses: a rotation would
// overwrite its own journal or another key with a key value. Settings are
// read as the vault type reads them: address defaults to vault.address,
// else $VAULT_ADDR; without an address, namespace defaults to rekey's
// (vault.namespace, else $VAULT_NAMESPACE), with one to none.
func (c *Config) vaultTargets(getenv func(string) string) Errors {
	var errs Errors
	addr := c.Vault.Address
	if addr == "" {
		addr = getenv("VAULT_ADDR")
	}
	ns := c.Vault.Namespace
	if ns == "" {
		ns = getenv("VAULT_NAMESPACE")
	}
	for i, in := range c.Integrations {
		if in.Type != "vault" {
			continue
		}
		str := func(k string) string { s, _ := in.Settings[k].(string); return s }
		mount, path := strings.Trim(str("mount"), "/"), strings.Trim(str("path"), "/")
		if mount != c.Vault.Mount || path == "" {
			continue
		}
		inNS := str("namespace")
		if a := str("address"); a != "" {
			if !sameAddress(a, addr) {
				continue
			}
		} else if inNS == "" {
			inNS = ns
		}
		if strings.Trim(inNS, "/") != strings.Trim(ns, "/") {
			continue
		}
		item := fmt.Sprintf("integrations[%d]", i)
		if in.ID != "" {
			item += " (" + in.ID + ")"
		}
		where := mount + "/" + path
		if sp := c.Vault.StatePath; path == sp || strings.HasPrefix(path, sp+"/") {
			errs = append(errs, &Error{File: c.File, Item: item, Field: "path",
				Msg: fmt.Sprintf("%s is in rekey's own records (%s/%s/): a rotation would overwrite them with a key; give the path an application reads", where, mount, sp)})
			continue
		}
		for _, k := range c.Keys {
			if strings.Trim(k.VaultPath, "/") == path {
				errs = append(errs, &Error{File: c.File, Item: item, Field: "path",
					Msg: fmt.Sprintf("%s is where rekey keeps key %s: a rotation would write a key over it; give the path an application reads", where, k.ID)})
				break
			}
		}
	}
	return errs
}

// sameAddress reports whether two Vault addresses name the same server:
// scheme and host compared without case, a trailing slash ignored.
func sameAddress(a, b string) bool {
	ua, err1 := url.Parse(strings.TrimSpace(a))
	ub, err2 := url.Parse(strings.TrimSpace(b))
	if err1 != nil || err2 != nil {
		return strings.EqualFold(strings.TrimRight(a, "/"), strings.TrimRight(b, "/"))
	}
	return strings.EqualFold(ua.Scheme, ub.Scheme) && strings.EqualFold(ua.Host, ub.Host) &&
		strings.TrimRight(ua.Path, "/") == strings.TrimRight(ub.Path, "/")
}
