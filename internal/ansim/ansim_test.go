package ansim

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rekey-dev/rekey/internal/leakcheck"
	"github.com/rekey-dev/rekey/secret"
)

type reply struct {
	status     int
	retryAfter string
	body       []byte
	json       map[string]any
}

// get sends one request to the simulator's handler in process.
func get(t *testing.T, s *Sim, method, target, key string) reply {
	t.Helper()
	req := httptest.NewRequest(method, "http://an.test"+target, nil)
	if key != "" {
		req.Header.Set(Header, key)
	}
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, req)
	res := rec.Result()
	body, _ := io.ReadAll(res.Body)
	r := reply{status: res.StatusCode, retryAfter: res.Header.Get("Retry-After"), body: body}
	if ct := res.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s %s: Content-Type %q", method, target, ct)
	}
	if err := json.Unmarshal(body, &r.json); err != nil {
		t.Fatalf("%s %s: body is not a JSON object: %v", method, target, err)
	}
	return r
}

func links(t *testing.T, r reply) map[string]any {
	t.Helper()
	l, ok := r.json["_links"].(map[string]any)
	if !ok {
		t.Fatalf("no _links in %s", r.body)
	}
	return l
}

func TestEntryPointAnswers200ToAnyKey(t *testing.T) {
	s := New()
	good := s.Generate()
	for _, tc := range []struct {
		name     string
		key      string
		wantTags bool
	}{
		{"valid key", good, true},
		{"invalid key", "0123456789abcdef0123456789abcdef", false},
		{"no key", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, path := range []string{"/api/v2/", "/api/v2"} {
				r := get(t, s, "GET", path, tc.key)
				if r.status != 200 {
					t.Fatalf("GET %s: status %d, want 200", path, r.status)
				}
				l := links(t, r)
				for _, rel := range []string{"self", "osdi:people"} {
					if _, ok := l[rel]; !ok {
						t.Errorf("GET %s: _links lacks %s", path, rel)
					}
				}
				if _, ok := l["osdi:tags"]; ok != tc.wantTags {
					t.Errorf("GET %s: osdi:tags present %v, want %v", path, ok, tc.wantTags)
				}
				if self := l["self"].(map[string]any)["href"]; self != "http://an.test/api/v2" {
					t.Errorf("self href %v", self)
				}
				leakcheck.Assert(t, "entry point body", r.body, tc.key)
			}
		})
	}
}

func TestCollections(t *testing.T) {
	s := New()
	s.SetRateLimit(0, 0)
	good := s.Generate()
	for _, tc := range []struct {
		path      string
		rel       string
		total     int
		perPage   string
		wantShown int
		wantNext  bool
	}{
		{"/api/v2/tags", "osdi:tags", 5, "", 5, false},
		{"/api/v2/tags", "osdi:tags", 5, "1", 1, true},
		{"/api/v2/tags/", "osdi:tags", 5, "2", 2, true},
		{"/api/v2/tags", "osdi:tags", 5, "100", 5, false},
		{"/api/v2/people", "osdi:people", 3, "1", 1, true},
		{"/api/v2/people", "osdi:people", 3, "", 3, false},
	} {
		t.Run(tc.path+"?per_page="+tc.perPage, func(t *testing.T) {
			target := tc.path
			if tc.perPage != "" {
				target += "?per_page=" + tc.perPage
			}
			r := get(t, s, "GET", target, good)
			if r.status != 200 {
				t.Fatalf("status %d, want 200; body %s", r.status, r.body)
			}
			if got := r.json["total_records"]; got != float64(tc.total) {
				t.Errorf("total_records %v, want %d", got, tc.total)
			}
			emb, ok := r.json["_embedded"].(map[string]any)
			if !ok {
				t.Fatalf("no _embedded in %s", r.body)
			}
			items, _ := emb[tc.rel].([]any)
			if len(items) != tc.wantShown {
				t.Errorf("%d items under %s, want %d", len(items), tc.rel, tc.wantShown)
			}
			if _, ok := links(t, r)["next"]; ok != tc.wantNext {
				t.Errorf("next link present %v, want %v", ok, tc.wantNext)
			}
		})
	}
}

