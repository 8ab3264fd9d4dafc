package gitlab_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rekey-dev/rekey/config"
	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/integrations"
	"github.com/rekey-dev/rekey/integrations/gitlab"
	"github.com/rekey-dev/rekey/integrations/internal/platformtest"
	"github.com/rekey-dev/rekey/internal/gitlabtest"
	"github.com/rekey-dev/rekey/internal/leakcheck"
	"github.com/rekey-dev/rekey/secret"
	"github.com/rekey-dev/rekey/state"
)

const project = "greens/campaign-site"

type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) { l.mu.Lock(); defer l.mu.Unlock(); return l.b.Write(p) }
func (l *logBuf) Bytes() []byte               { l.mu.Lock(); defer l.mu.Unlock(); return bytes.Clone(l.b.Bytes()) }

func build(t *testing.T, srv *gitlabtest.Server, token string, settings map[string]any) (integrations.Integration, *logBuf, error) {
	t.Helper()
	s := map[string]any{"project": project, "variable": "ACTION_NETWORK_API_KEY", "token_env": "GITLAB_TOKEN", "api_url": srv.URL}
	maps.Copy(s, settings)
	for k, v := range s {
		if v == nil {
			delete(s, k)
		}
	}
	item := config.Integration{ID: "gitlab-ci", Key: "actionnetwork-main", Type: gitlab.Type, Settings: s}
	logs := &logBuf{}
	h := integrations.Host{
		Config: &config.Config{File: "rekey.yaml", Integrations: []config.Integration{item}},
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Getenv: func(k string) string { return map[string]string{"GITLAB_TOKEN": token}[k] },
	}
	in, err := gitlab.New(h, item)
	return in, logs, err
}

const old = "an-old-key-0123456789"

func newServer(t *testing.T) *gitlabtest.Server {
	srv := gitlabtest.New(t)
	srv.AddProject(project, 40)
	srv.SetVariable(project, gitlabtest.Variable{Key: "ACTION_NETWORK_API_KEY", Value: old, Masked: true, Protected: true})
	srv.SetVariable(project, gitlabtest.Variable{Key: "ACTION_NETWORK_API_KEY", Value: "staging-key-000000000", Scope: "staging"})
	srv.SetVariable(project, gitlabtest.Variable{Key: "DEPLOY_HOST", Value: "web1.greens.example"})
	return srv
}

var current = func(k secret.Key) integrations.Expect {
	return integrations.Expect{Versions: map[string]integrations.VersionState{k.Fingerprint(): integrations.VersionCurrent}, Current: k.Fingerprint()}
}

func TestApplyKeepsFlagsAndOtherVariables(t *testing.T) {
	ctx := context.Background()
	srv := newServer(t)
	in, logs, err := build(t, srv, srv.Token, nil)
	if err != nil {
		t.Fatal(err)
	}
	key := secret.New("an-new-key-fedcba9876543210")
	before := srv.Variables(project)
	res, err := in.Apply(ctx, integrations.ApplyRequest{Key: key})
	if err != nil || !res.Changed {
		t.Fatalf("Apply = %+v, %v", res, err)
	}
	after := srv.Variables(project)
	for i := range before {
		b, a := before[i], after[i]
		if b.Key == "ACTION_NETWORK_API_KEY" && b.Scope == "*" {
			if a.Value != key.Reveal() || !a.Masked || !a.Protected || a.Hidden || a.Raw {
				t.Errorf("the variable after Apply: value is the key: %v, masked %v protected %v hidden %v raw %v; want only the value changed",
					a.Value == key.Reveal(), a.Masked, a.Protected, a.Hidden, a.Raw)
			}
			continue
		}
		if a != b {
			t.Errorf("variable %s (%s) changed", b.Key, b.Scope)
		}
	}
	if !strings.Contains(string(srv.Log()), "PUT /api/v4/projects/greens%2Fcampaign-site/variables/ACTION_NETWORK_API_KEY?filter%5Benvironment_scope%5D=%2A -> 200") {
		t.Errorf("no PUT with the URL-encoded project path and the scope filter:\n%s", srv.Log())
	}
	if !strings.Contains(string(srv.Log()), `body: {"value":"<redacted>"}`) {
		t.Errorf("the PUT sent more than the value (masking must stay as it is)")
	}
	res, err = in.Apply(ctx, integrations.ApplyRequest{Key: key})
	if err != nil || res.Changed || srv.Writes() != 1 {
		t.Errorf("second Apply = %+v, %v, %d writes", res, err, srv.Writes())
	}
	if st := integrations.Observe(ctx, in, current(key)); st.State != state.Current || st.Proof != state.Exact {
		t.Errorf("Observe = %+v", st)
	}
	if p := integrations.ProofClass(in); p != state.Exact {
		t.Errorf("ProofClass = %q", p)
	}
	leakcheck.Assert(t, "logs", append(srv.Log(), logs.Bytes()...), key.Reveal(), old)
}

