package http_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
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

const (
	key1 = "an-0f1e2d3c4b5a69788796a5b4c3d2e1f0"
	key2 = "an-ffeeddccbbaa99887766554433221100"
)

type fixture struct {
	web  *webtest.Server
	env  map[string]string
	logs bytes.Buffer
}

func newFixture(t *testing.T) *fixture {
	web := webtest.New(t)
	return &fixture{web: web, env: map[string]string{"WP_TOKEN": web.Token, "WP_URL": web.URL}}
}

// widget is the configuration of the sign-up widget in webtest.
func (f *fixture) widget(read, verify bool) map[string]any {
	s := map[string]any{
		"apply": map[string]any{
			"method":  "PUT",
			"url":     "${WP_URL}" + webtest.SettingsPath,
			"headers": map[string]string{"Authorization": "Bearer ${WP_TOKEN}", "Content-Type": "application/json"},
			"body":    `{"` + webtest.Field + `": "{{key}}"}`,
		},
	}
	if read {
		s["read"] = map[string]any{
			"url":          "${WP_URL}" + webtest.SettingsPath,
			"headers":      map[string]string{"Authorization": "Bearer ${WP_TOKEN}"},
			"json_pointer": webtest.Pointer,
		}
	}
	if verify {
		s["verify"] = map[string]any{"url": f.web.URL + webtest.StatusPath, "expect_status": 200}
	}
	return s
}

