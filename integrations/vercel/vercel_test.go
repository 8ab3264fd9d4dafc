package vercel_test

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
	"github.com/rekey-dev/rekey/integrations/vercel"
	"github.com/rekey-dev/rekey/internal/leakcheck"
	"github.com/rekey-dev/rekey/internal/verceltest"
	"github.com/rekey-dev/rekey/secret"
	"github.com/rekey-dev/rekey/state"
)

type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) { l.mu.Lock(); defer l.mu.Unlock(); return l.b.Write(p) }
func (l *logBuf) Bytes() []byte               { l.mu.Lock(); defer l.mu.Unlock(); return bytes.Clone(l.b.Bytes()) }

func build(t *testing.T, srv *verceltest.Server, token string, settings map[string]any) (integrations.Integration, *logBuf, error) {
	t.Helper()
	s := map[string]any{"project": "campaign-site", "team": "greens", "variable": "ACTION_NETWORK_API_KEY", "token_env": "VERCEL_TOKEN", "api_url": srv.URL}
	maps.Copy(s, settings)
	for k, v := range s {
		if v == nil {
			delete(s, k)
		}
	}
	item := config.Integration{ID: "campaign-vercel", Key: "actionnetwork-main", Type: vercel.Type, Settings: s}
	logs := &logBuf{}
	h := integrations.Host{
		Config: &config.Config{File: "rekey.yaml", Integrations: []config.Integration{item}},
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Getenv: func(k string) string { return map[string]string{"VERCEL_TOKEN": token}[k] },
	}
	in, err := vercel.New(h, item)
	return in, logs, err
}

const old = "an-old-key-0123456789"

func newServer(t *testing.T) *verceltest.Server {
	srv := verceltest.New(t)
	srv.AddProject("campaign-site", true)
	srv.SetEnv("campaign-site", verceltest.Env{Key: "ACTION_NETWORK_API_KEY", Value: old, Type: "encrypted", Target: []string{"production"}, UpdatedAt: time.Now().Add(-time.Hour)})
	srv.SetEnv("campaign-site", verceltest.Env{Key: "ACTION_NETWORK_API_KEY", Value: "preview-key-0000000", Type: "encrypted", Target: []string{"preview", "development"}})
	srv.SetEnv("campaign-site", verceltest.Env{Key: "NEXT_PUBLIC_SITE", Value: "https://greens.example", Type: "plain", Target: []string{"production", "preview"}})
	return srv
}

func current(k secret.Key) integrations.Expect {
	return integrations.Expect{Versions: map[string]integrations.VersionState{k.Fingerprint(): integrations.VersionCurrent}, Current: k.Fingerprint()}
}

func TestApplyUpsertsTheTargetAndRedeploysOnce(t *testing.T) {
	ctx := context.Background()
	srv := newServer(t)
	in, logs, err := build(t, srv, srv.Token, map[string]any{"redeploy": true})
	if err != nil {
		t.Fatal(err)
	}
	before := srv.Envs("campaign-site")
	key := secret.New("an-new-key-fedcba9876543210")
	res, err := in.Apply(ctx, integrations.ApplyRequest{Key: key})
	if err != nil || !res.Changed {
		t.Fatalf("Apply = %+v, %v", res, err)
	}
	after := srv.Envs("campaign-site")
	if len(after) != len(before) {
		t.Fatalf("%d entries, want %d", len(after), len(before))
	}
	for i := range before {
		b, a := before[i], after[i]
		if i == 0 {
			if a.Value != key.Reveal() || a.Type != "encrypted" || !slices.Equal(a.Target, []string{"production"}) || a.ID != b.ID {
				t.Errorf("production entry after Apply: holds the key %v, type %s, target %v", a.Value == key.Reveal(), a.Type, a.Target)
			}
			continue
		}
		if a.Value != b.Value || !a.UpdatedAt.Equal(b.UpdatedAt) {
			t.Errorf("entry %s (%v) changed", b.Key, b.Target)
		}
	}
	if srv.Redeploys("campaign-site") != 1 || srv.Writes() != 1 {
		t.Errorf("%d redeploys, %d writes; want 1, 1", srv.Redeploys("campaign-site"), srv.Writes())
	}
	if !strings.Contains(string(srv.Log()), "POST /v10/projects/campaign-site/env?slug=greens&upsert=true -> 201") {
		t.Errorf("no upsert POST:\n%s", srv.Log())
	}
	res, err = in.Apply(ctx, integrations.ApplyRequest{Key: key, Last: state.Written{Fingerprint: key.Fingerprint(), At: res.At}})
	if err != nil || res.Changed || srv.Writes() != 1 || srv.Redeploys("campaign-site") != 1 {
		t.Errorf("Apply of the key it holds: %+v, %v", res, err)
	}
	if st := integrations.Observe(ctx, in, current(key)); st.State != state.Current || st.Proof != state.Exact {
		t.Errorf("Observe = %+v", st)
	}
	if err := in.(integrations.Preflighter).Preflight(ctx); err != nil {
		t.Errorf("Preflight: %v", err)
	}
	leakcheck.Assert(t, "logs", append(srv.Log(), logs.Bytes()...), key.Reveal(), old)
}

