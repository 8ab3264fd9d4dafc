package heroku_test

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
	"github.com/rekey-dev/rekey/integrations/heroku"
	"github.com/rekey-dev/rekey/integrations/internal/platformtest"
	"github.com/rekey-dev/rekey/internal/herokutest"
	"github.com/rekey-dev/rekey/internal/leakcheck"
	"github.com/rekey-dev/rekey/secret"
	"github.com/rekey-dev/rekey/state"
)

type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) { l.mu.Lock(); defer l.mu.Unlock(); return l.b.Write(p) }
func (l *logBuf) Bytes() []byte               { l.mu.Lock(); defer l.mu.Unlock(); return bytes.Clone(l.b.Bytes()) }

func build(t *testing.T, srv *herokutest.Server, token string, settings map[string]any) (integrations.Integration, *logBuf, error) {
	t.Helper()
	s := map[string]any{"app": "greens-spoke", "variable": "ACTION_NETWORK_API_KEY", "token_env": "HEROKU_API_KEY", "api_url": srv.URL}
	maps.Copy(s, settings)
	for k, v := range s {
		if v == nil {
			delete(s, k)
		}
	}
	item := config.Integration{ID: "spoke", Key: "actionnetwork-main", Type: heroku.Type, Settings: s}
	logs := &logBuf{}
	h := integrations.Host{
		Config: &config.Config{File: "rekey.yaml", Integrations: []config.Integration{item}},
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Getenv: func(k string) string { return map[string]string{"HEROKU_API_KEY": token}[k] },
	}
	in, err := heroku.New(h, item)
	return in, logs, err
}

func newServer(t *testing.T) *herokutest.Server {
	srv := herokutest.New(t)
	srv.AddApp("greens-spoke", map[string]string{"DATABASE_URL": "postgres://spoke@db/spoke", "ACTION_NETWORK_API_KEY": "an-old-key-0123456789", "NODE_ENV": "production"})
	return srv
}

func TestApplyChangesOnlyTheVariableAndRestartsOnce(t *testing.T) {
	ctx := context.Background()
	srv := newServer(t)
	in, logs, err := build(t, srv, srv.Token, nil)
	if err != nil {
		t.Fatal(err)
	}
	key := secret.New("an-new-key-fedcba9876543210")
	before := srv.Vars("greens-spoke")

	res, err := in.Apply(ctx, integrations.ApplyRequest{Key: key, RotationID: "r1"})
	if err != nil || !res.Changed {
		t.Fatalf("Apply = %+v, %v", res, err)
	}
	after := srv.Vars("greens-spoke")
	if got, _ := srv.Var("greens-spoke", "ACTION_NETWORK_API_KEY"); !got.Equal(key) {
		t.Errorf("config var holds %v", got)
	}
	delete(before, "ACTION_NETWORK_API_KEY")
	delete(after, "ACTION_NETWORK_API_KEY")
	if !maps.Equal(before, after) {
		t.Errorf("other config vars changed: %v → %v", before, after)
	}
	if n := srv.Releases("greens-spoke"); n != 1 {
		t.Errorf("%d releases (restarts), want 1", n)
	}

	// Again: nothing sent, no release.
	res, err = in.Apply(ctx, integrations.ApplyRequest{Key: key, RotationID: "r1", Last: state.Written{Fingerprint: key.Fingerprint(), At: time.Now()}})
	if err != nil || res.Changed || srv.Patches() != 1 || srv.Releases("greens-spoke") != 1 {
		t.Errorf("second Apply = %+v, %v; %d patches, %d releases", res, err, srv.Patches(), srv.Releases("greens-spoke"))
	}

	st := integrations.Observe(ctx, in, integrations.Expect{Versions: map[string]integrations.VersionState{key.Fingerprint(): integrations.VersionCurrent}, Current: key.Fingerprint()})
	if st.State != state.Current || st.Proof != state.Exact {
		t.Errorf("Observe = %+v, want current, proven exactly", st)
	}
	if err := in.(integrations.Preflighter).Preflight(ctx); err != nil {
		t.Errorf("Preflight: %v", err)
	}
	if !strings.Contains(string(srv.Log()), `body: {"ACTION_NETWORK_API_KEY":"<redacted>"}`) {
		t.Errorf("the PATCH sent more than the one variable:\n%s", srv.Log())
	}
	leakcheck.Assert(t, "server log and integration log", append(srv.Log(), logs.Bytes()...), key.Reveal(), "an-old-key-0123456789")
}

