package sshpool_test

import (
	"context"
	"sync"
	"testing"

	"github.com/rekey-dev/rekey/internal/sshpool"
	"github.com/rekey-dev/rekey/internal/sshtest"
)

// Many commands and SFTP operations at once on one host, more than a
// connection carries sessions, all succeed over one connection: sessions
// wait for a slot, idle SFTP sessions give theirs up, and a session sshd
// refuses because it has not yet torn down one rekey closed is asked for
// again (the connection is not taken for lost).
func TestManySessionsOneConnection(t *testing.T) {
	srv := sshtest.Start(t, sshtest.Options{})
	p := pool(t, srv, func(o *sshpool.Options) { o.Sessions = 8 })
	h := host(t, p, srv.Target(0))
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for i := range 200 {
		wg.Go(func() {
			var err error
			if i%3 == 0 {
				_, err = h.Run(context.Background(), sshpool.Command{What: "t", Argv: []string{"true"}})
			} else {
				c, rel, e := h.SFTP(context.Background())
				err = e
				if e == nil {
					_, err = c.Stat("/")
					rel()
				}
			}
			if err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Errorf("%d errors, first: %v\n%s", len(errs), errs[0], srv.Log())
	}
	if n := p.Connections()[srv.Target(0)]; n != 1 {
		t.Errorf("%d connections, want 1", n)
	}
}
