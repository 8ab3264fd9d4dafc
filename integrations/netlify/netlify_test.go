package netlify_test

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
	"github.com/rekey-dev/rekey/integrations/netlify"
	"github.com/rekey-dev/rekey/internal/leakcheck"
	"github.com/rekey-dev/rekey/internal/netlifytest"
	"github.com/rekey-dev/rekey/secret"
	"github.com/rekey-dev/rekey/state"
)

const site = "5d1b3c9e-0000-4000-8000-000000000001"

type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) { l.mu.Lock(); defer l.mu.Unlock(); return l.b.Write(p) }
func (l *logBuf) Bytes() []byte               { l.mu.Lock(); defer l.mu.Unlock(); return bytes.Clone(l.b.Bytes()) }

func build(t *testing.T, srv *netlifytest.Server, env map[string]string, settings map[string]any) (integrations.Integration, *logBuf, error) {
	t.Helper()
	s := map[string]any{"account": srv.AccountSlug, "site": site, "variable": "ACTION_NETWORK_API_KEY", "token_env": "NETLIFY_AUTH_TOKEN", "api_url": srv.URL}
	maps.Copy(s, settings)
	for k, v := range s {
		if v == nil {
			delete(s, k)
		}
	}
	item := config.Integration{ID: "campaign-site", Key: "actionnetwork-main", Type: netlify.Type, Settings: s}
	logs := &logBuf{}
	h := integrations.Host{
		Config: &config.Config{File: "rekey.yaml", Integrations: []config.Integration{item}},
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Getenv: func(k string) string { return env[k] },
	}
	in, err := netlify.New(h, item)
	return in, logs, err
}

const old = "an-old-key-0123456789"

func newServer(t *testing.T) (*netlifytest.Server, map[string]string) {
	srv := netlifytest.New(t)
	srv.AddSite(site)
	srv.SetVar(site, netlifytest.Var{Key: "ACTION_NETWORK_API_KEY", Values: []netlifytest.Value{{Context: "production", Value: old}, {Context: "deploy-preview", Value: "preview-key-0000000"}}, UpdatedAt: time.Now().Add(-time.Hour)})
	srv.SetVar(site, netlifytest.Var{Key: "SITE_TITLE", Values: []netlifytest.Value{{Context: "all", Value: "Greens"}}})
	return srv, map[string]string{"NETLIFY_AUTH_TOKEN": srv.Token, "NETLIFY_BUILD_HOOK": srv.AddBuildHook()}
}

func current(k secret.Key) integrations.Expect {
	return integrations.Expect{Versions: map[string]integrations.VersionState{k.Fingerprint(): integrations.VersionCurrent}, Current: k.Fingerprint()}
}

func TestApplySetsTheContextAndBuildsOnce(t *testing.T) {
	ctx := context.Background()
	srv, env := newServer(t)
	in, logs, err := build(t, srv, env, map[string]any{"build_hook_env": "NETLIFY_BUILD_HOOK"})
	if err != nil {
		t.Fatal(err)
	}
	other, _ := srv.Get(site, "SITE_TITLE")
	key := secret.New("an-new-key-fedcba9876543210")
	res, err := in.Apply(ctx, integrations.ApplyRequest{Key: key})
	if err != nil || !res.Changed {
		t.Fatalf("Apply = %+v, %v", res, err)
	}
	if got := srv.Holds(site, "ACTION_NETWORK_API_KEY", "production"); !got.Equal(key) {
		t.Errorf("production holds %v", got)
	}
	if got := srv.Holds(site, "ACTION_NETWORK_API_KEY", "deploy-preview"); got.Reveal() != "preview-key-0000000" {
		t.Errorf("the deploy-preview value changed")
	}
	if got, _ := srv.Get(site, "SITE_TITLE"); !slices.Equal(got.Values, other.Values) || !got.UpdatedAt.Equal(other.UpdatedAt) {
		t.Errorf("another variable changed")
	}
	if srv.Builds() != 1 || srv.Writes() != 1 {
		t.Errorf("%d builds, %d writes; want 1, 1", srv.Builds(), srv.Writes())
	}
	res, err = in.Apply(ctx, integrations.ApplyRequest{Key: key, Last: state.Written{Fingerprint: key.Fingerprint(), At: res.At}})
	if err != nil || res.Changed || srv.Builds() != 1 || srv.Writes() != 1 {
		t.Errorf("Apply of the key it holds: %+v, %v; %d builds, %d writes", res, err, srv.Builds(), srv.Writes())
	}
	if st := integrations.Observe(ctx, in, current(key)); st.State != state.Current || st.Proof != state.Exact {
		t.Errorf("Observe = %+v", st)
	}
	if err := in.(integrations.Preflighter).Preflight(ctx); err != nil {
		t.Errorf("Preflight: %v", err)
	}
	all := append(srv.Log(), logs.Bytes()...)
	leakcheck.Assert(t, "logs", all, key.Reveal(), old, env["NETLIFY_BUILD_HOOK"])
}

