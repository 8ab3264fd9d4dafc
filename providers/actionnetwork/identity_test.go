package actionnetwork_test

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rekey-dev/rekey/internal/ansim"
	"github.com/rekey-dev/rekey/internal/leakcheck"
	"github.com/rekey-dev/rekey/providers"
	"github.com/rekey-dev/rekey/providers/actionnetwork"
	"github.com/rekey-dev/rekey/secret"
)

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

func TestIdentityStates(t *testing.T) {
	t.Parallel()
	bad := "deadbeefdeadbeefdeadbeefdeadbeef"
	for _, tc := range []struct {
		name     string
		group    string        // the key's group: "greens" (three tags), "youth" (none)
		key      string        // "" means a new key of group
		setup    func(e *env)  // before the read
		path     string        // the API root's path; "" means /api/v2/
		timeout  time.Duration // default 10s
		want     actionnetwork.IdentityState
		reason   string // a substring of the reason
		requests int
		minGap   time.Duration
	}{
		{name: "a group's tags are known", group: "greens", want: actionnetwork.IdentityKnown, reason: "the key reads 3 tags", requests: 1},
		{name: "a group with no tags is empty", group: "youth", want: actionnetwork.IdentityEmpty, reason: "no tags", requests: 1},
		{name: "401 is invalid", key: bad, want: actionnetwork.IdentityInvalid, reason: "Action Network refused the key (401)", requests: 1},
		{name: "403 is invalid", group: "greens", setup: func(e *env) { e.sim.FailWith(403, 1) },
			want: actionnetwork.IdentityInvalid, reason: "refused the key (403)", requests: 1},
		{name: "500 is unknown", group: "greens", setup: func(e *env) { e.sim.FailWith(500, 1) },
			want: actionnetwork.IdentityUnknown, reason: "Action Network answered 500 (server error)", requests: 1},
		{name: "503 is unknown", group: "greens", setup: func(e *env) { e.sim.FailWith(503, 1) },
			want: actionnetwork.IdentityUnknown, reason: "answered 503", requests: 1},
		{name: "429 then the tags after Retry-After", group: "greens", setup: func(e *env) { e.sim.Throttle(1) },
			want: actionnetwork.IdentityKnown, reason: "reads 3 tags", requests: 2, minGap: time.Second},
		{name: "429 until the deadline is unknown", group: "greens", setup: func(e *env) { e.sim.Throttle(1000) },
			timeout: 1500 * time.Millisecond, want: actionnetwork.IdentityUnknown,
			reason: "Action Network answered 429 (rate limited); its Retry-After of 1s passes the deadline", requests: 2},
		{name: "404 is unknown, not invalid", group: "greens", path: "/api/v1", want: actionnetwork.IdentityUnknown,
			reason: "Action Network answered 404", requests: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			e.sim.AddGroup("greens", "Members", "Donors 2024", "Volunteers")
			e.sim.AddGroup("youth")
			e.sim.Generate() // a key of another group exists
			key := tc.key
			if key == "" {
				key = e.sim.GenerateFor(tc.group)
			}
			if tc.setup != nil {
				tc.setup(e)
			}
			opts := actionnetwork.Options{}
			if tc.path != "" {
				opts.BaseURL = e.srv.URL + tc.path
			}
			timeout := cmp.Or(tc.timeout, 10*time.Second)
			ctx, cancel := context.WithTimeout(t.Context(), timeout)
			defer cancel()

			id := e.checker(opts).Identity(ctx, secret.New(key))

			if id.State != tc.want || !strings.Contains(id.Reason, tc.reason) {
				t.Errorf("Identity = %s %q, want %s and a reason holding %q", id.State, id.Reason, tc.want, tc.reason)
			}
			if want := sorted(e.sim.Tags("greens")); tc.want == actionnetwork.IdentityKnown && !slices.Equal(id.Tags, want) {
				t.Errorf("tags %v, want %v", id.Tags, want)
			}
			if tc.want != actionnetwork.IdentityKnown && id.Tags != nil {
				t.Errorf("tags %v with state %s", id.Tags, id.State)
			}
			reqs := e.sim.Requests()
			if len(reqs) != tc.requests {
				t.Errorf("simulator saw %d requests, want %d", len(reqs), tc.requests)
			}
			for _, q := range reqs {
				if q.Method != "GET" || !strings.HasSuffix(q.Path, "/tags") || q.RawQuery != "" || q.Fingerprint != secret.Fingerprint([]byte(key)) {
					t.Errorf("unexpected request %+v", q)
				}
			}
			if tc.minGap > 0 && len(reqs) >= 2 {
				if gap := reqs[1].At.Sub(reqs[0].At); gap < tc.minGap {
					t.Errorf("retried after %s, before Retry-After's %s", gap, tc.minGap)
				}
			}
			noLeak(t, e, providers.Result{Reason: id.Reason}, key)
		})
	}
}

