package http_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/rekey-dev/rekey/config"
	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/integrations"
	rhttp "github.com/rekey-dev/rekey/integrations/http"
	"github.com/rekey-dev/rekey/internal/leakcheck"
	"github.com/rekey-dev/rekey/secret"
	"github.com/rekey-dev/rekey/state"
)

// gate is a service that accepts only the API key it holds, the way a
// sync service does: PUT /admin/key (admin token) sets it; GET /api/me
// answers 200 to "Authorization: Bearer <key>"; POST /api/verify answers
// 200 to {"api_key": "<key>"}; GET /api/key returns {"key": <key>} to
// "X-Api-Key: <key>". A wrong key gets a 401 whose body quotes what was
// sent, as careless services do.
type gate struct {
	*httptest.Server
	mu   sync.Mutex
	held string
	log  strings.Builder // every request, for the leak check (the key's own slots excepted)
}

const gateAdmin = "gate-admin-token"

func newGate(t *testing.T) *gate {
	g := &gate{}
	g.Server = httptest.NewServer(http.HandlerFunc(g.serve))
	t.Cleanup(g.Close)
	return g
}

func (g *gate) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	g.mu.Lock()
	defer g.mu.Unlock()
	fmt.Fprintf(&g.log, "%s %s\n", r.Method, r.URL)
	refuse := func(got string) {
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprintf(w, `{"error": "unknown key %s"}`, got)
	}
	switch {
	case r.Method == http.MethodPut && r.URL.Path == "/admin/key":
		if r.Header.Get("Authorization") != "Bearer "+gateAdmin {
			w.WriteHeader(http.StatusForbidden)
			return
		}
		var v struct {
			Key string `json:"key"`
		}
		if json.Unmarshal(body, &v) != nil || v.Key == "" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		g.held = v.Key
	case r.Method == http.MethodGet && r.URL.Path == "/api/me":
		if got := r.Header.Get("Authorization"); got != "Bearer "+g.held {
			refuse(got)
			return
		}
		fmt.Fprint(w, `{"user": "sync"}`)
	case r.Method == http.MethodPost && r.URL.Path == "/api/verify":
		var v struct {
			Key string `json:"api_key"`
		}
		if json.Unmarshal(body, &v) != nil || v.Key != g.held || r.Header.Get("Content-Type") != "application/json" {
			refuse(string(body))
			return
		}
		fmt.Fprint(w, `{"valid": true}`)
	case r.Method == http.MethodGet && r.URL.Path == "/api/key":
		if got := r.Header.Get("X-Api-Key"); got != g.held {
			refuse(got)
			return
		}
		json.NewEncoder(w).Encode(map[string]string{"key": g.held})
	default:
		http.NotFound(w, r)
	}
}

func (g *gate) hold(k string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.held = k
}

func gateSettings(g *gate, probe map[string]any, read map[string]any) map[string]any {
	s := map[string]any{"apply": map[string]any{
		"method": "PUT", "url": g.URL + "/admin/key",
		"headers": map[string]string{"Authorization": "Bearer " + gateAdmin},
		"body":    `{"key": "{{key}}"}`,
	}}
	if probe != nil {
		s["verify"] = probe
	}
	if read != nil {
		s["read"] = read
	}
	return s
}

func build(t *testing.T, settings map[string]any, logs io.Writer) integrations.Integration {
	t.Helper()
	item := config.Integration{ID: "sync", Key: "actionnetwork-main", Type: rhttp.Type, Settings: settings}
	cfg := &config.Config{File: "rekey.yaml", Integrations: []config.Integration{item}}
	in, err := rhttp.New(integrations.Host{Config: cfg, Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}, item)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return in
}

func expect(current secret.Key, older ...secret.Key) integrations.Expect {
	want := integrations.Expect{Versions: map[string]integrations.VersionState{}, Current: current.Fingerprint(), Key: current}
	want.Versions[current.Fingerprint()] = integrations.VersionCurrent
	for _, k := range older {
		want.Versions[k.Fingerprint()] = integrations.VersionSuperseded
	}
	return want
}

