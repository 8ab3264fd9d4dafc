package render_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rekey-dev/rekey/config"
	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/integrations"
	"github.com/rekey-dev/rekey/integrations/internal/platformtest"
	"github.com/rekey-dev/rekey/integrations/render"
	"github.com/rekey-dev/rekey/internal/leakcheck"
	"github.com/rekey-dev/rekey/internal/rendertest"
	"github.com/rekey-dev/rekey/secret"
	"github.com/rekey-dev/rekey/state"
)

const svc = "srv-cq1example0000000000"

type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) { l.mu.Lock(); defer l.mu.Unlock(); return l.b.Write(p) }
func (l *logBuf) Bytes() []byte               { l.mu.Lock(); defer l.mu.Unlock(); return bytes.Clone(l.b.Bytes()) }

func build(t *testing.T, srv *rendertest.Server, token string, settings map[string]any) (integrations.Integration, *logBuf, error) {
	t.Helper()
	s := map[string]any{"service": svc, "variable": "ACTION_NETWORK_API_KEY", "token_env": "RENDER_API_KEY", "api_url": srv.URL}
	maps.Copy(s, settings)
	for k, v := range s {
		if v == nil {
			delete(s, k)
		}
	}
	item := config.Integration{ID: "spoke-render", Key: "actionnetwork-main", Type: render.Type, Settings: s}
	logs := &logBuf{}
	h := integrations.Host{
		Config: &config.Config{File: "rekey.yaml", Integrations: []config.Integration{item}},
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Getenv: func(k string) string { return map[string]string{"RENDER_API_KEY": token}[k] },
	}
	in, err := render.New(h, item)
	return in, logs, err
}

func newServer(t *testing.T) *rendertest.Server {
	srv := rendertest.New(t)
	srv.AddService(svc, "spoke", "DATABASE_URL", "postgres://spoke@db/spoke", "ACTION_NETWORK_API_KEY", "an-old-key-0123456789", "NODE_ENV", "production")
	return srv
}

func TestApplyChangesOneVariableAndDeploysOnce(t *testing.T) {
	ctx := context.Background()
	srv := newServer(t)
	in, logs, err := build(t, srv, srv.Token, map[string]any{"deploy": true})
	if err != nil {
		t.Fatal(err)
	}
	key := secret.New("an-new-key-fedcba9876543210")
	res, err := in.Apply(ctx, integrations.ApplyRequest{Key: key, RotationID: "r1"})
	if err != nil || !res.Changed {
		t.Fatalf("Apply = %+v, %v", res, err)
	}
	want := []string{"DATABASE_URL=postgres://spoke@db/spoke", "ACTION_NETWORK_API_KEY=" + key.Reveal(), "NODE_ENV=production"}
	if got := srv.Vars(svc); !slices.Equal(got, want) {
		t.Errorf("variables after Apply differ from the old ones with only the key changed")
	}
	if srv.BulkReplaces() != 0 || srv.Writes() != 1 || srv.Deploys(svc) != 1 {
		t.Errorf("%d bulk replaces, %d writes, %d deploys; want 0, 1, 1", srv.BulkReplaces(), srv.Writes(), srv.Deploys(svc))
	}
	last := state.Written{Fingerprint: key.Fingerprint(), At: time.Now()}
	res, err = in.Apply(ctx, integrations.ApplyRequest{Key: key, RotationID: "r1", Last: last})
	if err != nil || res.Changed || srv.Writes() != 1 || srv.Deploys(svc) != 1 {
		t.Errorf("Apply of the key it holds: %+v, %v; %d writes, %d deploys", res, err, srv.Writes(), srv.Deploys(svc))
	}
	st := integrations.Observe(ctx, in, integrations.Expect{Versions: map[string]integrations.VersionState{key.Fingerprint(): integrations.VersionCurrent}, Current: key.Fingerprint()})
	if st.State != state.Current || st.Proof != state.Exact {
		t.Errorf("Observe = %+v", st)
	}
	leakcheck.Assert(t, "logs", append(srv.Log(), logs.Bytes()...), key.Reveal(), "an-old-key-0123456789")
}