func TestRefusalEchoesTheKey(t *testing.T) {
	// The echo is what makes rekey's leak tests meaningful: if this test
	// fails, those tests prove nothing.
	s := New()
	s.SetRateLimit(0, 0)
	good := s.Generate()
	bad := "fedcba9876543210fedcba9876543210"
	for _, path := range []string{"/api/v2/tags?per_page=1", "/api/v2/people", "/api/v2/events"} {
		r := get(t, s, "GET", path, bad)
		if r.status != 401 {
			t.Errorf("GET %s with a bad key: status %d, want 401", path, r.status)
		}
		if want := `{"error":"API Key ` + bad + ` invalid"}`; strings.TrimSpace(string(r.body)) != want {
			t.Errorf("GET %s: body %s, want %s", path, r.body, want)
		}
		r = get(t, s, "GET", path, "")
		if r.status != 401 || r.json["error"] != "API Key invalid or not present" {
			t.Errorf("GET %s with no key: %d %s", path, r.status, r.body)
		}
	}
	if r := get(t, s, "GET", "/api/v2/events", good); r.status != 404 {
		t.Errorf("unknown collection with a valid key: status %d, want 404", r.status)
	}
	if r := get(t, s, "POST", "/api/v2/tags", good); r.status != 405 {
		t.Errorf("POST: status %d, want 405", r.status)
	}
}

func TestRevokeAndGenerate(t *testing.T) {
	s := New()
	s.SetRateLimit(0, 0)
	old := s.Generate()
	if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(old) {
		t.Fatalf("Generate gave %d characters, not 32 hex digits", len(old))
	}
	if r := get(t, s, "GET", "/api/v2/tags", old); r.status != 200 {
		t.Fatalf("generated key: status %d", r.status)
	}
	s.Revoke(old)
	fresh := s.Generate()
	if fresh == old {
		t.Fatal("Generate repeated a key")
	}
	if r := get(t, s, "GET", "/api/v2/tags", old); r.status != 401 {
		t.Errorf("revoked key: status %d, want 401", r.status)
	}
	if r := get(t, s, "GET", "/api/v2/tags", fresh); r.status != 200 {
		t.Errorf("new key: status %d, want 200", r.status)
	}
	if s.Valid(old) || !s.Valid(fresh) {
		t.Errorf("Valid: old %v new %v", s.Valid(old), s.Valid(fresh))
	}
	s.SetValidKeys("k1", "k2")
	if s.Valid(fresh) || !s.Valid("k1") || !s.Valid("k2") {
		t.Error("SetValidKeys did not replace the set")
	}
}

func TestThrottleAndFailWith(t *testing.T) {
	s := New()
	s.SetRateLimit(0, 0)
	key := s.Generate()

	s.Throttle(2)
	for i := range 2 {
		r := get(t, s, "GET", "/api/v2/tags", key)
		if r.status != 429 || r.retryAfter != "1" {
			t.Errorf("throttled request %d: %d Retry-After %q", i, r.status, r.retryAfter)
		}
		if !strings.Contains(string(r.body), key) {
			t.Errorf("429 body does not echo the key")
		}
	}
	if r := get(t, s, "GET", "/api/v2/tags", key); r.status != 200 {
		t.Errorf("after the throttle: %d", r.status)
	}

	s.FailWith(503, 1)
	if r := get(t, s, "GET", "/api/v2/", key); r.status != 503 || !strings.Contains(string(r.body), key) {
		t.Errorf("FailWith: %d %s", r.status, r.body)
	}
	if r := get(t, s, "GET", "/api/v2/tags", key); r.status != 200 {
		t.Errorf("after FailWith: %d", r.status)
	}

	clock := time.Unix(1700000000, 0)
	s.now = func() time.Time { return clock }
	s.ThrottleFor(2500 * time.Millisecond)
	if r := get(t, s, "GET", "/api/v2/tags", key); r.status != 429 || r.retryAfter != "3" {
		t.Errorf("ThrottleFor: %d Retry-After %q, want 429 and 3", r.status, r.retryAfter)
	}
	clock = clock.Add(2500 * time.Millisecond)
	if r := get(t, s, "GET", "/api/v2/tags", key); r.status != 200 {
		t.Errorf("after ThrottleFor: %d", r.status)
	}
}

