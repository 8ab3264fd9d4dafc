// Package platformtest holds the failure checks every hosted-platform
// integration type (heroku, render, netlify, vercel, gitlab, kubernetes)
// passes against its test server: a refused token and a missing object
// fail with a classified error naming the target, a rate limit asks the
// engine to wait what the platform said, a write that loses a race (409,
// 412) is retried on a fresh read, and no key reaches an error or a log.
package platformtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	stdhttp "net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/integrations"
	"github.com/rekey-dev/rekey/internal/hostile"
	"github.com/rekey-dev/rekey/internal/leakcheck"
	"github.com/rekey-dev/rekey/secret"
	"github.com/rekey-dev/rekey/state"
)

// Server is what the checks need of a test server (apitest.Base has it).
type Server interface {
	FailNextWrite(code int)
	Throttle(n int, wait time.Duration)
	Log() []byte
}

// Target is one integration against its test server.
type Target struct {
	// New builds a fresh integration and server. badToken gives the
	// integration a token the server refuses; missing points it at an
	// object (app, service, project, Secret) that does not exist.
	New func(t *testing.T, badToken, missing bool) (integrations.Integration, Server, Probe)
	// Names are strings a refused-token error must contain (the target,
	// the token variable); Missing, those a not-found error must.
	Names   []string
	Missing []string
	// Wait is the wait the platform's rate-limit answer asks for, within
	// a second; Throttle is given it.
	Wait time.Duration
	// Conflicts are the statuses that mean "lost a race" on this
	// platform's writes; default 409 and 412.
	Conflicts []int
	// Hostile builds an integration whose API is reached through a
	// hostile peer (package hostile) that answers with bytes quoting the
	// request: at(upstream) starts one forwarding reads to upstream (the
	// test server's scheme and host) and answering every write (which
	// carries the key) itself, or answering everything itself when
	// upstream is "", and returns its URL. It returns the integration, the
	// token it sends and its log.
	Hostile func(t *testing.T, at func(upstream string) string) (in integrations.Integration, token string, logs func() []byte)
}

// Probe is the test's view of what the server holds.
type Probe interface {
	Holds() secret.Key
	Writes() int
	Logs() []byte // the integration's own log
}

// Run runs every check.
func Run(t *testing.T, tg Target) {
	key := newKey()
	t.Run("unauthorized", func(t *testing.T) {
		in, srv, p := tg.New(t, true, false)
		_, err := in.Apply(context.Background(), integrations.ApplyRequest{Key: key, RotationID: "r1"})
		wantClass(t, "Apply with a refused token", err, failure.ErrUnauthorized, tg.Names)
		if pf, ok := in.(integrations.Preflighter); !ok {
			t.Errorf("%T is not a Preflighter", in)
		} else {
			wantClass(t, "Preflight with a refused token", pf.Preflight(context.Background()), failure.ErrUnauthorized, tg.Names)
		}
		if p.Writes() != 0 {
			t.Errorf("%d writes with a refused token", p.Writes())
		}
		noLeak(t, key, err, srv, p)
	})
	t.Run("not found", func(t *testing.T) {
		in, srv, p := tg.New(t, false, true)
		_, err := in.Apply(context.Background(), integrations.ApplyRequest{Key: key, RotationID: "r1"})
		wantClass(t, "Apply to a missing target", err, failure.ErrNotFound, tg.Missing)
		if pf, ok := in.(integrations.Preflighter); ok {
			wantClass(t, "Preflight of a missing target", pf.Preflight(context.Background()), failure.ErrNotFound, tg.Missing)
		}
		st := integrations.Observe(context.Background(), in, integrations.Expect{Current: key.Fingerprint()})
		if st.State == state.Current {
			t.Errorf("Observe of a missing target says current")
		}
		noLeak(t, key, err, srv, p)
	})
	t.Run("rate limited", func(t *testing.T) {
		in, srv, p := tg.New(t, false, false)
		srv.Throttle(1, tg.Wait)
		_, err := in.Apply(context.Background(), integrations.ApplyRequest{Key: key, RotationID: "r1"})
		var ra *failure.RetryAfterError
		switch {
		case !errors.As(err, &ra):
			t.Fatalf("Apply while rate limited: %v, want a *failure.RetryAfterError", err)
		case !failure.IsTransient(err):
			t.Errorf("a rate limit is not transient: %v", err)
		case ra.After < tg.Wait-time.Second || ra.After > tg.Wait+time.Second:
			t.Errorf("rate limit: asks to wait %v, the platform said %v", ra.After, tg.Wait)
		}
		// What the engine does after the wait: the next attempt succeeds.
		if _, err := in.Apply(context.Background(), integrations.ApplyRequest{Key: key, RotationID: "r1"}); err != nil {
			t.Fatalf("Apply after the rate limit: %v", err)
		}
		if !p.Holds().Equal(key) {
			t.Errorf("after the rate limit the target holds %v", p.Holds())
		}
		noLeak(t, key, err, srv, p)
	})
	conflicts := tg.Conflicts
	if len(conflicts) == 0 {
		conflicts = []int{409, 412}
	}
	for _, code := range conflicts {
		t.Run("conflict "+strconv.Itoa(code), func(t *testing.T) {
			in, srv, p := tg.New(t, false, false)
			srv.FailNextWrite(code)
			res, err := in.Apply(context.Background(), integrations.ApplyRequest{Key: key, RotationID: "r1"})
			if err != nil {
				t.Fatalf("Apply that lost a race once (%d): %v; want it retried on a fresh read", code, err)
			}
			if !res.Changed || !p.Holds().Equal(key) || p.Writes() != 1 {
				t.Errorf("after a %d and a retry: Changed %v, holds %v, %d writes; want the key written once", code, res.Changed, p.Holds(), p.Writes())
			}
			if n := strings.Count(string(srv.Log()), " -> "+strconv.Itoa(code)+"\n"); n != 1 {
				t.Errorf("the server answered %d %d times", code, n)
			}
			noLeak(t, key, err, srv, p)
		})
	}
	if tg.Hostile != nil {
		t.Run("hostile peer", func(t *testing.T) { checkHostile(t, tg, key) })
	}
	t.Run("conflict that never ends", func(t *testing.T) {
		in, srv, p := tg.New(t, false, false)
		for range 10 {
			srv.FailNextWrite(conflicts[0])
		}
		_, err := in.Apply(context.Background(), integrations.ApplyRequest{Key: key, RotationID: "r1"})
		if !errors.Is(err, failure.ErrConflict) || failure.IsTransient(err) {
			t.Errorf("Apply that always loses the race: %v; want a conflict, not retried forever", err)
		}
		noLeak(t, key, err, srv, p)
	})
}