func (f *fixture) try(settings map[string]any) (integrations.Integration, error) {
	item := config.Integration{ID: "widget", Key: "actionnetwork-main", Type: rhttp.Type, Settings: settings}
	cfg := &config.Config{File: "rekey.yaml", Integrations: []config.Integration{item}}
	return rhttp.New(integrations.Host{
		Config: cfg,
		Logger: slog.New(slog.NewTextHandler(&f.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Getenv: func(k string) string { return f.env[k] },
	}, item)
}

func (f *fixture) build(t *testing.T, settings map[string]any) integrations.Integration {
	t.Helper()
	in, err := f.try(settings)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return in
}

func (f *fixture) noLeaks(t *testing.T, keys []string, errs ...error) {
	t.Helper()
	var b bytes.Buffer
	b.Write(f.web.Log())
	b.Write(f.logs.Bytes())
	for _, err := range errs {
		if err != nil {
			fmt.Fprintf(&b, "%v\n", err)
		}
	}
	leakcheck.Assert(t, "widget log, rekey log and errors", b.Bytes(), append(keys, f.web.Token)...)
}

func apply(in integrations.Integration, k string) (integrations.ApplyResult, error) {
	return in.Apply(context.Background(), integrations.ApplyRequest{Key: secret.New(k), RotationID: "r1"})
}

func TestConfigErrors(t *testing.T) {
	f := newFixture(t)
	withApply := func(change map[string]any) map[string]any {
		a := map[string]any{"url": "https://site.example/settings", "body": `{"k": "{{key}}"}`}
		for k, v := range change {
			a[k] = v
		}
		return map[string]any{"apply": a}
	}
	cases := []struct {
		name     string
		settings map[string]any
		field    string
		says     string
	}{
		{"no apply", map[string]any{}, "apply", "required"},
		{"key in url", withApply(map[string]any{"url": "https://site.example/?k={{key}}"}), "apply.url", "never in a URL"},
		{"no key sent", withApply(map[string]any{"body": `{"k": "v"}`}), "apply", "sends no key"},
		{"bad method", withApply(map[string]any{"method": "FETCH"}), "apply.method", "not one of"},
		{"no url", withApply(map[string]any{"url": ""}), "apply.url", "required"},
		{"not http", withApply(map[string]any{"url": "ftp://site.example/"}), "apply.url", "not an http(s) URL"},
		{"bad env name", withApply(map[string]any{"url": "https://${site-host}/"}), "apply.url", "not an environment variable name"},
		{"unterminated env", withApply(map[string]any{"headers": map[string]string{"Authorization": "Bearer ${TOKEN"}}), "apply.headers.Authorization", "unterminated"},
		{"bad header name", withApply(map[string]any{"headers": map[string]string{"Bad Header": "x"}}), "apply.headers", "not a header name"},
		{"declared JSON that is not", withApply(map[string]any{"body": "k={{key}}", "headers": map[string]string{"Content-Type": "application/json"}}), "apply.body", "is not JSON"},
		{"key in verify url", map[string]any{"apply": withApply(nil)["apply"], "verify": map[string]any{"url": "https://site.example/?k={{key}}"}}, "verify.url", "never in a URL"},
		{"declared JSON verify body that is not", map[string]any{"apply": withApply(nil)["apply"], "verify": map[string]any{"url": "https://site.example/", "body": "k={{key}}", "headers": map[string]string{"Content-Type": "application/json"}}}, "verify.body", "is not JSON"},
		{"bad pointer", map[string]any{"apply": withApply(nil)["apply"], "read": map[string]any{"url": "https://site.example/", "json_pointer": "settings/key"}}, "read.json_pointer", "must start with /"},
		{"unknown field in read", map[string]any{"apply": withApply(nil)["apply"], "read": map[string]any{"url": "https://site.example/", "query": "x"}}, "read.query", "unknown field"},
		{"bad expect_status", map[string]any{"apply": withApply(nil)["apply"], "verify": map[string]any{"url": "https://site.example/", "expect_status": 42}}, "verify.expect_status", "not an HTTP status"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := f.try(c.settings)
			var ce *config.Error
			if !errors.As(err, &ce) {
				t.Fatalf("New: %v, want a *config.Error", err)
			}
			if ce.Field != c.field || !strings.Contains(ce.Msg, c.says) || !strings.Contains(ce.Item, "(widget)") {
				t.Fatalf("error %q: field %q, want field %q saying %q", err, ce.Field, c.field, c.says)
			}
		})
	}
}

func TestVariablesInURLs(t *testing.T) {
	f := newFixture(t)
	for _, u := range []string{"https://${SITE_HOST}/wp-json/x", "${SITE_URL}/x", "https://site.example/x?token=${T}"} {
		s := map[string]any{"apply": map[string]any{"url": u, "body": "{{key}}"}}
		if _, err := f.try(s); err != nil {
			t.Errorf("url %q: %v", u, err)
		}
	}
}

func TestAbilitiesFollowConfiguration(t *testing.T) {
	f := newFixture(t)
	cases := []struct {
		read, verify bool
	}{{false, false}, {true, false}, {false, true}, {true, true}}
	for _, c := range cases {
		in := f.build(t, f.widget(c.read, c.verify))
		_, isReader := in.(integrations.Reader)
		_, isVerifier := in.(integrations.Verifier)
		if isReader != c.read || isVerifier != c.verify {
			t.Fatalf("read %v verify %v: Reader %v Verifier %v", c.read, c.verify, isReader, isVerifier)
		}
		if in.ID() != "widget" {
			t.Fatalf("ID = %q", in.ID())
		}
	}
}

func TestApplyWritesTheWidget(t *testing.T) {
	cases := []struct {
		name string
		key  string
	}{
		{"plain key", key1},
		{"key needing JSON escapes", `an-"quoted"\back</script>` + "\u2028\t"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			in := f.build(t, f.widget(true, true))
			res, err := apply(in, c.key)
			if err != nil || !res.Changed {
				t.Fatalf("Apply = %+v, %v", res, err)
			}
			if !f.web.Holds().Equal(secret.New(c.key)) || f.web.Writes() != 1 {
				t.Fatalf("widget holds %v after %d writes", f.web.Holds(), f.web.Writes())
			}
			got, err := in.(integrations.Reader).Read(context.Background())
			if err != nil || !got.Equal(secret.New(c.key)) {
				t.Fatalf("Read = %v, %v", got, err)
			}
			if err := in.(integrations.Verifier).Verify(context.Background()); err != nil {
				t.Fatalf("Verify: %v", err)
			}
			res, err = apply(in, c.key)
			if err != nil || res.Changed || f.web.Writes() != 1 {
				t.Fatalf("second Apply = %+v, %v, %d writes; want nothing written", res, err, f.web.Writes())
			}
			f.noLeaks(t, []string{c.key}, err)
		})
	}
}

func TestApplyWithoutReadAlwaysSends(t *testing.T) {
	f := newFixture(t)
	in := f.build(t, f.widget(false, false))
	for i := 1; i <= 2; i++ {
		res, err := apply(in, key1)
		if err != nil || !res.Changed || f.web.Writes() != i {
			t.Fatalf("Apply %d = %+v, %v with %d writes", i, res, err, f.web.Writes())
		}
	}
}