func TestDeployThatFailedIsStartedOnTheRetry(t *testing.T) {
	ctx := context.Background()
	srv := newServer(t)
	in, _, err := build(t, srv, srv.Token, map[string]any{"deploy": true})
	if err != nil {
		t.Fatal(err)
	}
	key := secret.New("an-new-key-fedcba9876543210")
	srv.FailDeploys(1)
	_, err = in.Apply(ctx, integrations.ApplyRequest{Key: key, RotationID: "r1"})
	if !failure.IsTransient(err) || !strings.Contains(err.Error(), "start a deploy of service "+svc) {
		t.Fatalf("Apply whose deploy got a 503: %v; want a transient error naming the deploy", err)
	}
	if got, _ := srv.Var(svc, "ACTION_NETWORK_API_KEY"); !got.Equal(key) || srv.Deploys(svc) != 0 {
		t.Fatalf("after the failed deploy: holds %v, %d deploys", got, srv.Deploys(svc))
	}
	// The engine retries with what it recorded before: not this key.
	res, err := in.Apply(ctx, integrations.ApplyRequest{Key: key, RotationID: "r1"})
	if err != nil || srv.Writes() != 1 || srv.Deploys(svc) != 1 {
		t.Errorf("retry: %+v, %v; %d writes, %d deploys; want the deploy started, nothing rewritten", res, err, srv.Writes(), srv.Deploys(svc))
	}
}

func TestPreflight(t *testing.T) {
	ctx := context.Background()
	srv := newServer(t)
	in, _, err := build(t, srv, srv.Token, map[string]any{"deploy": true})
	if err != nil {
		t.Fatal(err)
	}
	if err := in.(integrations.Preflighter).Preflight(ctx); err != nil {
		t.Errorf("Preflight: %v", err)
	}
	srv.DeleteVar(svc, "ACTION_NETWORK_API_KEY")
	if err := in.(integrations.Preflighter).Preflight(ctx); err != nil {
		t.Errorf("Preflight with the variable not there yet: %v", err)
	}
	srv.Suspend(svc)
	if err := in.(integrations.Preflighter).Preflight(ctx); !errors.Is(err, failure.ErrInvalid) || !strings.Contains(err.Error(), "suspended") {
		t.Errorf("Preflight of a suspended service with deploy: %v", err)
	}
}

func TestFailures(t *testing.T) {
	platformtest.Run(t, platformtest.Target{
		New: func(t *testing.T, badToken, missing bool) (integrations.Integration, platformtest.Server, platformtest.Probe) {
			srv := newServer(t)
			token := srv.Token
			if badToken {
				token = "rnd_wrong"
			}
			service := svc
			if missing {
				service = "srv-gone000000000000"
			}
			in, logs, err := build(t, srv, token, map[string]any{"service": service})
			if err != nil {
				t.Fatal(err)
			}
			return in, srv, probe{srv, logs}
		},
		Hostile: func(t *testing.T, at func(string) string) (integrations.Integration, string, func() []byte) {
			srv := newServer(t)
			in, logs, err := build(t, srv, srv.Token, map[string]any{"api_url": at(strings.TrimSuffix(srv.URL, "/v1/")) + "/v1/", "deploy": true})
			if err != nil {
				t.Fatal(err)
			}
			return in, srv.Token, logs.Bytes
		},
		Names:   []string{"service " + svc, "$RENDER_API_KEY"},
		Missing: []string{"service srv-gone000000000000"},
		Wait:    3 * time.Second,
	})
}

type probe struct {
	srv  *rendertest.Server
	logs *logBuf
}

func (p probe) Holds() secret.Key { k, _ := p.srv.Var(svc, "ACTION_NETWORK_API_KEY"); return k }
func (p probe) Writes() int       { return p.srv.Writes() }
func (p probe) Logs() []byte      { return p.logs.Bytes() }

func TestConfigErrors(t *testing.T) {
	srv := rendertest.New(t)
	for _, c := range []struct {
		settings map[string]any
		field    string
	}{
		{map[string]any{"service": nil}, "service"},
		{map[string]any{"service": "spoke"}, "service"},
		{map[string]any{"variable": "A B"}, "variable"},
		{map[string]any{"token_env": nil}, "token_env"},
		{map[string]any{"deploy": "yes"}, "deploy"},
	} {
		_, _, err := build(t, srv, srv.Token, c.settings)
		var ce *config.Error
		if !errors.As(err, &ce) || ce.Field != c.field {
			t.Errorf("settings %v: %v, want a config error on field %s", c.settings, err, c.field)
		}
	}
}
