package cli

import (
	"encoding/json"
	"os"
	"sync"
	"time"
)

// TraceEnv names the file to which a command appends, as one JSON line
// each, the time it reached each step ({"step": "config", "at_ns": …}):
// loading the configuration, connecting to Vault, the preflight, and the
// engine's steps (rotation.Step). scripts/bench sets it to see where the
// time of a whole `rekey rotate` process goes; nothing else does.
const TraceEnv = "REKEY_TRACE"

// tracer appends steps to $REKEY_TRACE's file; the zero tracer does
// nothing.
type tracer struct {
	mu sync.Mutex
	f  *os.File
}

func newTracer(getenv func(string) string) *tracer {
	p := getenv(TraceEnv)
	if p == "" {
		return &tracer{}
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return &tracer{}
	}
	return &tracer{f: f}
}

func (t *tracer) mark(step string) {
	if t == nil || t.f == nil {
		return
	}
	b, _ := json.Marshal(struct {
		Step string `json:"step"`
		At   int64  `json:"at_ns"`
	}{step, time.Now().UnixNano()})
	t.mu.Lock()
	defer t.mu.Unlock()
	t.f.Write(append(b, '\n'))
}

// trace marks that the command reached step.
func (a *app) trace(step string) { a.g.tracer.mark(step) }
