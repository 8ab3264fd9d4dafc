package http_test

import (
	"context"
	"errors"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rekey-dev/rekey/config"
	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/integrations"
	rhttp "github.com/rekey-dev/rekey/integrations/http"
	"github.com/rekey-dev/rekey/internal/leakcheck"
	"github.com/rekey-dev/rekey/internal/webtest"
	"github.com/rekey-dev/rekey/secret"
)

// Preflight reaches apply's host without sending it anything, and sends
// read and verify: each case a configuration Apply would send (nil), or
// one it would fail on, and what the failure says.
func TestPreflight(t *testing.T) {
	closed := func() string { // a port nothing listens on
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		return "http://" + addr
	}()
	cases := []struct {
		name         string
		change       func(f *fixture, s map[string]any)
		probeKey     bool
		class        error // nil: ready
		says         []string
		wantRequests int // requests the widget sees
	}{
		{name: "apply only", change: func(f *fixture, s map[string]any) {}},
		{name: "with read and verify", change: func(f *fixture, s map[string]any) {
			for k, v := range f.widget(true, true) {
				s[k] = v
			}
		}, wantRequests: 2},
		{name: "read with {{key}}, no probe key: skipped", change: func(f *fixture, s map[string]any) {
			s["read"] = map[string]any{"url": "${WP_URL}" + webtest.SettingsPath, "headers": map[string]string{"Authorization": "Bearer ${WP_TOKEN}", "X-Check": "{{key}}"}, "json_pointer": webtest.Pointer}
		}},
		{name: "read with {{key}} and a probe key: sent", probeKey: true, change: func(f *fixture, s map[string]any) {
			s["read"] = map[string]any{"url": "${WP_URL}" + webtest.SettingsPath, "headers": map[string]string{"Authorization": "Bearer ${WP_TOKEN}", "X-Check": "{{key}}"}, "json_pointer": webtest.Pointer}
		}, wantRequests: 1},

		{name: "variable in the URL not set", change: func(f *fixture, s map[string]any) { delete(f.env, "WP_URL") },
			class: failure.ErrInvalid, says: []string{"apply PUT ${WP_URL}", "WP_URL is not set"}},
		{name: "variable in a header not set", change: func(f *fixture, s map[string]any) { delete(f.env, "WP_TOKEN") },
			class: failure.ErrInvalid, says: []string{"header Authorization", "WP_TOKEN is not set"}},
		{name: "host does not resolve", change: func(f *fixture, s map[string]any) { f.env["WP_URL"] = "http://rekey-preflight-host.invalid" },
			class: failure.ErrTransient, says: []string{"apply PUT ${WP_URL}", "connect", "DNS"}},
		{name: "nothing listening", change: func(f *fixture, s map[string]any) { f.env["WP_URL"] = closed },
			class: failure.ErrTransient, says: []string{"apply PUT ${WP_URL}", "connect", "refused"}},
		{name: "read refused", change: func(f *fixture, s map[string]any) {
			for k, v := range f.widget(true, false) {
				s[k] = v
			}
			s["read"].(map[string]any)["headers"] = map[string]string{"Authorization": "Bearer wrong"}
		}, class: failure.ErrUnauthorized, says: []string{"read GET ${WP_URL}", "status 401"}, wantRequests: 1},
		{name: "verify fails", change: func(f *fixture, s map[string]any) {
			for k, v := range f.widget(false, true) {
				s[k] = v
			}
			f.web.FailNext(http.StatusBadGateway)
		}, class: failure.ErrTransient, says: []string{"verify GET", "status 502"}, wantRequests: 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			f.web.SetHolds(secret.New(key2))
			s := f.widget(false, false)
			c.change(f, s)
			in := f.build(t, s)
			pf, ok := in.(integrations.Preflighter)
			if !ok {
				t.Fatalf("%T is not an integrations.Preflighter", in)
			}
			ctx := context.Background()
			if c.probeKey {
				ctx = integrations.WithProbeKey(ctx, secret.New(key2))
			}
			err := pf.Preflight(ctx)
			if f.web.Writes() != 0 {
				t.Fatal("the preflight wrote")
			}
			n := 0
			for _, line := range strings.Split(string(f.web.Log()), "\n") {
				if line != "" && line[0] != ' ' {
					n++
				}
			}
			if n != c.wantRequests {
				t.Errorf("the widget saw %d requests, want %d:\n%s", n, c.wantRequests, f.web.Log())
			}
			if c.probeKey {
				// The read carries the key to the widget, by design: the
				// errors and rekey's log do not.
				if err != nil {
					leakcheck.Assert(t, "Preflight error", []byte(err.Error()), key2)
				}
				leakcheck.Assert(t, "rekey log", f.logs.Bytes(), key2)
			} else {
				f.noLeaks(t, []string{key1, key2}, err)
			}
			if c.class == nil {
				if err != nil {
					t.Fatalf("Preflight: %v", err)
				}
				return
			}
			if !errors.Is(err, c.class) {
				t.Fatalf("Preflight: %v; want %v", err, c.class)
			}
			for _, s := range c.says {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not say %q", err, s)
				}
			}
		})
	}
}

