package conformance_test

import (
	"bytes"
	"log/slog"
	"sync"

	"github.com/rekey-dev/rekey/config"
	"github.com/rekey-dev/rekey/integrations"
)

// host builds what a factory is given, with the integration's log kept
// for the leak search.
func host(in config.Integration, getenv func(string) string) (integrations.Host, *syncBuffer) {
	logs := &syncBuffer{}
	cfg := &config.Config{File: "rekey.yaml", Integrations: []config.Integration{in}}
	return integrations.Host{
		Config: cfg,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Getenv: getenv,
	}, logs
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.b.Bytes())
}

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