func TestSeveralContexts(t *testing.T) {
	ctx := context.Background()
	srv, env := newServer(t)
	in, _, err := build(t, srv, env, map[string]any{"contexts": []any{"production", "deploy-preview"}})
	if err != nil {
		t.Fatal(err)
	}
	key := secret.New("an-new-key-fedcba9876543210")
	if st := integrations.Observe(ctx, in, current(key)); st.State != state.Unknown || !strings.Contains(st.Reason, "different values in the production and deploy-preview contexts") {
		t.Errorf("Observe of contexts holding different values = %+v", st)
	}
	if _, err := in.Apply(ctx, integrations.ApplyRequest{Key: key}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"production", "deploy-preview"} {
		if got := srv.Holds(site, "ACTION_NETWORK_API_KEY", c); !got.Equal(key) {
			t.Errorf("%s holds %v", c, got)
		}
	}
	if st := integrations.Observe(ctx, in, current(key)); st.State != state.Current {
		t.Errorf("Observe = %+v", st)
	}
}

func TestSecretVariableIsProvenByTimestamp(t *testing.T) {
	ctx := context.Background()
	srv, env := newServer(t)
	srv.SetVar(site, netlifytest.Var{Key: "ACTION_NETWORK_API_KEY", IsSecret: true, Values: []netlifytest.Value{{Context: "production", Value: old}}, UpdatedAt: time.Now().Add(-time.Hour)})
	in, _, err := build(t, srv, env, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := in.(integrations.Reader).Read(ctx); !errors.Is(err, integrations.ErrWriteOnly) {
		t.Errorf("Read of a secret variable: %v", err)
	}
	key := secret.New("an-new-key-fedcba9876543210")
	want := current(key)
	want.RotatedAt = time.Now().Add(-time.Minute)
	if st := integrations.Observe(ctx, in, want); st.State != state.Stale || st.Proof != state.Timestamp {
		t.Errorf("Observe of a secret not written since the rotation = %+v; want stale by timestamp", st)
	}
	res, err := in.Apply(ctx, integrations.ApplyRequest{Key: key})
	if err != nil || !res.Changed {
		t.Fatalf("Apply = %+v, %v", res, err)
	}
	v, _ := srv.Get(site, "ACTION_NETWORK_API_KEY")
	if !v.IsSecret || srv.Holds(site, "ACTION_NETWORK_API_KEY", "production").Reveal() != key.Reveal() {
		t.Errorf("after Apply: secret %v, holds the key %v", v.IsSecret, srv.Holds(site, "ACTION_NETWORK_API_KEY", "production").Equal(key))
	}
	want.Last = state.Written{Fingerprint: key.Fingerprint(), At: res.At}
	if st := integrations.Observe(ctx, in, want); st.State != state.Current || st.Proof != state.Timestamp {
		t.Errorf("Observe after rekey's write = %+v; want current by timestamp", st)
	}
	if p := integrations.ProofClass(in); p != state.Timestamp {
		t.Errorf("ProofClass = %q", p)
	}
	writes := srv.Writes()
	if res, err := in.Apply(ctx, integrations.ApplyRequest{Key: key, Last: want.Last}); err != nil || res.Changed || srv.Writes() != writes {
		t.Errorf("Apply with rekey's record: %+v, %v", res, err)
	}
}

func TestMissingVariableIsCreatedAndARaceRetried(t *testing.T) {
	ctx := context.Background()
	srv, env := newServer(t)
	in, _, err := build(t, srv, env, map[string]any{"variable": "NEW_KEY"})
	if err != nil {
		t.Fatal(err)
	}
	key := secret.New("an-new-key-fedcba9876543210")
	if _, err := in.Apply(ctx, integrations.ApplyRequest{Key: key}); err != nil {
		t.Fatal(err)
	}
	if got := srv.Holds(site, "NEW_KEY", "production"); !got.Equal(key) {
		t.Errorf("created variable holds %v", got)
	}

	srv.CreateRace(netlifytest.Var{Key: "RACED", Values: []netlifytest.Value{{Context: "all", Value: "someone-elses"}}})
	raced, _, err := build(t, srv, env, map[string]any{"variable": "RACED"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := raced.Apply(ctx, integrations.ApplyRequest{Key: key}); err != nil {
		t.Fatalf("Apply that lost the creation race: %v", err)
	}
	if got := srv.Holds(site, "RACED", "production"); !got.Equal(key) {
		t.Errorf("after the race production holds %v", got)
	}
	if !strings.Contains(string(srv.Log()), "POST /api/v1/accounts/greens/env?site_id="+site+" -> 409") {
		t.Errorf("the race did not happen")
	}
}

func TestBuildThatFailedIsTriggeredOnTheRetry(t *testing.T) {
	ctx := context.Background()
	srv, env := newServer(t)
	hook := env["NETLIFY_BUILD_HOOK"]
	env["NETLIFY_BUILD_HOOK"] = hook + "-deleted"
	in, _, err := build(t, srv, env, map[string]any{"build_hook_env": "NETLIFY_BUILD_HOOK"})
	if err != nil {
		t.Fatal(err)
	}
	key := secret.New("an-new-key-fedcba9876543210")
	_, err = in.Apply(ctx, integrations.ApplyRequest{Key: key})
	if !errors.Is(err, failure.ErrNotFound) || !strings.Contains(err.Error(), "build hook in $NETLIFY_BUILD_HOOK") {
		t.Fatalf("Apply with a deleted build hook: %v", err)
	}
	leakcheck.Assert(t, "error", []byte(err.Error()), hook)
	env["NETLIFY_BUILD_HOOK"] = hook
	if _, err := in.Apply(ctx, integrations.ApplyRequest{Key: key}); err != nil || srv.Builds() != 1 || srv.Writes() != 1 {
		t.Errorf("retry: %v; %d builds, %d writes; want the build triggered, nothing rewritten", err, srv.Builds(), srv.Writes())
	}
}

func TestPreflight(t *testing.T) {
	ctx := context.Background()
	srv, env := newServer(t)
	in, _, err := build(t, srv, env, map[string]any{"account": "someone-else"})
	if err != nil {
		t.Fatal(err)
	}
	if err := in.(integrations.Preflighter).Preflight(ctx); !errors.Is(err, failure.ErrInvalid) || !strings.Contains(err.Error(), "belongs to account greens") {
		t.Errorf("Preflight with another account: %v", err)
	}
	delete(env, "NETLIFY_BUILD_HOOK")
	in, _, err = build(t, srv, env, map[string]any{"build_hook_env": "NETLIFY_BUILD_HOOK"})
	if err != nil {
		t.Fatal(err)
	}
	if err := in.(integrations.Preflighter).Preflight(ctx); err == nil || !strings.Contains(err.Error(), "$NETLIFY_BUILD_HOOK is empty") {
		t.Errorf("Preflight with no build hook URL: %v", err)
	}
	if srv.Builds() != 0 {
		t.Errorf("Preflight triggered a build")
	}
}

func TestFailures(t *testing.T) {
	platformtest.Run(t, platformtest.Target{
		New: func(t *testing.T, badToken, missing bool) (integrations.Integration, platformtest.Server, platformtest.Probe) {
			srv, env := newServer(t)
			if badToken {
				env["NETLIFY_AUTH_TOKEN"] = "nfp_wrong"
			}
			s := site
			if missing {
				s = "site-gone"
			}
			in, logs, err := build(t, srv, env, map[string]any{"site": s})
			if err != nil {
				t.Fatal(err)
			}
			return in, srv, probe{srv, logs}
		},
		Hostile: func(t *testing.T, at func(string) string) (integrations.Integration, string, func() []byte) {
			srv, env := newServer(t)
			in, logs, err := build(t, srv, env, map[string]any{"api_url": at(strings.TrimSuffix(srv.URL, "/api/v1/")) + "/api/v1/"})
			if err != nil {
				t.Fatal(err)
			}
			return in, srv.Token, logs.Bytes
		},
		Names:   []string{"site " + site + " of account greens", "$NETLIFY_AUTH_TOKEN"},
		Missing: []string{"site site-gone"},
		Wait:    2 * time.Second,
	})
}

type probe struct {
	srv  *netlifytest.Server
	logs *logBuf
}

func (p probe) Holds() secret.Key { return p.srv.Holds(site, "ACTION_NETWORK_API_KEY", "production") }
func (p probe) Writes() int       { return p.srv.Writes() }
func (p probe) Logs() []byte      { return p.logs.Bytes() }

func TestConfigErrors(t *testing.T) {
	srv, env := newServer(t)
	for _, c := range []struct {
		settings map[string]any
		field    string
	}{
		{map[string]any{"account": nil}, "account"},
		{map[string]any{"site": nil}, "site"},
		{map[string]any{"contexts": []any{"prod"}}, "contexts[0]"},
		{map[string]any{"contexts": []any{}}, "contexts"},
		{map[string]any{"contexts": []any{"production", "production"}}, "contexts[1]"},
		{map[string]any{"build_hook_env": "https://api.netlify.com/build_hooks/x"}, "build_hook_env"},
	} {
		_, _, err := build(t, srv, env, c.settings)
		var ce *config.Error
		if !errors.As(err, &ce) || ce.Field != c.field {
			t.Errorf("settings %v: %v, want a config error on field %s", c.settings, err, c.field)
		}
	}
}