// TestProbesAuthenticateWithTheKey: {{key}} in a verify probe's headers
// or body, or a read's headers, is the version the integration should
// hold; the probe passes against a service that accepts only that key,
// and fails when the service holds another. No error, reason or log line
// holds a key, even though the service's answers quote it.
func TestProbesAuthenticateWithTheKey(t *testing.T) {
	k1, k2 := secret.New(key1), secret.New(key2)
	g := newGate(t)
	probes := map[string]struct{ verify, read map[string]any }{
		"verify header": {verify: map[string]any{"url": g.URL + "/api/me", "headers": map[string]string{"Authorization": "Bearer {{key}}"}}},
		"verify body": {verify: map[string]any{"method": "POST", "url": g.URL + "/api/verify",
			"headers": map[string]string{"Content-Type": "application/json"}, "body": `{"api_key": "{{key}}"}`, "expect_status": 200}},
		"read header": {read: map[string]any{"url": g.URL + "/api/key", "headers": map[string]string{"X-Api-Key": "{{key}}"}, "json_pointer": "/key"}},
	}
	for name, p := range probes {
		t.Run(name, func(t *testing.T) {
			var logs strings.Builder
			in := build(t, gateSettings(g, p.verify, p.read), &logs)
			ctx := context.Background()
			var reasons []string

			// Applied: the service holds k1, and the probe with k1 passes.
			g.hold(key2)
			if _, err := in.Apply(ctx, integrations.ApplyRequest{Key: k1, RotationID: "r1"}); err != nil {
				t.Fatalf("apply: %v", err)
			}
			st := integrations.Observe(ctx, in, expect(k1, k2))
			reasons = append(reasons, st.Reason)
			if st.State != state.Current {
				t.Fatalf("with the key the service holds: %s (%s), want current", st.State, st.Reason)
			}

			// The service holds k1 but k2 is current: the probe, made with
			// k2, is refused.
			st = integrations.Observe(ctx, in, expect(k2, k1))
			reasons = append(reasons, st.Reason)
			if st.State == state.Current || st.State == state.Unknown && p.read == nil {
				t.Fatalf("with a key the service refuses: %s (%s)", st.State, st.Reason)
			}

			// With no key to send, the probe cannot tell.
			want := expect(k2, k1)
			want.Key = secret.Key{}
			st = integrations.Observe(ctx, in, want)
			reasons = append(reasons, st.Reason)
			if st.State != state.Unknown || !strings.Contains(st.Reason, "{{key}}") {
				t.Fatalf("without a key: %s (%s), want unknown saying why", st.State, st.Reason)
			}

			leakcheck.Assert(t, "reasons, logs and requests", []byte(strings.Join(reasons, "\n")+logs.String()+g.log.String()), key1, key2, gateAdmin)
		})
	}
}

// With read authenticating by the key, Apply reads with the key it is
// about to write: a service that already holds it is not written again.
func TestApplyReadsWithTheKeyItApplies(t *testing.T) {
	g := newGate(t)
	var logs strings.Builder
	in := build(t, gateSettings(g, nil, map[string]any{"url": g.URL + "/api/key", "headers": map[string]string{"X-Api-Key": "{{key}}"}, "json_pointer": "/key"}), &logs)
	g.hold(key1)
	res, err := in.Apply(context.Background(), integrations.ApplyRequest{Key: secret.New(key1)})
	if err != nil || res.Changed {
		t.Fatalf("apply of the key held: %+v %v, want nothing written", res, err)
	}
	res, err = in.Apply(context.Background(), integrations.ApplyRequest{Key: secret.New(key2)})
	if err != nil || !res.Changed {
		t.Fatalf("apply of a new key: %+v %v", res, err)
	}
	leakcheck.Assert(t, "logs", []byte(logs.String()+g.log.String()), key1, key2, gateAdmin)
}

// A manual integration's verify.http probe may authenticate with the key too.
func TestProbeWithKey(t *testing.T) {
	g := newGate(t)
	g.hold(key1)
	item := config.Integration{ID: "callhub", Key: "actionnetwork-main", Type: "manual"}
	cfg := &config.Config{File: "rekey.yaml", Integrations: []config.Integration{item}}
	p, err := rhttp.NewProbe(integrations.Host{Config: cfg}, item, "verify.http",
		map[string]any{"url": g.URL + "/api/me", "headers": map[string]string{"Authorization": "Bearer {{key}}"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Verify(integrations.WithProbeKey(context.Background(), secret.New(key1))); err != nil {
		t.Fatalf("probe with the key held: %v", err)
	}
	err = p.Verify(integrations.WithProbeKey(context.Background(), secret.New(key2)))
	if !errors.Is(err, failure.ErrUnauthorized) {
		t.Fatalf("probe with another key: %v, want unauthorized", err)
	}
	leakcheck.Assert(t, "error", []byte(err.Error()), key1, key2)
}

// {{key}} stays refused in every URL: URLs end up in logs and errors.
func TestKeyNeverInURLs(t *testing.T) {
	for _, field := range []string{"apply", "read", "verify"} {
		s := map[string]any{"apply": map[string]any{"url": "https://site.example/x", "body": "{{key}}"}}
		s[field] = map[string]any{"url": "https://site.example/x?k={{key}}"}
		if field == "apply" {
			s[field].(map[string]any)["body"] = "{{key}}"
		}
		item := config.Integration{ID: "w", Key: "k", Type: rhttp.Type, Settings: s}
		cfg := &config.Config{File: "rekey.yaml", Integrations: []config.Integration{item}}
		_, err := rhttp.New(integrations.Host{Config: cfg}, item)
		var ce *config.Error
		if !errors.As(err, &ce) || ce.Field != field+".url" || !strings.Contains(ce.Msg, "never in a URL") {
			t.Errorf("%s.url with {{key}}: %v", field, err)
		}
	}
}
