package manual

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rekey-dev/rekey/config"
	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/integrations"
	"github.com/rekey-dev/rekey/internal/leakcheck"
	"github.com/rekey-dev/rekey/secret"
	"github.com/rekey-dev/rekey/state"
)

const callhubToken = "ch_live_9f8e7d6c5b4a39281706"

func getenv(n string) string {
	return map[string]string{
		"PATH":          os.Getenv("PATH"),
		"CALLHUB_TOKEN": callhubToken,
		"VAULT_TOKEN":   "hvs.vault-token-for-tests",
	}[n]
}

func build(t *testing.T, owner string, settings map[string]any) (integrations.Integration, error) {
	t.Helper()
	in := config.Integration{ID: "callhub", Key: "actionnetwork-main", Type: Type, Owner: owner,
		Instructions: "CallHub → Settings → Integrations → Action Network → paste the key", Settings: settings}
	cfg := &config.Config{File: "/etc/rekey/rekey.yaml", Integrations: []config.Integration{in}}
	return New(integrations.Host{Config: cfg, Getenv: getenv, HTTPClient: &http.Client{}}, in)
}

func mustBuild(t *testing.T, settings map[string]any) integrations.Integration {
	t.Helper()
	integ, err := build(t, "<@U0CALL>", settings)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return integ
}