func TestEnvironmentScope(t *testing.T) {
	ctx := context.Background()
	srv := newServer(t)
	in, _, err := build(t, srv, srv.Token, map[string]any{"environment_scope": "staging"})
	if err != nil {
		t.Fatal(err)
	}
	key := secret.New("an-new-key-fedcba9876543210")
	if _, err := in.Apply(ctx, integrations.ApplyRequest{Key: key}); err != nil {
		t.Fatal(err)
	}
	if got := srv.Holds(project, "ACTION_NETWORK_API_KEY", "staging"); !got.Equal(key) {
		t.Errorf("the staging variable holds %v", got)
	}
	if got := srv.Holds(project, "ACTION_NETWORK_API_KEY", "*"); got.Reveal() != old {
		t.Errorf("the * variable changed")
	}
}

func TestHiddenVariable(t *testing.T) {
	ctx := context.Background()
	srv := newServer(t)
	srv.SetVariable(project, gitlabtest.Variable{Key: "ACTION_NETWORK_API_KEY", Value: old, Masked: true, Hidden: true})
	in, logs, err := build(t, srv, srv.Token, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := in.(integrations.Reader).Read(ctx); !errors.Is(err, integrations.ErrWriteOnly) {
		t.Errorf("Read of a hidden variable: %v, want ErrWriteOnly", err)
	}
	key := secret.New("an-new-key-fedcba9876543210")
	res, err := in.Apply(ctx, integrations.ApplyRequest{Key: key})
	if err != nil || !res.Changed {
		t.Fatalf("Apply to a hidden variable: %+v, %v", res, err)
	}
	v, _ := srv.Variable(project, "ACTION_NETWORK_API_KEY", "*")
	if v.Value != key.Reveal() || !v.Hidden || !v.Masked {
		t.Errorf("after Apply: holds the key %v, hidden %v, masked %v", v.Value == key.Reveal(), v.Hidden, v.Masked)
	}
	want := current(key)
	want.Last = state.Written{Fingerprint: key.Fingerprint(), At: res.At}
	st := integrations.Observe(ctx, in, want)
	if st.State != state.Unknown || st.Reason != integrations.Unprovable || st.Proof != state.NoProof {
		t.Errorf("Observe of a hidden variable without a probe = %+v; want unknown, %q", st, integrations.Unprovable)
	}
	if p := integrations.ProofClass(in); p != state.NoProof {
		t.Errorf("ProofClass of a hidden variable without a probe = %q", p)
	}
	// With rekey's record of writing it, Apply sends nothing.
	res, err = in.Apply(ctx, integrations.ApplyRequest{Key: key, Last: want.Last})
	if err != nil || res.Changed || srv.Writes() != 1 {
		t.Errorf("Apply with rekey's record: %+v, %v, %d writes", res, err, srv.Writes())
	}

	// With a verify probe, the probe proves it.
	probed, _, err := build(t, srv, srv.Token, map[string]any{"verify": map[string]any{"url": srv.URL + "projects/4711", "headers": map[string]any{"PRIVATE-TOKEN": srv.Token}}})
	if err != nil {
		t.Fatal(err)
	}
	st = integrations.Observe(ctx, probed, want)
	if st.State != state.Current || st.Proof != state.Probe {
		t.Errorf("Observe of a hidden variable with a probe = %+v; want current, proven by probe", st)
	}
	if p := integrations.ProofClass(probed); p != state.Probe {
		t.Errorf("ProofClass = %q", p)
	}
	leakcheck.Assert(t, "logs", append(srv.Log(), logs.Bytes()...), key.Reveal(), old)
}

func TestMissingVariableIsCreatedMasked(t *testing.T) {
	ctx := context.Background()
	srv := gitlabtest.New(t)
	srv.AddProject(project, 40)
	in, _, err := build(t, srv, srv.Token, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := in.(integrations.Preflighter).Preflight(ctx); err != nil {
		t.Errorf("Preflight with the variable not there yet: %v", err)
	}
	key := secret.New("an-new-key-fedcba9876543210")
	if _, err := in.Apply(ctx, integrations.ApplyRequest{Key: key}); err != nil {
		t.Fatal(err)
	}
	v, ok := srv.Variable(project, "ACTION_NETWORK_API_KEY", "*")
	if !ok || v.Value != key.Reveal() || !v.Masked || !v.Raw {
		t.Errorf("created variable: %v, holds the key %v, masked %v, raw %v", ok, v.Value == key.Reveal(), v.Masked, v.Raw)
	}
}

func TestCreationRaceIsRetriedOnAFreshRead(t *testing.T) {
	ctx := context.Background()
	srv := gitlabtest.New(t)
	srv.AddProject(project, 40)
	srv.CreateRace(gitlabtest.Variable{Key: "ACTION_NETWORK_API_KEY", Value: "someone-elses-000000", Masked: true})
	in, _, err := build(t, srv, srv.Token, nil)
	if err != nil {
		t.Fatal(err)
	}
	key := secret.New("an-new-key-fedcba9876543210")
	if _, err := in.Apply(ctx, integrations.ApplyRequest{Key: key}); err != nil {
		t.Fatalf("Apply that lost the creation race: %v", err)
	}
	if got := srv.Holds(project, "ACTION_NETWORK_API_KEY", "*"); !got.Equal(key) {
		t.Errorf("holds %v", got)
	}
	if !strings.Contains(string(srv.Log()), "POST /api/v4/projects/greens%2Fcampaign-site/variables -> 400") {
		t.Errorf("the race did not happen")
	}
}

func TestPreflightNeedsMaintainer(t *testing.T) {
	srv := gitlabtest.New(t)
	srv.AddProject(project, 30)
	in, _, err := build(t, srv, srv.Token, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = in.(integrations.Preflighter).Preflight(context.Background())
	if !errors.Is(err, failure.ErrUnauthorized) || !strings.Contains(err.Error(), "Maintainer") || !strings.Contains(err.Error(), "project "+project) {
		t.Errorf("Preflight as a Developer: %v", err)
	}
}

func TestFailures(t *testing.T) {
	platformtest.Run(t, platformtest.Target{
		New: func(t *testing.T, badToken, missing bool) (integrations.Integration, platformtest.Server, platformtest.Probe) {
			srv := newServer(t)
			token := srv.Token
			if badToken {
				token = "glpat-wrong"
			}
			p := project
			if missing {
				p = "greens/gone"
			}
			in, logs, err := build(t, srv, token, map[string]any{"project": p})
			if err != nil {
				t.Fatal(err)
			}
			return in, srv, probe{srv, logs}
		},
		Hostile: func(t *testing.T, at func(string) string) (integrations.Integration, string, func() []byte) {
			srv := newServer(t)
			in, logs, err := build(t, srv, srv.Token, map[string]any{"api_url": at(strings.TrimSuffix(srv.URL, "/api/v4/")) + "/api/v4/"})
			if err != nil {
				t.Fatal(err)
			}
			return in, srv.Token, logs.Bytes
		},
		Names:   []string{"project " + project, "$GITLAB_TOKEN"},
		Missing: []string{"project greens/gone"},
		Wait:    2 * time.Second,
	})
}

type probe struct {
	srv  *gitlabtest.Server
	logs *logBuf
}

func (p probe) Holds() secret.Key { return p.srv.Holds(project, "ACTION_NETWORK_API_KEY", "*") }
func (p probe) Writes() int       { return p.srv.Writes() }
func (p probe) Logs() []byte      { return p.logs.Bytes() }

func TestConfigErrors(t *testing.T) {
	srv := gitlabtest.New(t)
	for _, c := range []struct {
		settings map[string]any
		field    string
	}{
		{map[string]any{"project": nil}, "project"},
		{map[string]any{"project": "no-slash"}, "project"},
		{map[string]any{"variable": "A-B"}, "variable"},
		{map[string]any{"token_env": nil}, "token_env"},
		{map[string]any{"environment_scope": "a b"}, "environment_scope"},
	} {
		_, _, err := build(t, srv, srv.Token, c.settings)
		var ce *config.Error
		if !errors.As(err, &ce) || ce.Field != c.field {
			t.Errorf("settings %v: %v, want a config error on field %s", c.settings, err, c.field)
		}
	}
}