// The identity is the first page of tags, as Action Network pages them
// (25 a page).
func TestIdentityIsTheFirstPage(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var names []string
	for i := range 30 {
		names = append(names, fmt.Sprintf("Ward %d", i+1))
	}
	e.sim.AddGroup("city", names...)
	key := e.sim.GenerateFor("city")
	id := e.checker(actionnetwork.Options{}).Identity(t.Context(), secret.New(key))
	if want := sorted(e.sim.Tags("city")[:25]); id.State != actionnetwork.IdentityKnown || !slices.Equal(id.Tags, want) {
		t.Errorf("Identity = %s %d tags, want the first 25", id.State, len(id.Tags))
	}
	if n := len(e.sim.Requests()); n != 1 {
		t.Errorf("%d requests, want 1", n)
	}
}

// TestIdentityTellsGroupsApart is the guard the engine will run, on
// identities read from the simulator: the old and the new key of one group
// match, keys of two groups do not, and a group with no tags says nothing.
func TestIdentityTellsGroupsApart(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.sim.SetRateLimit(0, 0)
	e.sim.AddGroup("greens", "Members", "Donors 2024", "Volunteers")
	e.sim.AddGroup("youth greens", "Members", "Donors 2024") // the same names, other tags
	e.sim.AddGroup("empty")
	c := e.checker(actionnetwork.Options{Limiter: actionnetwork.NewLimiter(1000, 10)})
	salt := []byte("a salt of thirty-two bytes, here")
	read := func(key string) actionnetwork.HashedIdentity {
		t.Helper()
		id := c.Identity(t.Context(), secret.New(key))
		h, err := actionnetwork.HashIdentity(salt, id)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}

	old := e.sim.GenerateFor("greens")
	recorded := read(old)
	e.sim.Revoke(old) // REVOKE & GENERATE NEW KEY
	e.sim.AddTags("greens", "Petition 2025")
	same := read(e.sim.GenerateFor("greens"))
	other := read(e.sim.GenerateFor("youth greens"))
	empty := read(e.sim.GenerateFor("empty"))
	e.sim.FailWith(503, 1)
	failed := read(e.sim.GenerateFor("greens"))

	if len(recorded) != 3 || empty != nil || failed != nil {
		t.Fatalf("hashed: recorded %v, empty %v, failed %v", recorded, empty, failed)
	}
	for _, tc := range []struct {
		name              string
		recorded, current actionnetwork.HashedIdentity
		want              actionnetwork.GroupMatch
	}{
		{"new key of the same group, with a tag added since", recorded, same, actionnetwork.SameGroup},
		{"key of another group", recorded, other, actionnetwork.OtherGroup},
		{"key of a group with no tags", recorded, empty, actionnetwork.GroupUnknown},
		{"identity that could not be read", recorded, failed, actionnetwork.GroupUnknown},
		{"nothing recorded", nil, same, actionnetwork.GroupUnknown},
		{"recorded out of order", []string{recorded[2], recorded[0], recorded[1]}, same, actionnetwork.SameGroup},
	} {
		if got := actionnetwork.CompareIdentities(tc.recorded, tc.current); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}

	// The records hold no identifier, and another salt matches nothing.
	for _, id := range append(e.sim.Tags("greens"), e.sim.Tags("youth greens")...) {
		uuid := strings.TrimPrefix(id, actionnetwork.TagPrefix)
		if s := strings.Join(append(append([]string{}, recorded...), other...), ","); strings.Contains(s, uuid) {
			t.Errorf("a hashed identity holds %s", id)
		}
	}
	salted, _ := actionnetwork.HashIdentity([]byte("another salt of thirty-two bytes"),
		actionnetwork.Identity{State: actionnetwork.IdentityKnown, Tags: sorted(e.sim.Tags("greens"))})
	if got := actionnetwork.CompareIdentities(recorded, salted); got != actionnetwork.OtherGroup {
		t.Errorf("the same tags under another salt: %s", got)
	}
	if _, err := actionnetwork.HashIdentity(salt[:actionnetwork.MinIdentitySalt-1], actionnetwork.Identity{}); err == nil {
		t.Error("a short salt was taken")
	}
}