// TestBodiesAndHeaders checks exactly what goes on the wire for each way
// of carrying the key.
func TestBodiesAndHeaders(t *testing.T) {
	const k = `an-"x"&y=z+1`
	cases := []struct {
		name        string
		apply       map[string]any
		wantBody    string
		wantCT      string
		wantHeaders map[string]string
	}{
		{"JSON string", map[string]any{"body": `{"api_key": "{{key}}"}`},
			`{"api_key": "an-\"x\"&y=z+1"}`, "application/json", nil},
		{"JSON value", map[string]any{"body": `{"api_key": {{key}}}`, "headers": map[string]string{"Content-Type": "application/json"}},
			`{"api_key": "an-\"x\"&y=z+1"}`, "application/json", nil},
		{"form", map[string]any{"body": `api_key={{key}}&list=main`, "headers": map[string]string{"Content-Type": "application/x-www-form-urlencoded"}},
			`api_key=` + url.QueryEscape(k) + `&list=main`, "application/x-www-form-urlencoded", nil},
		{"raw", map[string]any{"body": `{{key}}`, "headers": map[string]string{"Content-Type": "text/plain"}},
			k, "text/plain", nil},
		{"key and env in headers", map[string]any{"method": "POST", "headers": map[string]string{"X-Api-Key": "{{key}}", "Authorization": "Bearer ${SYNC_TOKEN}"}},
			"", "", map[string]string{"X-Api-Key": k, "Authorization": "Bearer sync-tok"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var gotBody, gotCT, gotMethod string
			var gotHeader http.Header
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				gotBody, gotCT, gotMethod, gotHeader = string(b), r.Header.Get("Content-Type"), r.Method, r.Header
				w.WriteHeader(http.StatusNoContent)
			}))
			t.Cleanup(srv.Close)
			f := newFixture(t)
			f.env["SYNC_TOKEN"] = "sync-tok"
			a := map[string]any{"url": srv.URL + "/keys", "method": "PUT"}
			for n, v := range c.apply {
				a[n] = v
			}
			in := f.build(t, map[string]any{"apply": a})
			if _, err := apply(in, k); err != nil {
				t.Fatalf("Apply: %v", err)
			}
			if gotMethod != a["method"] || gotBody != c.wantBody || gotCT != c.wantCT {
				t.Fatalf("sent %s, Content-Type %q, body %q; want %s, %q, %q", gotMethod, gotCT, gotBody, a["method"], c.wantCT, c.wantBody)
			}
			for n, v := range c.wantHeaders {
				if gotHeader.Get(n) != v {
					t.Fatalf("header %s = %q, want %q", n, gotHeader.Get(n), v)
				}
			}
		})
	}
}

func TestReadErrors(t *testing.T) {
	cases := []struct {
		name   string
		answer string
		class  error
		says   string
	}{
		{"member missing", `{"settings": {}}`, failure.ErrNotFound, `no member "action_network_api_key"`},
		{"empty", `{"settings": {"action_network_api_key": ""}}`, failure.ErrNotFound, "empty string"},
		{"null", `{"settings": {"action_network_api_key": null}}`, failure.ErrNotFound, "null"},
		{"not a string", `{"settings": {"action_network_api_key": 1234567890123}}`, failure.ErrInvalid, "a number, not a string"},
		{"not JSON", `settings: ` + key1, failure.ErrInvalid, "is not JSON"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, c.answer)
			}))
			t.Cleanup(srv.Close)
			f := newFixture(t)
			s := f.widget(true, false)
			s["read"] = map[string]any{"url": srv.URL, "json_pointer": webtest.Pointer}
			in := f.build(t, s)
			_, err := in.(integrations.Reader).Read(context.Background())
			if !errors.Is(err, c.class) || !strings.Contains(err.Error(), c.says) {
				t.Fatalf("Read: %v; want %v saying %q", err, c.class, c.says)
			}
			f.noLeaks(t, []string{key1, "1234567890123"}, err)
		})
	}
}

func TestFailuresAreClassified(t *testing.T) {
	cases := []struct {
		name      string
		prepare   func(f *fixture)
		class     error
		transient bool
	}{
		{"server error echoing the key", func(f *fixture) { f.web.FailNext(500) }, failure.ErrTransient, true},
		{"unavailable with Retry-After", func(f *fixture) { f.web.FailNext(503) }, failure.ErrTransient, true},
		{"wrong admin token", func(f *fixture) { f.env["WP_TOKEN"] = "wrong" }, failure.ErrUnauthorized, false},
		{"unset variable", func(f *fixture) { delete(f.env, "WP_TOKEN") }, failure.ErrInvalid, false},
		{"bad request echoing the key", func(f *fixture) { f.web.FailNext(400) }, failure.ErrInvalid, false},
		{"connection refused", func(f *fixture) { f.env["WP_URL"] = "http://127.0.0.1:1" }, failure.ErrTransient, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			f.web.SetHolds(secret.New(key2))
			in := f.build(t, f.widget(false, false))
			c.prepare(f)
			_, err := apply(in, key1)
			if !errors.Is(err, c.class) || failure.IsTransient(err) != c.transient {
				t.Fatalf("Apply: %v; want %v, transient %v", err, c.class, c.transient)
			}
			if !strings.HasPrefix(err.Error(), "http: apply PUT ${WP_URL}/wp-json/signup/v1/settings") {
				t.Fatalf("error %q does not name the request as configured", err)
			}
			f.noLeaks(t, []string{key1, key2}, err)
		})
	}
	t.Run("unset variable is named", func(t *testing.T) {
		f := newFixture(t)
		in := f.build(t, f.widget(false, false))
		delete(f.env, "WP_TOKEN")
		_, err := apply(in, key1)
		if err == nil || !strings.Contains(err.Error(), "environment variable WP_TOKEN is not set") {
			t.Fatalf("Apply: %v", err)
		}
	})
}