// Over https the preflight completes a TLS handshake, checking the
// certificate as a request would, and sends nothing; a certificate the
// client does not trust is found before the click.
func TestPreflightTLS(t *testing.T) {
	var requests atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { requests.Add(1) }))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake
	srv.StartTLS()
	defer srv.Close()
	for _, c := range []struct {
		name    string
		client  *http.Client
		trusted bool
	}{
		{"trusted", srv.Client(), true},
		{"untrusted", &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			item := config.Integration{ID: "widget", Key: "actionnetwork-main", Type: rhttp.Type, Settings: map[string]any{
				"apply": map[string]any{"method": "PUT", "url": srv.URL + "/settings", "body": `{"k": "{{key}}"}`},
			}}
			in, err := rhttp.New(integrations.Host{Config: &config.Config{File: "rekey.yaml", Integrations: []config.Integration{item}},
				Logger: slog.New(slog.DiscardHandler), Getenv: func(string) string { return "" }, HTTPClient: c.client}, item)
			if err != nil {
				t.Fatal(err)
			}
			err = in.(integrations.Preflighter).Preflight(context.Background())
			if requests.Load() != 0 {
				t.Fatalf("the preflight sent %d requests", requests.Load())
			}
			if c.trusted {
				if err != nil {
					t.Fatalf("Preflight: %v", err)
				}
				return
			}
			if !errors.Is(err, failure.ErrInvalid) || !strings.Contains(err.Error(), "TLS certificate not trusted") {
				t.Fatalf("Preflight: %v; want invalid: TLS certificate not trusted", err)
			}
		})
	}
}

// A key a header cannot carry is refused before the click (Accepts) and
// by Apply, in the same words, before anything is sent; in a body any key
// goes.
func TestAcceptsAgreesWithApply(t *testing.T) {
	f := newFixture(t)
	inHeader := f.widget(false, false)
	inHeader["apply"].(map[string]any)["headers"] = map[string]string{"Authorization": "Bearer ${WP_TOKEN}", "X-Api-Key": "{{key}}"}
	for _, c := range []struct {
		name     string
		settings map[string]any
		key      string
		says     string
	}{
		{"hex in a header", inHeader, "0123456789abcdef0123456789abcdef", ""},
		{"quotes in a header", inHeader, `a"b'c\d e`, ""},
		{"line break in a header", inHeader, "ab\ncd", "header X-Api-Key"},
		{"control character in a header", inHeader, "ab\x01cd", "header X-Api-Key"},
		{"line break in a JSON body", f.widget(false, false), "ab\ncd", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			in := f.build(t, c.settings)
			a, ok := in.(integrations.Acceptor)
			if !ok {
				t.Fatalf("%T is not an integrations.Acceptor", in)
			}
			before := f.web.Writes()
			acc := a.Accepts(secret.New(c.key))
			_, applied := apply(in, c.key)
			if c.says == "" {
				if acc != nil || applied != nil {
					t.Fatalf("Accepts %v, Apply %v; want both to take the key", acc, applied)
				}
				return
			}
			for what, err := range map[string]error{"Accepts": acc, "Apply": applied} {
				if !errors.Is(err, failure.ErrInvalid) || !strings.Contains(err.Error(), c.says) || !strings.Contains(err.Error(), "control character") {
					t.Errorf("%s: %v; want invalid saying %q", what, err, c.says)
				}
			}
			if f.web.Writes() != before {
				t.Error("a refused key was sent")
			}
			f.noLeaks(t, []string{c.key}, acc, applied)
		})
	}
}