// Servers that answer 200 with something else than a page of tags.
func TestIdentityOfOddAnswers(t *testing.T) {
	t.Parallel()
	key := "c0ffeec0ffeec0ffeec0ffeec0ffee00"
	for _, tc := range []struct {
		name string
		body string
		want actionnetwork.IdentityState
		tags []string
	}{
		{"entry point", `{"motd":"Welcome","_links":{"self":{"href":"x"}}}`, actionnetwork.IdentityUnknown, nil},
		{"html echoing the key", `<html><body>Sign in, ` + key + `</body></html>`, actionnetwork.IdentityUnknown, nil},
		{"json array", `["` + key + `"]`, actionnetwork.IdentityUnknown, nil},
		{"empty body", ``, actionnetwork.IdentityUnknown, nil},
		{"tags with only other systems' identifiers", `{"total_records":1,"_embedded":{"osdi:tags":[{"identifiers":["foreign_system:1"]}]}}`,
			actionnetwork.IdentityUnknown, nil},
		{"an empty collection without its list", `{"total_records":0,"_embedded":{}}`, actionnetwork.IdentityEmpty, nil},
		{"an empty list", `{"total_records":0,"_embedded":{"osdi:tags":[]}}`, actionnetwork.IdentityEmpty, nil},
		{"identifiers of several systems, one twice",
			`{"total_records":2,"_embedded":{"osdi:tags":[{"identifiers":["foreign_system:1","action_network:bbb"]},{"identifiers":["action_network:aaa","action_network:bbb"]}]}}`,
			actionnetwork.IdentityKnown, []string{"action_network:aaa", "action_network:bbb"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Header.Get(actionnetwork.Header) != key || r.URL.Path != "/api/v2/tags" {
					t.Errorf("request %s without the key in %s", r.URL, actionnetwork.Header)
				}
				io.WriteString(w, tc.body)
			}))
			defer srv.Close()
			var logs bytes.Buffer
			c := actionnetwork.New(actionnetwork.Options{
				BaseURL: srv.URL + "/api/v2", HTTPClient: srv.Client(),
				Logger:  slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
				Limiter: actionnetwork.NewLimiter(actionnetwork.DefaultRate, 1),
			})
			id := c.Identity(t.Context(), secret.New(key))
			if id.State != tc.want || !slices.Equal(id.Tags, tc.tags) {
				t.Errorf("Identity = %s %v %q, want %s %v", id.State, id.Tags, id.Reason, tc.want, tc.tags)
			}
			leakcheck.Assert(t, "reason", []byte(id.Reason), key)
			leakcheck.Assert(t, "log", logs.Bytes(), key)
		})
	}
}

func TestIdentityNetworkFailuresAndBadInput(t *testing.T) {
	t.Parallel()
	key := "feedfacefeedfacefeedfacefeedface"
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	redirect := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, closed.URL+r.URL.Path, http.StatusFound)
	}))
	t.Cleanup(redirect.Close) // the subtests run after this function returns
	hang := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(hang); slow.Close() })

	for _, tc := range []struct {
		name    string
		base    string
		key     string
		timeout time.Duration
		want    actionnetwork.IdentityState
		reason  string
	}{
		{"connection refused", closed.URL + "/api/v2/", key, 0, actionnetwork.IdentityUnknown, "network error"},
		{"no answer before the deadline", slow.URL + "/api/v2/", key, 200 * time.Millisecond, actionnetwork.IdentityUnknown, "no answer before the deadline"},
		{"a redirect is not followed", redirect.URL + "/api/v2/", key, 0, actionnetwork.IdentityUnknown, "302 (a redirect, not followed)"},
		{"a bad provider_url", "ftp://actionnetwork.org/api/v2/", key, 0, actionnetwork.IdentityUnknown, "provider_url"},
		{"an empty key", slow.URL + "/api/v2/", "", 0, actionnetwork.IdentityInvalid, "the key is empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), cmp.Or(tc.timeout, 10*time.Second))
			defer cancel()
			c := actionnetwork.New(actionnetwork.Options{BaseURL: tc.base, Limiter: actionnetwork.NewLimiter(100, 1)})
			id := c.Identity(ctx, secret.New(tc.key))
			if id.State != tc.want || !strings.Contains(id.Reason, tc.reason) || id.Tags != nil {
				t.Errorf("Identity = %s %q, want %s and %q", id.State, id.Reason, tc.want, tc.reason)
			}
			leakcheck.Assert(t, "reason", []byte(id.Reason), key)
		})
	}
}

// Identity and Check of one key share its budget of 4 requests a second:
// the simulator, which enforces the limit, never has to refuse one.
func TestIdentityAndCheckShareTheRateLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.sim.SetRateLimit(ansim.DefaultRateLimit+1, time.Second) // room for arrival jitter, as in the Check test
	e.sim.AddGroup("greens", "Members")
	key := e.sim.GenerateFor("greens")
	a, b := e.checker(actionnetwork.Options{}), e.checker(actionnetwork.Options{})
	const each = 4
	var wg sync.WaitGroup
	ids := make([]actionnetwork.Identity, each)
	checks := make([]providers.Result, each)
	for i := range each {
		wg.Go(func() { ids[i] = a.Identity(t.Context(), secret.New(key)) })
		wg.Go(func() { checks[i] = b.Check(t.Context(), secret.New(key)) })
	}
	wg.Wait()
	for i := range each {
		if ids[i].State != actionnetwork.IdentityKnown || checks[i].Validity != providers.Valid {
			t.Errorf("%d: identity %s %q, check %s %q", i, ids[i].State, ids[i].Reason, checks[i].Validity, checks[i].Reason)
		}
	}
	reqs := e.sim.Requests()
	if len(reqs) != 2*each {
		t.Errorf("simulator saw %d requests, want %d (a 429 makes a retry)", len(reqs), 2*each)
	}
	for i, q := range reqs {
		if q.Limited {
			t.Errorf("request %d was rate-limited", i)
		}
		if i+ansim.DefaultRateLimit < len(reqs) {
			if d := reqs[i+ansim.DefaultRateLimit].At.Sub(q.At); d < 850*time.Millisecond {
				t.Errorf("requests %d to %d came within %s", i, i+ansim.DefaultRateLimit, d)
			}
		}
	}
	noLeak(t, e, providers.Result{}, key)
}