func TestRateLimitPerKey(t *testing.T) {
	s := New()
	clock := time.Unix(1700000000, 0)
	s.now = func() time.Time { return clock }
	a, b := s.Generate(), s.Generate()

	for i := range DefaultRateLimit {
		if r := get(t, s, "GET", "/api/v2/tags", a); r.status != 200 {
			t.Fatalf("request %d of key a: %d", i, r.status)
		}
		clock = clock.Add(100 * time.Millisecond)
	}
	// 400ms after the first: the fifth in one second is refused.
	r := get(t, s, "GET", "/api/v2/tags", a)
	if r.status != 429 || r.retryAfter != "1" {
		t.Fatalf("fifth request in a second: %d Retry-After %q", r.status, r.retryAfter)
	}
	if !strings.Contains(string(r.body), a) {
		t.Error("rate-limit body does not echo the key")
	}
	// Another key has its own budget.
	if r := get(t, s, "GET", "/api/v2/tags", b); r.status != 200 {
		t.Errorf("key b: %d", r.status)
	}
	// A second after the first request, one slot is free again.
	clock = clock.Add(600 * time.Millisecond)
	if r := get(t, s, "GET", "/api/v2/tags", a); r.status != 200 {
		t.Errorf("after the window moved: %d", r.status)
	}

	log := s.Requests()
	limited := 0
	for _, q := range log {
		if q.Limited {
			limited++
			if q.Status != 429 || q.Fingerprint != secret.Fingerprint([]byte(a)) {
				t.Errorf("limited entry %+v", q)
			}
		}
	}
	if limited != 1 {
		t.Errorf("%d requests marked Limited, want 1", limited)
	}
	if s.Count(a) != 6 || s.Count(b) != 1 || s.Count("nobody") != 0 {
		t.Errorf("counts a=%d b=%d", s.Count(a), s.Count(b))
	}

	s.SetRateLimit(0, 0)
	for range 10 {
		if r := get(t, s, "GET", "/api/v2/tags", a); r.status != 200 {
			t.Fatalf("with the limit off: %d", r.status)
		}
	}
}

func TestLogHoldsFingerprintsNotKeys(t *testing.T) {
	s := New()
	s.SetRateLimit(0, 0)
	good := s.Generate()
	bad := "00112233445566778899aabbccddeeff"
	get(t, s, "GET", "/api/v2/tags?per_page=1", good)
	get(t, s, "GET", "/api/v2/tags?per_page=1", bad)
	get(t, s, "GET", "/api/v2/", "")

	log := s.Requests()
	if len(log) != 3 {
		t.Fatalf("%d log entries, want 3", len(log))
	}
	want := []Request{
		{Method: "GET", Path: "/api/v2/tags", RawQuery: "per_page=1", Fingerprint: secret.Fingerprint([]byte(good)), Status: 200},
		{Method: "GET", Path: "/api/v2/tags", RawQuery: "per_page=1", Fingerprint: secret.Fingerprint([]byte(bad)), Status: 401},
		{Method: "GET", Path: "/api/v2/", Fingerprint: "", Status: 200},
	}
	for i, w := range want {
		got := log[i]
		if got.At.IsZero() {
			t.Errorf("entry %d has no time", i)
		}
		got.At = time.Time{}
		if got != w {
			t.Errorf("entry %d = %+v, want %+v", i, got, w)
		}
	}
	leakcheck.Assert(t, "request log", []byte(fmt.Sprintf("%+v %#v", log, log)), good, bad)

	s.Reset()
	if len(s.Requests()) != 0 || s.Count(good) != 0 || !s.Valid(good) {
		t.Error("Reset: log or counts kept, or valid keys lost")
	}
}