func TestVerify(t *testing.T) {
	cases := []struct {
		name      string
		holds     string
		accepts   string
		expect    int
		fail      int
		works     bool
		transient bool
	}{
		{"works", key1, key1, 200, 0, true, false},
		{"any 2xx by default", key1, key1, 0, 0, true, false},
		{"upstream refuses the key", key2, key1, 200, 0, false, false},
		{"holds nothing", "", key1, 200, 0, false, false},
		{"could not tell", key1, key1, 200, 503, false, true},
		{"other status than expected", key1, key1, 204, 0, false, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			f.web.SetHolds(secret.New(c.holds))
			f.web.Accept(secret.New(c.accepts))
			if c.fail != 0 {
				f.web.FailNext(c.fail)
			}
			s := f.widget(false, true)
			s["verify"].(map[string]any)["expect_status"] = c.expect
			in := f.build(t, s)
			err := in.(integrations.Verifier).Verify(context.Background())
			if (err == nil) != c.works || failure.IsTransient(err) != c.transient {
				t.Fatalf("Verify: %v; want works %v, transient %v", err, c.works, c.transient)
			}
			f.noLeaks(t, []string{key1, key2}, err)
		})
	}
}

func TestRedirects(t *testing.T) {
	var elsewhereSaw []string
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		elsewhereSaw = append(elsewhereSaw, r.Header.Get("Authorization")+string(b))
	}))
	t.Cleanup(elsewhere.Close)
	cases := []struct {
		name   string
		target func(f *fixture) string
		code   int
		ok     bool
	}{
		{"same host, same method", func(f *fixture) string { return f.web.URL + webtest.SettingsPath }, http.StatusPermanentRedirect, true},
		{"another host", func(*fixture) string { return elsewhere.URL + webtest.SettingsPath }, http.StatusTemporaryRedirect, false},
		{"PUT turned into GET", func(f *fixture) string { return f.web.URL + webtest.SettingsPath }, http.StatusFound, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			target := c.target(f)
			mux := http.NewServeMux()
			mux.HandleFunc("/old", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, target, c.code) })
			// A same-host redirect goes through a proxy to the widget so the
			// host stays the same.
			web, _ := url.Parse(f.web.URL)
			mux.Handle("/", &proxy{to: web})
			front := httptest.NewServer(mux)
			t.Cleanup(front.Close)
			if strings.HasPrefix(target, f.web.URL) {
				target = front.URL + webtest.SettingsPath
			}
			s := f.widget(false, false)
			s["apply"].(map[string]any)["url"] = front.URL + "/old"
			in := f.build(t, s)
			_, err := apply(in, key1)
			if (err == nil) != c.ok {
				t.Fatalf("Apply: %v; want success %v", err, c.ok)
			}
			if !c.ok && !errors.Is(err, failure.ErrInvalid) {
				t.Fatalf("refused redirect is %v, want ErrInvalid", err)
			}
			if len(elsewhereSaw) > 0 {
				t.Fatal("a request reached another host")
			}
			f.noLeaks(t, []string{key1}, err)
		})
	}
}

type proxy struct{ to *url.URL }

func (p *proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	out := r.Clone(r.Context())
	out.URL.Scheme, out.URL.Host, out.RequestURI = p.to.Scheme, p.to.Host, ""
	resp, err := http.DefaultTransport.RoundTrip(out)
	if err != nil {
		w.WriteHeader(http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	w.WriteHeader(resp.StatusCode)
	io.Copy(w, resp.Body)
}

func TestCancelledWhileTheTargetHangs(t *testing.T) {
	f := newFixture(t)
	in := f.build(t, f.widget(true, false))
	f.web.HangNext()
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	done := make(chan error, 1)
	go func() { _, err := in.Apply(ctx, integrations.ApplyRequest{Key: secret.New(key1)}); done <- err }()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Apply: %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Apply did not return after its context was cancelled")
	}
	if f.web.Writes() != 0 {
		t.Fatal("a cancelled Apply wrote")
	}
}