func TestTargetsWithoutAnEntryGetOne(t *testing.T) {
	ctx := context.Background()
	srv := verceltest.New(t)
	srv.AddProject("campaign-site", true)
	srv.SetEnv("campaign-site", verceltest.Env{Key: "ACTION_NETWORK_API_KEY", Value: old, Type: "plain", Target: []string{"production"}})
	in, _, err := build(t, srv, srv.Token, map[string]any{"targets": []any{"production", "preview"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := in.(integrations.Reader).Read(ctx); !errors.Is(err, failure.ErrNotFound) || !strings.Contains(err.Error(), "no value for preview") {
		t.Errorf("Read with preview not served: %v", err)
	}
	key := secret.New("an-new-key-fedcba9876543210")
	if _, err := in.Apply(ctx, integrations.ApplyRequest{Key: key}); err != nil {
		t.Fatal(err)
	}
	envs := srv.Envs("campaign-site")
	if len(envs) != 2 || envs[0].Type != "plain" || envs[1].Type != "encrypted" || !slices.Equal(envs[1].Target, []string{"preview"}) {
		t.Errorf("entries after Apply: %d; want the plain production one kept plain and a new encrypted preview one", len(envs))
	}
	for _, target := range []string{"production", "preview"} {
		if got := srv.Holds("campaign-site", "ACTION_NETWORK_API_KEY", target); !got.Equal(key) {
			t.Errorf("%s holds %v", target, got)
		}
	}
}

func TestSensitiveVariableIsProvenByTimestamp(t *testing.T) {
	ctx := context.Background()
	srv := verceltest.New(t)
	srv.AddProject("campaign-site", true)
	srv.SetEnv("campaign-site", verceltest.Env{Key: "ACTION_NETWORK_API_KEY", Value: old, Type: "sensitive", Target: []string{"production"}, UpdatedAt: time.Now().Add(-time.Hour)})
	in, logs, err := build(t, srv, srv.Token, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := in.(integrations.Reader).Read(ctx); !errors.Is(err, integrations.ErrWriteOnly) {
		t.Errorf("Read of a sensitive variable: %v", err)
	}
	key := secret.New("an-new-key-fedcba9876543210")
	res, err := in.Apply(ctx, integrations.ApplyRequest{Key: key})
	if err != nil || !res.Changed {
		t.Fatalf("Apply = %+v, %v", res, err)
	}
	if e := srv.Envs("campaign-site")[0]; e.Type != "sensitive" || e.Value != key.Reveal() {
		t.Errorf("after Apply: type %s, holds the key %v", e.Type, e.Value == key.Reveal())
	}
	want := current(key)
	want.RotatedAt = time.Now().Add(-time.Minute)
	want.Last = state.Written{Fingerprint: key.Fingerprint(), At: res.At}
	if st := integrations.Observe(ctx, in, want); st.State != state.Current || st.Proof != state.Timestamp {
		t.Errorf("Observe after rekey's write = %+v; want current by timestamp", st)
	}
	if p := integrations.ProofClass(in); p != state.Timestamp {
		t.Errorf("ProofClass = %q", p)
	}
	if res, err := in.Apply(ctx, integrations.ApplyRequest{Key: key, Last: want.Last}); err != nil || res.Changed || srv.Writes() != 1 {
		t.Errorf("Apply with rekey's record: %+v, %v, %d writes", res, err, srv.Writes())
	}
	// Someone writes it afterwards: rekey can no longer say.
	e := srv.Envs("campaign-site")[0]
	e.UpdatedAt = time.Now().Add(10 * time.Minute)
	srv.SetEnv("campaign-site", e)
	if st := integrations.Observe(ctx, in, want); st.State != state.Unknown || st.Proof != state.NoProof {
		t.Errorf("Observe of a sensitive variable written outside rekey, no probe = %+v; want unknown", st)
	}
	leakcheck.Assert(t, "logs", append(srv.Log(), logs.Bytes()...), key.Reveal(), old)
}

func TestRedeployThatFailedIsStartedOnTheRetry(t *testing.T) {
	ctx := context.Background()
	srv := newServer(t)
	in, _, err := build(t, srv, srv.Token, map[string]any{"redeploy": true})
	if err != nil {
		t.Fatal(err)
	}
	key := secret.New("an-new-key-fedcba9876543210")
	srv.FailRedeploys(1)
	_, err = in.Apply(ctx, integrations.ApplyRequest{Key: key})
	if !failure.IsTransient(err) || !strings.Contains(err.Error(), "redeploy production of project campaign-site") {
		t.Fatalf("Apply whose redeploy got a 500: %v", err)
	}
	if _, err := in.Apply(ctx, integrations.ApplyRequest{Key: key}); err != nil || srv.Writes() != 1 || srv.Redeploys("campaign-site") != 1 {
		t.Errorf("retry: %v; %d writes, %d redeploys; want the redeploy, nothing rewritten", err, srv.Writes(), srv.Redeploys("campaign-site"))
	}
}

func TestPreflightAndTeams(t *testing.T) {
	ctx := context.Background()
	srv := newServer(t)
	in, _, err := build(t, srv, srv.Token, map[string]any{"team": nil})
	if err != nil {
		t.Fatal(err)
	}
	if err := in.(integrations.Preflighter).Preflight(ctx); !errors.Is(err, failure.ErrNotFound) {
		t.Errorf("Preflight of a team project without the team: %v", err)
	}
	in, _, err = build(t, srv, srv.Token, map[string]any{"team": srv.TeamID, "redeploy": true})
	if err != nil {
		t.Fatal(err)
	}
	if err := in.(integrations.Preflighter).Preflight(ctx); err != nil {
		t.Errorf("Preflight with the team id: %v", err)
	}
	srv.NoDeployments("campaign-site")
	if err := in.(integrations.Preflighter).Preflight(ctx); !errors.Is(err, failure.ErrNotFound) || !strings.Contains(err.Error(), "no ready production deployment") {
		t.Errorf("Preflight with redeploy and nothing to redeploy: %v", err)
	}
}

func TestFailures(t *testing.T) {
	platformtest.Run(t, platformtest.Target{
		New: func(t *testing.T, badToken, missing bool) (integrations.Integration, platformtest.Server, platformtest.Probe) {
			srv := newServer(t)
			token := srv.Token
			if badToken {
				token = "wrong"
			}
			p := "campaign-site"
			if missing {
				p = "gone-site"
			}
			in, logs, err := build(t, srv, token, map[string]any{"project": p})
			if err != nil {
				t.Fatal(err)
			}
			return in, srv, probe{srv, logs}
		},
		Hostile: func(t *testing.T, at func(string) string) (integrations.Integration, string, func() []byte) {
			srv := newServer(t)
			in, logs, err := build(t, srv, srv.Token, map[string]any{"api_url": at(strings.TrimSuffix(srv.URL, "/")) + "/", "redeploy": true})
			if err != nil {
				t.Fatal(err)
			}
			return in, srv.Token, logs.Bytes
		},
		Names:   []string{"project campaign-site (team greens)", "$VERCEL_TOKEN"},
		Missing: []string{"project gone-site (team greens)"},
		Wait:    2 * time.Second,
	})
}

type probe struct {
	srv  *verceltest.Server
	logs *logBuf
}

func (p probe) Holds() secret.Key {
	return p.srv.Holds("campaign-site", "ACTION_NETWORK_API_KEY", "production")
}
func (p probe) Writes() int  { return p.srv.Writes() }
func (p probe) Logs() []byte { return p.logs.Bytes() }

func TestConfigErrors(t *testing.T) {
	srv := newServer(t)
	for _, c := range []struct {
		settings map[string]any
		field    string
	}{
		{map[string]any{"project": nil}, "project"},
		{map[string]any{"targets": []any{"prod"}}, "targets[0]"},
		{map[string]any{"targets": []any{"preview"}, "redeploy": true}, "redeploy"},
		{map[string]any{"team": "a b"}, "team"},
	} {
		_, _, err := build(t, srv, srv.Token, c.settings)
		var ce *config.Error
		if !errors.As(err, &ce) || ce.Field != c.field {
			t.Errorf("settings %v: %v, want a config error on field %s", c.settings, err, c.field)
		}
	}
}