func TestConcurrentUseOverHTTP(t *testing.T) {
	s := New()
	s.SetRateLimit(0, 0)
	srv := httptest.NewServer(s)
	defer srv.Close()
	keys := []string{s.Generate(), s.Generate()}

	var wg sync.WaitGroup
	for i := range 40 {
		wg.Go(func() {
			req, _ := http.NewRequest("GET", srv.URL+"/api/v2/tags?per_page=1", nil)
			req.Header.Set(Header, keys[i%2])
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		})
		wg.Go(func() {
			switch i % 4 {
			case 0:
				s.Throttle(0)
			case 1:
				s.FailWith(500, 0)
			case 2:
				_ = s.Requests()
			case 3:
				_ = s.Valid(keys[0])
			}
		})
	}
	wg.Wait()
	if n := s.Count(keys[0]) + s.Count(keys[1]); n != 40 {
		t.Errorf("counted %d requests, want 40", n)
	}
}

// tagPage is what a tags page says, parsed the way a client reads it.
type tagPage struct {
	TotalPages   int `json:"total_pages"`
	PerPage      int `json:"per_page"`
	Page         int `json:"page"`
	TotalRecords int `json:"total_records"`
	Links        struct {
		Self  struct{ Href string }   `json:"self"`
		Next  *struct{ Href string }  `json:"next"`
		Items []struct{ Href string } `json:"osdi:tags"`
	} `json:"_links"`
	Embedded struct {
		Tags *[]struct {
			Name        string   `json:"name"`
			Identifiers []string `json:"identifiers"`
			Created     string   `json:"created_date"`
			Modified    string   `json:"modified_date"`
			Links       struct {
				Self     struct{ Href string } `json:"self"`
				Taggings struct{ Href string } `json:"osdi:taggings"`
			} `json:"_links"`
		} `json:"osdi:tags"`
	} `json:"_embedded"`
}

func tagsOf(t *testing.T, s *Sim, target, key string) tagPage {
	t.Helper()
	r := get(t, s, "GET", target, key)
	if r.status != 200 {
		t.Fatalf("GET %s: status %d", target, r.status)
	}
	var p tagPage
	if err := json.Unmarshal(r.body, &p); err != nil {
		t.Fatal(err)
	}
	if p.Embedded.Tags == nil {
		t.Fatalf("GET %s: no _embedded[\"osdi:tags\"] in %s", target, r.body)
	}
	return p
}

func (p tagPage) ids() []string {
	var out []string
	for _, t := range *p.Embedded.Tags {
		out = append(out, t.Identifiers...)
	}
	return out
}

var tagID = regexp.MustCompile(`^action_network:([0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12})$`)

