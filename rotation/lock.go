package rotation

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rekey-dev/rekey/records"
	"github.com/rekey-dev/rekey/store"
)

func operatorName(l records.Lock) string {
	if l.User == "" && l.Host == "" {
		return "unknown"
	}
	return l.User + "@" + l.Host
}

func (e *Engine) lock(ctx context.Context, job Job, command string) (store.Lease, error) {
	holder := e.Operator
	holder.Command = command + " " + job.Key.ID
	l, err := e.Store.Lock(ctx, job.Key.ID, holder, e.LockTTL)
	var locked *store.LockedError
	if err != nil && !errors.As(err, &locked) {
		err = fmt.Errorf("take the rotation lock: %w", err)
		if command == "rotate" {
			return nil, &NotStoredError{Err: err}
		}
		return nil, err
	}
	return l, err
}

// hold keeps the lease alive until the returned func is called; that
// func (safe to call more than once) stops renewing it and releases it.
func (e *Engine) hold(ctx context.Context, l store.Lease) func() {
	stopRenew := e.renew(ctx, l)
	var once sync.Once
	return func() {
		once.Do(func() {
			stopRenew()
			e.release(l)
		})
	}
}

func (e *Engine) release(l store.Lease) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := l.Release(ctx); err != nil {
		e.logger().Error("could not release the rotation lock; it expires by itself", "err", err)
	}
}

// renew keeps the lease alive until the returned func is called.
func (e *Engine) renew(ctx context.Context, l store.Lease) func() {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(e.LockTTL / 3)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if err := l.Renew(ctx); err != nil && ctx.Err() == nil {
					e.logger().Warn("could not renew the rotation lock", "err", err)
				}
			}
		}
	}()
	return func() { cancel(); <-done }
}