// checkHostile: a peer that answers with bytes quoting the request (its
// token, the key it carried) gets none of them into an error or a log.
func checkHostile(t *testing.T, tg Target, key secret.Key) {
	words := map[hostile.Mode]string{
		hostile.BadStatus:        "malformed response",
		hostile.BadHeader:        "malformed response",
		hostile.BadLocation:      "malformed redirect",
		hostile.RedirectToSecret: "redirect refused",
	}
	for _, mode := range hostile.Transport {
		t.Run(string(mode), func(t *testing.T) {
			var srv *hostile.Server
			at := func(upstream string) string {
				opts := hostile.Options{}
				if upstream != "" {
					opts.Upstream = upstream
					opts.Hostile = func(r *stdhttp.Request) bool { return r.Method != stdhttp.MethodGet }
				}
				srv = hostile.New(t, mode, opts)
				return srv.URL
			}
			in, token, logs := tg.Hostile(t, at)
			errs := map[string]error{}
			_, errs["apply"] = in.Apply(context.Background(), integrations.ApplyRequest{Key: key, RotationID: "r1"})
			if pf, ok := in.(integrations.Preflighter); ok {
				errs["preflight"] = pf.Preflight(context.Background())
			}
			st := integrations.Observe(context.Background(), in, integrations.Expect{Current: key.Fingerprint()})
			if srv.Hostile() == 0 {
				t.Fatalf("the hostile peer answered nothing")
			}
			for name, err := range errs {
				if err == nil {
					if name == "apply" {
						t.Errorf("apply through a hostile peer: no error")
					}
					continue
				}
				if name == "apply" && !strings.Contains(err.Error(), words[mode]) {
					t.Errorf("apply: %v, want an error saying %q", err, words[mode])
				}
				if failure.Class(err) == "unclassified" {
					t.Errorf("%s: %v is not classified", name, err)
				}
				leakcheck.Assert(t, name+" error", []byte(err.Error()), key.Reveal(), token, hostile.Canary)
			}
			leakcheck.Assert(t, "observed state", []byte(st.Reason), key.Reveal(), token, hostile.Canary)
			leakcheck.Assert(t, "log", logs(), key.Reveal(), token, hostile.Canary)
		})
	}
}

func wantClass(t *testing.T, what string, err, class error, names []string) {
	t.Helper()
	switch {
	case err == nil:
		t.Errorf("%s: no error", what)
		return
	case !errors.Is(err, class):
		t.Errorf("%s: %v, want %v", what, err, class)
	case failure.IsTransient(err):
		t.Errorf("%s: %v is transient; the engine would retry it", what, err)
	}
	for _, n := range names {
		if !strings.Contains(err.Error(), n) {
			t.Errorf("%s: %q does not name %q", what, err, n)
		}
	}
}

func noLeak(t *testing.T, key secret.Key, err error, srv Server, p Probe) {
	t.Helper()
	var b strings.Builder
	if err != nil {
		b.WriteString(err.Error())
	}
	b.Write(srv.Log())
	b.Write(p.Logs())
	leakcheck.Assert(t, "errors and logs", []byte(b.String()), key.Reveal())
}

func newKey() secret.Key {
	b := make([]byte, 16)
	rand.Read(b)
	return secret.New(hex.EncodeToString(b))
}