// The preflight opens one connection to apply's host: when it sends a
// read (or verify) there, that request is the proof of the host, and no
// connection of its own is opened beside it; a read elsewhere leaves
// apply's host to be reached on its own. Nothing is ever written.
func TestPreflightConnectsOnce(t *testing.T) {
	type counted struct {
		srv           *httptest.Server
		conns, writes atomic.Int32
		reads         atomic.Int32
	}
	serve := func() *counted {
		c := &counted{}
		c.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodGet {
				c.writes.Add(1)
				return
			}
			c.reads.Add(1)
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"k": "held-value"}`)
		}))
		c.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				c.conns.Add(1)
			}
		}
		c.srv.Start()
		t.Cleanup(c.srv.Close)
		return c
	}
	for _, c := range []struct {
		name           string
		readElsewhere  bool
		applyConns     int32
		applyReads     int32
		elsewhereReads int32
	}{
		{name: "read on apply's host", applyConns: 1, applyReads: 1},
		{name: "read on another host", readElsewhere: true, applyConns: 1, elsewhereReads: 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			target, other := serve(), serve()
			readURL := target.srv.URL + "/settings"
			if c.readElsewhere {
				readURL = other.srv.URL + "/settings"
			}
			item := config.Integration{ID: "widget", Key: "actionnetwork-main", Type: rhttp.Type, Settings: map[string]any{
				"apply": map[string]any{"method": "PUT", "url": target.srv.URL + "/settings", "body": `{"k": "{{key}}"}`},
				"read":  map[string]any{"url": readURL, "json_pointer": "/k"},
			}}
			in, err := rhttp.New(integrations.Host{Config: &config.Config{File: "rekey.yaml", Integrations: []config.Integration{item}},
				Logger: slog.New(slog.DiscardHandler), Getenv: func(string) string { return "" },
				HTTPClient: &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}}, item)
			if err != nil {
				t.Fatal(err)
			}
			if err := in.(integrations.Preflighter).Preflight(context.Background()); err != nil {
				t.Fatalf("Preflight: %v", err)
			}
			if n := target.writes.Load() + other.writes.Load(); n != 0 {
				t.Fatalf("the preflight wrote %d times", n)
			}
			// A connection only opened and closed may be accepted by the
			// server a moment after Preflight returns; one that carried a
			// request was accepted before it.
			for deadline := time.Now().Add(5 * time.Second); target.conns.Load() < c.applyConns && time.Now().Before(deadline); {
				time.Sleep(5 * time.Millisecond)
			}
			if got := target.conns.Load(); got != c.applyConns {
				t.Errorf("apply's host saw %d connections, want %d", got, c.applyConns)
			}
			if got := target.reads.Load(); got != c.applyReads {
				t.Errorf("apply's host saw %d reads, want %d", got, c.applyReads)
			}
			if got := other.reads.Load(); got != c.elsewhereReads {
				t.Errorf("the other host saw %d reads, want %d", got, c.elsewhereReads)
			}
		})
	}
}
