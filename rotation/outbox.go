package rotation

import (
	"context"
	"sync"

	"github.com/rekey-dev/rekey/notifiers"
)

// outbox delivers the notifications of one run in the order they were
// sent, on a goroutine of its own, so that a slow or failing notifier
// (Slack answering 429 with a long Retry-After, or not at all) never
// holds up the integrations: the outage lasts until the last of them has
// the key, not until Slack has heard of it.
type outbox struct {
	e   *Engine
	ctx context.Context

	mu      sync.Mutex
	queue   []notifiers.Event
	closing bool
	more    chan struct{} // capacity 1: something was queued, or closing
	done    chan struct{}
}

func (e *Engine) newOutbox(ctx context.Context) *outbox {
	o := &outbox{e: e, ctx: context.WithoutCancel(ctx), more: make(chan struct{}, 1), done: make(chan struct{})}
	go o.run()
	return o
}

// send queues ev; it never blocks.
func (o *outbox) send(ev notifiers.Event) {
	if o.e.Notifier == nil {
		return
	}
	o.mu.Lock()
	o.queue = append(o.queue, ev)
	o.mu.Unlock()
	o.wake()
}

func (o *outbox) wake() {
	select {
	case o.more <- struct{}{}:
	default:
	}
}

// close waits until every queued event was delivered or given up on.
func (o *outbox) close() {
	o.mu.Lock()
	o.closing = true
	o.mu.Unlock()
	o.wake()
	<-o.done
}

func (o *outbox) run() {
	defer close(o.done)
	for {
		o.mu.Lock()
		if len(o.queue) == 0 {
			closing := o.closing
			o.mu.Unlock()
			if closing {
				return
			}
			<-o.more
			continue
		}
		ev := o.queue[0]
		o.queue = o.queue[1:]
		o.mu.Unlock()
		o.e.notify(o.ctx, ev)
	}
}