func TestMissingVariableIsCreatedAndReadsAsNotFound(t *testing.T) {
	ctx := context.Background()
	srv := newServer(t)
	srv.DeleteVar("greens-spoke", "ACTION_NETWORK_API_KEY")
	in, _, err := build(t, srv, srv.Token, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := in.(integrations.Reader).Read(ctx); !errors.Is(err, failure.ErrNotFound) || !strings.Contains(err.Error(), "app greens-spoke has no config var ACTION_NETWORK_API_KEY") {
		t.Errorf("Read of a missing config var: %v", err)
	}
	if err := in.(integrations.Preflighter).Preflight(ctx); err != nil {
		t.Errorf("Preflight with the variable not there yet: %v (the first write creates it)", err)
	}
	key := secret.New("an-new-key-fedcba9876543210")
	if _, err := in.Apply(ctx, integrations.ApplyRequest{Key: key}); err != nil {
		t.Fatal(err)
	}
	if got, _ := srv.Var("greens-spoke", "ACTION_NETWORK_API_KEY"); !got.Equal(key) {
		t.Errorf("holds %v", got)
	}
}

func TestFailures(t *testing.T) {
	platformtest.Run(t, platformtest.Target{
		New: func(t *testing.T, badToken, missing bool) (integrations.Integration, platformtest.Server, platformtest.Probe) {
			srv := newServer(t)
			token := srv.Token
			if badToken {
				token = "HRKU-not-the-token"
			}
			app := "greens-spoke"
			if missing {
				app = "greens-gone"
			}
			in, logs, err := build(t, srv, token, map[string]any{"app": app})
			if err != nil {
				t.Fatal(err)
			}
			return in, srv, probe{srv, logs}
		},
		Hostile: func(t *testing.T, at func(string) string) (integrations.Integration, string, func() []byte) {
			srv := newServer(t)
			in, logs, err := build(t, srv, srv.Token, map[string]any{"api_url": at(strings.TrimSuffix(srv.URL, "/")) + "/"})
			if err != nil {
				t.Fatal(err)
			}
			return in, srv.Token, logs.Bytes
		},
		Names:   []string{"app greens-spoke", "$HEROKU_API_KEY"},
		Missing: []string{"app greens-gone"},
		Wait:    2 * time.Second, // Heroku sends RateLimit-Remaining: 0 and no reset time
	})
}

type probe struct {
	srv  *herokutest.Server
	logs *logBuf
}

func (p probe) Holds() secret.Key {
	k, _ := p.srv.Var("greens-spoke", "ACTION_NETWORK_API_KEY")
	return k
}
func (p probe) Writes() int  { return p.srv.Patches() }
func (p probe) Logs() []byte { return p.logs.Bytes() }

func TestConfigErrors(t *testing.T) {
	srv := herokutest.New(t)
	cases := []struct {
		settings map[string]any
		field    string
	}{
		{map[string]any{"app": nil}, "app"},
		{map[string]any{"app": "Greens Spoke"}, "app"},
		{map[string]any{"variable": nil}, "variable"},
		{map[string]any{"variable": "ACTION-NETWORK"}, "variable"},
		{map[string]any{"token_env": nil}, "token_env"},
		{map[string]any{"api_url": "ftp://api.heroku.com"}, "api_url"},
		{map[string]any{"verify": map[string]any{"url": "not a url"}}, "verify.url"},
		{map[string]any{"token": "literal"}, "token"},
	}
	for _, c := range cases {
		_, _, err := build(t, srv, srv.Token, c.settings)
		var ce *config.Error
		if !errors.As(err, &ce) || ce.Field != c.field || !strings.Contains(ce.Item, "spoke") {
			t.Errorf("settings %v: %v, want a config error on field %s", c.settings, err, c.field)
		}
	}
}

func TestVerifyProbe(t *testing.T) {
	srv := newServer(t)
	in, _, err := build(t, srv, srv.Token, map[string]any{"verify": map[string]any{"url": srv.URL + "account", "expect_status": 401}})
	if err != nil {
		t.Fatal(err)
	}
	v, ok := in.(integrations.Verifier)
	if !ok {
		t.Fatalf("with verify, %T is not a Verifier", in)
	}
	if err := v.Verify(context.Background()); err != nil {
		t.Errorf("Verify: %v", err)
	}
	if _, ok := in.(integrations.Reader); !ok {
		t.Errorf("with verify, %T is no longer a Reader", in)
	}
}