func TestGroupsHaveTheirOwnKeysAndTags(t *testing.T) {
	s := New()
	s.SetRateLimit(0, 0)
	s.AddGroup("greens", "Members", "Donors 2024", "Volunteers")
	s.AddGroup("youth") // no tags
	var many []string
	for i := range 30 {
		many = append(many, fmt.Sprintf("Ward %d", i+1))
	}
	s.AddGroup("city", many...)
	greens, other, youth, city := s.GenerateFor("greens"), s.Generate(), s.GenerateFor("youth"), s.GenerateFor("city")

	p := tagsOf(t, s, "/api/v2/tags", greens)
	if got, want := p.ids(), s.Tags("greens"); !slices.Equal(got, want) || len(got) != 3 {
		t.Fatalf("greens' key reads %v, want %v", got, want)
	}
	if p.TotalRecords != 3 || p.TotalPages != 1 || p.Page != 1 || p.PerPage != 25 || p.Links.Next != nil || len(p.Links.Items) != 3 {
		t.Errorf("paging: %+v", p)
	}
	for i, tg := range *p.Embedded.Tags {
		m := tagID.FindStringSubmatch(tg.Identifiers[0])
		if len(tg.Identifiers) != 1 || m == nil {
			t.Fatalf("identifiers %v are not one action_network:<uuid>", tg.Identifiers)
		}
		self := "http://an.test/api/v2/tags/" + m[1]
		if tg.Links.Self.Href != self || tg.Links.Taggings.Href != self+"/taggings" || p.Links.Items[i].Href != self {
			t.Errorf("links of %s: %+v, collection link %s", tg.Name, tg.Links, p.Links.Items[i].Href)
		}
		if tg.Name != []string{"Members", "Donors 2024", "Volunteers"}[i] || tg.Created == "" || tg.Modified == "" {
			t.Errorf("tag %d: %+v", i, tg)
		}
	}

	// The default group keeps the tags it always had, none of greens'.
	def := tagsOf(t, s, "/api/v2/tags", other).ids()
	if len(def) != 5 || def[0] != "action_network:a1b2c3d4-0000-4000-8000-000000000001" {
		t.Errorf("default group reads %v", def)
	}
	for _, id := range def {
		if slices.Contains(s.Tags("greens"), id) {
			t.Errorf("%s is in two groups", id)
		}
	}

	// A group with no tags: a collection all the same, with an empty list.
	if p := tagsOf(t, s, "/api/v2/tags", youth); p.TotalRecords != 0 || len(*p.Embedded.Tags) != 0 || p.Links.Next != nil {
		t.Errorf("youth: %+v", p)
	}

	// Thirty tags: the first page holds 25, the second 5.
	p = tagsOf(t, s, "/api/v2/tags", city)
	if got := p.ids(); !slices.Equal(got, s.Tags("city")[:25]) || p.TotalPages != 2 || p.Links.Next == nil ||
		p.Links.Next.Href != "http://an.test/api/v2/tags?page=2&per_page=25" {
		t.Errorf("city, page 1: %d tags, %+v", len(got), p.Links)
	}
	if got := tagsOf(t, s, "/api/v2/tags?page=2", city).ids(); !slices.Equal(got, s.Tags("city")[25:]) {
		t.Errorf("city, page 2: %v", got)
	}

	// REVOKE & GENERATE NEW KEY in greens: the new key reads greens' tags.
	s.Revoke(greens)
	fresh := s.GenerateFor("greens")
	if r := get(t, s, "GET", "/api/v2/tags", greens); r.status != 401 {
		t.Errorf("revoked key: status %d", r.status)
	}
	if got := tagsOf(t, s, "/api/v2/tags", fresh).ids(); !slices.Equal(got, s.Tags("greens")) {
		t.Errorf("greens' new key reads %v", got)
	}
	if g, ok := s.GroupOf(greens); !ok || g != "greens" {
		t.Errorf("GroupOf(revoked greens key) = %q, %v", g, ok)
	}
	if g, _ := s.GroupOf(other); g != DefaultGroup {
		t.Errorf("GroupOf(Generate's key) = %q", g)
	}

	// AddKey puts a chosen key in a group; AddTags lists new tags last.
	s.AddKey("youth", "0123456789abcdef0123456789abcdef")
	s.AddTags("youth", "First")
	if got := tagsOf(t, s, "/api/v2/tags", "0123456789abcdef0123456789abcdef").ids(); !slices.Equal(got, s.Tags("youth")) || len(got) != 1 {
		t.Errorf("youth after AddTags: %v", got)
	}
	s.AddKey("greens", "0123456789abcdef0123456789abcdef")
	if g, _ := s.GroupOf("0123456789abcdef0123456789abcdef"); g != "greens" {
		t.Errorf("AddKey did not move the key: %q", g)
	}
	s.SetValidKeys("k1")
	if g, _ := s.GroupOf("k1"); g != DefaultGroup {
		t.Errorf("SetValidKeys put k1 in %q", g)
	}

	defer func() {
		if recover() == nil {
			t.Error("GenerateFor an unknown group did not panic")
		}
	}()
	s.GenerateFor("nowhere")
}
