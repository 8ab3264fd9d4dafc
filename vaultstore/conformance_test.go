package vaultstore

import (
	"testing"

	"github.com/rekey-dev/rekey/internal/vaulttest"
	"github.com/rekey-dev/rekey/store"
	"github.com/rekey-dev/rekey/store/storetest"
)

// The Vault store passes the storage contract's conformance suite against
// a real Vault, as the in-memory store does in memory; each check on a
// fresh KV v2 mount.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(st storetest.T) storetest.Backend {
		tt := st.(*testing.T)
		env := vaulttest.New(tt)
		var handles []*Store
		return storetest.Backend{
			Open: func() store.Store {
				s := New(vaulttest.NewClient(tt, env.Addr, env.Token), env.Mount, "rekey")
				handles = append(handles, s)
				return s
			},
			Largest: func() int {
				n := 0
				for _, s := range handles {
					n = max(n, s.Largest())
				}
				return n
			},
		}
	})
}