func TestManualWithoutProbe(t *testing.T) {
	integ := mustBuild(t, nil)
	if integ.ID() != "callhub" {
		t.Errorf("ID %q", integ.ID())
	}
	m, ok := integ.(integrations.Manual)
	if !ok {
		t.Fatal("not Manual")
	}
	if owner, instr := m.Person(); owner != "<@U0CALL>" || !strings.HasPrefix(instr, "CallHub → Settings") {
		t.Errorf("Person() = %q, %q", owner, instr)
	}
	for _, is := range []struct {
		name string
		ok   bool
	}{{"Reader", isReader(integ)}, {"Verifier", isVerifier(integ)}} {
		if is.ok {
			t.Errorf("a manual integration without verify is a %s", is.name)
		}
	}
	key := secret.New("ak_manual_key_0123456789abcdef")
	res, err := integ.Apply(context.Background(), integrations.ApplyRequest{Key: key})
	if err != nil || res.Changed {
		t.Errorf("Apply: %+v, %v; want unchanged", res, err)
	}

	want := integrations.Expect{Current: key.Fingerprint(), Versions: map[string]integrations.VersionState{key.Fingerprint(): integrations.VersionCurrent}}
	s := integrations.Observe(context.Background(), integ, want)
	if s.State != state.Pending || !strings.Contains(s.Reason, "<@U0CALL>") {
		t.Errorf("before confirm: %+v, want pending naming the owner", s)
	}
	want.Confirmed = state.Written{Fingerprint: key.Fingerprint(), At: time.Now()}
	if s := integrations.Observe(context.Background(), integ, want); s.State != state.Current {
		t.Errorf("after confirm: %+v, want current", s)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := integ.Apply(ctx, integrations.ApplyRequest{Key: key}); !errors.Is(err, context.Canceled) {
		t.Errorf("Apply with a cancelled context: %v", err)
	}
}

func isReader(i integrations.Integration) bool   { _, ok := i.(integrations.Reader); return ok }
func isVerifier(i integrations.Integration) bool { _, ok := i.(integrations.Verifier); return ok }

// callhub is a test server for the probe: it records each request, and
// answers with the status the test sets, with a body that echoes the token
// the way careless APIs do.
type callhub struct {
	mu     sync.Mutex
	got    []*http.Request
	status int
	header http.Header
}

func (c *callhub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	c.got = append(c.got, r.Clone(context.Background()))
	status, header := c.status, c.header
	c.mu.Unlock()
	for k, v := range header {
		w.Header()[k] = v
	}
	if status == http.StatusFound {
		w.Header().Set("Location", "/login")
	}
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"error": "token %s is not valid"}`, r.Header.Get("Authorization"))
}

func TestHTTPProbe(t *testing.T) {
	for _, tc := range []struct {
		name      string
		status    int
		header    http.Header
		expect    int
		class     error // nil: the probe passes
		transient bool
	}{
		{name: "200", status: 200},
		{name: "204", status: 204},
		{name: "expected 418", status: 418, expect: 418},
		{name: "200 when 204 is expected", status: 200, expect: 204, class: failure.ErrInvalid},
		{name: "401", status: 401, class: failure.ErrUnauthorized},
		{name: "403", status: 403, class: failure.ErrUnauthorized},
		{name: "404", status: 404, class: failure.ErrNotFound},
		{name: "redirect not followed", status: 302, class: failure.ErrInvalid},
		{name: "503", status: 503, class: failure.ErrTransient, transient: true},
		{name: "429 with Retry-After", status: 429, header: http.Header{"Retry-After": {"7"}}, class: failure.ErrTransient, transient: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := &callhub{status: tc.status, header: tc.header}
			ts := httptest.NewServer(srv)
			defer ts.Close()
			probe := map[string]any{
				"method":  "head",
				"url":     ts.URL + "/v1/integrations/actionnetwork?check=1",
				"headers": map[string]string{"Authorization": "Token ${CALLHUB_TOKEN}", "Accept": "application/json"},
			}
			if tc.expect != 0 {
				probe["expect_status"] = tc.expect
			}
			integ := mustBuild(t, map[string]any{"verify": map[string]any{"http": probe}})
			v, ok := integ.(integrations.Verifier)
			if !ok {
				t.Fatal("not a Verifier")
			}
			if !isManual(integ) {
				t.Fatal("a manual integration with verify is not Manual")
			}
			err := v.Verify(context.Background())
			if tc.class == nil && err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if tc.class != nil {
				if !errors.Is(err, tc.class) || failure.IsTransient(err) != tc.transient {
					t.Fatalf("Verify error %v, want %v", err, tc.class)
				}
				leakcheck.Assert(t, "Verify error", []byte(err.Error()), callhubToken)
				if !strings.Contains(err.Error(), fmt.Sprintf("status %d", tc.status)) {
					t.Errorf("error %q does not give the status", err)
				}
				if tc.header != nil && failure.RetryAfter(err) != 7*time.Second {
					t.Errorf("RetryAfter = %v", failure.RetryAfter(err))
				}
			}
			if len(srv.got) != 1 {
				t.Fatalf("%d requests, want 1", len(srv.got))
			}
			r := srv.got[0]
			if r.Method != http.MethodHead || r.URL.Path != "/v1/integrations/actionnetwork" || r.URL.RawQuery != "check=1" {
				t.Errorf("request %s %s", r.Method, r.URL)
			}
			if r.Header.Get("Authorization") != "Token "+callhubToken || r.Header.Get("Accept") != "application/json" {
				t.Errorf("headers %v", r.Header)
			}
		})
	}
}

func isManual(i integrations.Integration) bool { _, ok := i.(integrations.Manual); return ok }

func TestHTTPProbeTokenInURLStaysOutOfErrors(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	addr := ts.URL
	ts.Close() // nothing listens: the request fails to connect
	integ := mustBuild(t, map[string]any{"verify": map[string]any{"http": map[string]any{"url": addr + "/health?token=${CALLHUB_TOKEN}"}}})
	err := integ.(integrations.Verifier).Verify(context.Background())
	if !errors.Is(err, failure.ErrTransient) {
		t.Fatalf("error %v, want transient", err)
	}
	leakcheck.Assert(t, "Verify error", []byte(err.Error()), callhubToken)
	if !strings.Contains(err.Error(), "token=${CALLHUB_TOKEN}") {
		t.Errorf("error %q does not name the configured URL", err)
	}
}

func TestHTTPProbeUnsetVariable(t *testing.T) {
	integ := mustBuild(t, map[string]any{"verify": map[string]any{"http": map[string]any{"url": "https://${NO_SUCH_HOST_VAR}/health"}}})
	err := integ.(integrations.Verifier).Verify(context.Background())
	if !errors.Is(err, failure.ErrInvalid) || !strings.Contains(err.Error(), "NO_SUCH_HOST_VAR") {
		t.Fatalf("error %v, want invalid naming the variable", err)
	}
}

func TestHTTPProbeHonoursContext(t *testing.T) {
	block := make(chan struct{})
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-block }))
	defer ts.Close()
	defer close(block)
	integ := mustBuild(t, map[string]any{"verify": map[string]any{"http": map[string]any{"url": ts.URL}}})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := integ.(integrations.Verifier).Verify(ctx)
	if !errors.Is(err, context.DeadlineExceeded) || !failure.IsTransient(err) {
		t.Fatalf("error %v, want a transient deadline", err)
	}
}

func TestExecProbe(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		code      int
		class     error
		transient bool
	}{
		{0, nil, false},
		{1, failure.ErrInvalid, false},
		{75, failure.ErrTransient, true},
	} {
		t.Run(fmt.Sprint(tc.code), func(t *testing.T) {
			probe := filepath.Join(dir, fmt.Sprintf("probe-%d.sh", tc.code))
			dump := probe + ".dump"
			os.WriteFile(probe, []byte(fmt.Sprintf("#!/bin/sh\n{ echo \"$*\"; env; cat; } > %s\nexit %d\n", dump, tc.code)), 0o755)
			integ := mustBuild(t, map[string]any{"verify": map[string]any{"exec": []string{probe, "callhub"}}})
			err := integ.(integrations.Verifier).Verify(context.Background())
			if tc.class == nil && err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if tc.class != nil && (!errors.Is(err, tc.class) || failure.IsTransient(err) != tc.transient) {
				t.Fatalf("Verify error %v, want %v", err, tc.class)
			}
			out, _ := os.ReadFile(dump)
			if !strings.HasPrefix(string(out), "callhub\n") {
				t.Errorf("probe argv: %q", out)
			}
			for _, token := range []string{"VAULT_TOKEN", "CALLHUB_TOKEN", callhubToken} {
				if strings.Contains(string(out), token) {
					t.Errorf("probe environment holds %s", token)
				}
			}
		})
	}
}

func TestNew(t *testing.T) {
	for _, tc := range []struct {
		name     string
		owner    string
		settings map[string]any
		field    string
	}{
		{"no owner", "", nil, "owner"},
		{"blank owner", "  ", nil, "owner"},
		{"both probes", "o", map[string]any{"verify": map[string]any{"http": map[string]any{"url": "https://x"}, "exec": []string{"true"}}}, "verify"},
		{"empty verify", "o", map[string]any{"verify": map[string]any{}}, "verify"},
		{"empty exec", "o", map[string]any{"verify": map[string]any{"exec": []string{}}}, "verify.exec"},
		{"no url", "o", map[string]any{"verify": map[string]any{"http": map[string]any{"method": "GET"}}}, "verify.http.url"},
		{"not http", "o", map[string]any{"verify": map[string]any{"http": map[string]any{"url": "ftp://x/"}}}, "verify.http.url"},
		{"bad method", "o", map[string]any{"verify": map[string]any{"http": map[string]any{"url": "https://x/", "method": "GE T"}}}, "verify.http.method"},
		{"bad status", "o", map[string]any{"verify": map[string]any{"http": map[string]any{"url": "https://x/", "expect_status": 42}}}, "verify.http.expect_status"},
		{"bad variable", "o", map[string]any{"verify": map[string]any{"http": map[string]any{"url": "https://x/${a b}"}}}, "verify.http.url"},
		{"unknown probe field", "o", map[string]any{"verify": map[string]any{"http": map[string]any{"url": "https://x/", "json_pointer": "/k"}}}, "verify.http.json_pointer"},
		{"unknown field", "o", map[string]any{"apply": []string{"x"}}, "apply"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := build(t, tc.owner, tc.settings)
			var ce *config.Error
			if !errors.As(err, &ce) {
				t.Fatalf("error %v (%T), want a *config.Error", err, err)
			}
			if ce.Field != tc.field || !strings.Contains(ce.Item, "callhub") {
				t.Errorf("error %q names field %q, want %q", err, ce.Field, tc.field)
			}
		})
	}
}
