// Package ansim simulates Action Network's OSDI API v2 for tests and the
// local demo: serve a *Sim with httptest.NewServer and point a checker at
// server.URL + "/api/v2/".
//
// It behaves like the real API where rekey can tell:
//
//   - GET /api/v2/ answers 200 with an OSDI entry point for any key, even
//     a bad one or none; its _links hold osdi:tags (and the other
//     collections) only when the key is valid.
//   - GET /api/v2/tags and /api/v2/people answer a valid key (header
//     OSDI-API-Token) with 200 and an OSDI collection (total_records,
//     _embedded, paged by per_page and page), and an invalid or missing key
//     with 401 and a body that ECHOES the key: {"error":"API Key <key>
//     invalid"}. 429 and forced failures echo it too, so a test that finds no
//     key in rekey's output proves something.
//   - Each key may make 4 requests a second (SetRateLimit); more are answered
//     429 with Retry-After.
//   - Each key belongs to one group (an Action Network group, or a person's
//     list), and each group has its own keys and its own tags: GET
//     /api/v2/tags answers a key with its group's tags, each with an
//     identifier "action_network:<uuid>" of its own. Keys made by Generate
//     and SetValidKeys are in DefaultGroup, which has five tags; AddGroup,
//     GenerateFor and AddKey make others. A group may have no tags.
//
// Controls and the request log are safe for concurrent use. The log holds
// fingerprints, never keys.
package ansim

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rekey-dev/rekey/secret"
)

const (
	// Header carries the key.
	Header = "OSDI-API-Token"
	// DefaultRateLimit is Action Network's limit: requests per key per second.
	DefaultRateLimit = 4

	maxPerPage = 25
	maxLog     = 10000
)

// Request is one request the simulator answered.
type Request struct {
	At          time.Time // when it arrived
	Method      string
	Path        string
	RawQuery    string
	Fingerprint string // of the OSDI-API-Token header; "" when absent
	Status      int
	Limited     bool // answered 429 by the per-key rate limit
}

// Sim is a simulated Action Network. The zero Sim is not usable; call New.
type Sim struct {
	mu  sync.Mutex
	now func() time.Time

	valid  map[string]bool
	groups map[string]*group // by name
	member map[string]string // key → its group's name

	throttleN     int
	throttleUntil time.Time
	failStatus    int
	failN         int

	rateN   int
	ratePer time.Duration
	recent  map[string][]time.Time // by fingerprint

	log    []Request
	counts map[string]int // by fingerprint
}

var _ http.Handler = (*Sim)(nil)

// DefaultGroup is the group of the keys that Generate and SetValidKeys
// make. Its tags are Volunteer, Donor, Newsletter, Canvasser and Phone bank.
const DefaultGroup = "default"

// group is one Action Network group or person's list.
type group struct {
	tags []tag // in the order the tags page lists them
}

type tag struct {
	name string
	id   string // a UUID
}

// New returns a simulator with no valid key, DefaultGroup, and the real
// rate limit.
func New() *Sim {
	s := &Sim{
		now:     time.Now,
		valid:   map[string]bool{},
		groups:  map[string]*group{},
		member:  map[string]string{},
		rateN:   DefaultRateLimit,
		ratePer: time.Second,
		recent:  map[string][]time.Time{},
		counts:  map[string]int{},
	}
	def := &group{}
	for i, n := range []string{"Volunteer", "Donor", "Newsletter", "Canvasser", "Phone bank"} {
		def.tags = append(def.tags, tag{name: n, id: fmt.Sprintf("a1b2c3d4-0000-4000-8000-%012d", i+1)})
	}
	s.groups[DefaultGroup] = def
	return s
}

// SetValidKeys makes exactly these keys valid. A key not yet in a group
// joins DefaultGroup.
func (s *Sim) SetValidKeys(keys ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.valid = map[string]bool{}
	for _, k := range keys {
		if k != "" {
			s.valid[k] = true
			if _, ok := s.member[k]; !ok {
				s.member[k] = DefaultGroup
			}
		}
	}
}

// AddGroup makes a group with tags of these names (none is allowed), each
// with a new identifier. An existing group's tags are replaced by new ones;
// its keys stay.
func (s *Sim) AddGroup(name string, tags ...string) {
	g := &group{}
	for _, t := range tags {
		g.tags = append(g.tags, tag{name: t, id: newUUID()})
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.groups[name] = g
}

// AddTags gives group more tags, listed after those it has.
func (s *Sim) AddTags(group string, tags ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.mustGroup(group)
	for _, t := range tags {
		g.tags = append(g.tags, tag{name: t, id: newUUID()})
	}
}

// Tags returns group's tag identifiers ("action_network:<uuid>") in the
// order its tags pages list them.
func (s *Sim) Tags(group string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, t := range s.mustGroup(group).tags {
		out = append(out, "action_network:"+t.id)
	}
	return out
}

// GenerateFor mints a new valid key of group, which must exist.
func (s *Sim) GenerateFor(group string) string {
	k := newKey()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mustGroup(group)
	s.valid[k] = true
	s.member[k] = group
	return k
}

// AddKey makes key a valid key of group, which must exist; a key belongs
// to one group, so it leaves any other.
func (s *Sim) AddKey(group, key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mustGroup(group)
	s.valid[key] = true
	s.member[key] = group
}

// GroupOf returns the group key belongs to (valid or revoked), and
// whether it has one.
func (s *Sim) GroupOf(key string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g, ok := s.member[key]
	return g, ok
}

// mustGroup returns the group named name; s.mu is held.
func (s *Sim) mustGroup(name string) *group {
	g, ok := s.groups[name]
	if !ok {
		panic(fmt.Sprintf("ansim: no group %q", name))
	}
	return g
}

func newUUID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("ansim: no randomness: " + err.Error())
	}
	b[6] = b[6]&0x0f | 0x40 // version 4
	b[8] = b[8]&0x3f | 0x80 // RFC 4122 variant
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func newKey() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("ansim: no randomness: " + err.Error())
	}
	return hex.EncodeToString(b[:])
}

// Revoke makes key invalid, as REVOKE does.
func (s *Sim) Revoke(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.valid, key)
}

// Generate mints a new key of DefaultGroup (32 hex digits, like Action
// Network's), makes it valid and returns it. With Revoke it acts out REVOKE
// & GENERATE NEW KEY.
func (s *Sim) Generate() string { return s.GenerateFor(DefaultGroup) }

// Valid reports whether key is valid now.
func (s *Sim) Valid(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.valid[key]
}

// Throttle answers the next n requests 429 with Retry-After: 1.
func (s *Sim) Throttle(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.throttleN = max(n, 0)
}

// ThrottleFor answers every request 429 for d from now, with Retry-After
// counting down to its end.
func (s *Sim) ThrottleFor(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.throttleUntil = s.now().Add(d)
}

// FailWith answers the next n requests with status (500, 503, 403, …) and
// a JSON error body that echoes the key.
func (s *Sim) FailWith(status, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failStatus, s.failN = status, max(n, 0)
}

// SetRateLimit allows n requests per key in any window of length per;
// n <= 0 turns the limit off.
func (s *Sim) SetRateLimit(n int, per time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rateN, s.ratePer = n, per
	s.recent = map[string][]time.Time{}
}

// Requests returns a copy of the request log, oldest first (the last
// 10000 at most).
func (s *Sim) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.log...)
}

// Count returns how many requests presented key (every request, even
// ones the log has dropped). Count("") counts requests with no key.
func (s *Sim) Count(key string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[fingerprint(key)]
}

// Reset empties the request log and the counts, and lifts throttles and
// forced failures. Valid keys and the rate limit stay.
func (s *Sim) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.log, s.counts, s.recent = nil, map[string]int{}, map[string][]time.Time{}
	s.throttleN, s.throttleUntil, s.failN = 0, time.Time{}, 0
}

func fingerprint(key string) string {
	if key == "" {
		return ""
	}
	return secret.Fingerprint([]byte(key))
}

// answer is what the simulator decided under its lock.
type answer struct {
	status     int
	retryAfter int // seconds; 0 means no header
	body       any
}

// ServeHTTP answers one request.
func (s *Sim) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	key := r.Header.Get(Header)
	fp := fingerprint(key)

	s.mu.Lock()
	now := s.now()
	a, limited := s.decide(now, key, fp, r)
	s.counts[fp]++
	if len(s.log) >= maxLog {
		s.log = append(s.log[:0], s.log[len(s.log)-maxLog/2:]...)
	}
	s.log = append(s.log, Request{
		At: now, Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery,
		Fingerprint: fp, Status: a.status, Limited: limited,
	})
	s.mu.Unlock()

	w.Header().Set("Content-Type", "application/json")
	if a.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(a.retryAfter))
	}
	if a.status == http.StatusMethodNotAllowed {
		w.Header().Set("Allow", "GET")
	}
	w.WriteHeader(a.status)
	_ = json.NewEncoder(w).Encode(a.body)
}

// decide works out the answer; s.mu is held.
func (s *Sim) decide(now time.Time, key, fp string, r *http.Request) (answer, bool) {
	if s.rateN > 0 {
		win := s.recent[fp]
		cut := 0
		for cut < len(win) && !win[cut].After(now.Add(-s.ratePer)) {
			cut++
		}
		win = win[cut:]
		if len(win) >= s.rateN {
			s.recent[fp] = win
			wait := win[0].Add(s.ratePer).Sub(now)
			return answer{http.StatusTooManyRequests, ceilSeconds(wait), rateBody(key, s.rateN, s.ratePer)}, true
		}
		s.recent[fp] = append(win, now)
	}
	if s.throttleN > 0 {
		s.throttleN--
		return answer{http.StatusTooManyRequests, 1, rateBody(key, s.rateN, s.ratePer)}, false
	}
	if now.Before(s.throttleUntil) {
		return answer{http.StatusTooManyRequests, ceilSeconds(s.throttleUntil.Sub(now)), rateBody(key, s.rateN, s.ratePer)}, false
	}
	if s.failN > 0 {
		s.failN--
		msg := fmt.Sprintf("Request with API Key %s failed (%s)", key, http.StatusText(s.failStatus))
		if key == "" {
			msg = "Request failed (" + http.StatusText(s.failStatus) + ")"
		}
		return answer{s.failStatus, 0, errBody(msg)}, false
	}

	valid := key != "" && s.valid[key]
	base := baseURL(r)
	path := strings.TrimSuffix(r.URL.Path, "/")
	if r.Method != http.MethodGet {
		return answer{http.StatusMethodNotAllowed, 0, errBody("Method not allowed")}, false
	}
	switch path {
	case "/api/v2":
		return answer{http.StatusOK, 0, entryPoint(base, valid)}, false
	}
	if !valid {
		return answer{http.StatusUnauthorized, 0, unauthorized(key)}, false
	}
	switch path {
	case "/api/v2/tags":
		g := s.groups[s.member[key]]
		if g == nil {
			g = s.groups[DefaultGroup]
		}
		return answer{http.StatusOK, 0, collection(base, "tags", tags(base, g), r)}, false
	case "/api/v2/people":
		return answer{http.StatusOK, 0, collection(base, "people", people(base), r)}, false
	}
	return answer{http.StatusNotFound, 0, errBody("Not found")}, false
}

func ceilSeconds(d time.Duration) int {
	return max(1, int((d+time.Second-1)/time.Second))
}

func errBody(msg string) map[string]string { return map[string]string{"error": msg} }

func unauthorized(key string) map[string]string {
	if key == "" {
		return errBody("API Key invalid or not present")
	}
	return errBody("API Key " + key + " invalid")
}

func rateBody(key string, n int, per time.Duration) map[string]string {
	if key == "" {
		return errBody("Too many requests")
	}
	return errBody(fmt.Sprintf("API Key %s has made more than %d requests in %s", key, n, per))
}

func baseURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + "/api/v2"
}

type link struct {
	Href  string `json:"href"`
	Title string `json:"title,omitempty"`
}

var curies = []map[string]any{
	{"name": "osdi", "href": "https://actionnetwork.org/docs/v2/{rel}", "templated": true},
	{"name": "action_network", "href": "https://actionnetwork.org/docs/v2/{rel}", "templated": true},
}

func entryPoint(base string, valid bool) map[string]any {
	links := map[string]any{
		"self":        link{base, "Action Network API Entry Point"},
		"osdi:people": link{base + "/people", "The collection of people in the system"},
		"docs":        link{"https://actionnetwork.org/docs", "Documentation"},
		"curies":      curies,
	}
	if valid {
		for rel, title := range map[string]string{
			"tags":               "The collection of tags in the system",
			"events":             "The collection of events in the system",
			"petitions":          "The collection of petitions in the system",
			"forms":              "The collection of forms in the system",
			"lists":              "The collection of lists in the system",
			"messages":           "The collection of messages in the system",
			"fundraising_pages":  "The collection of fundraising_pages in the system",
			"advocacy_campaigns": "The collection of advocacy_campaigns in the system",
		} {
			links["osdi:"+rel] = link{base + "/" + rel, title}
		}
	}
	return map[string]any{
		"motd":         "Welcome to the Action Network OSDI API v2 Entry Point!",
		"vendor_name":  "Action Network",
		"product_name": "Action Network",
		"osdi_version": "1.0",
		"max_pagesize": maxPerPage,
		"namespace":    "action_network",
		"_links":       links,
	}
}

const created = "2024-03-14T09:26:53Z"

func tags(base string, g *group) []map[string]any {
	out := make([]map[string]any, len(g.tags))
	for i, t := range g.tags {
		id := t.id
		out[i] = map[string]any{
			"name":          t.name,
			"identifiers":   []string{"action_network:" + id},
			"created_date":  created,
			"modified_date": created,
			"_links": map[string]any{
				"self":          link{Href: base + "/tags/" + id},
				"osdi:taggings": link{Href: base + "/tags/" + id + "/taggings"},
			},
		}
	}
	return out
}

func people(base string) []map[string]any {
	names := [][2]string{{"Ada", "Lovelace"}, {"Grace", "Hopper"}, {"Alan", "Turing"}}
	out := make([]map[string]any, len(names))
	for i, n := range names {
		id := fmt.Sprintf("e5f6a7b8-0000-4000-8000-%012d", i+1)
		out[i] = map[string]any{
			"given_name":  n[0],
			"family_name": n[1],
			"email_addresses": []map[string]any{{
				"address": strings.ToLower(n[0]) + "@example.org", "primary": true, "status": "subscribed",
			}},
			"identifiers":   []string{"action_network:" + id},
			"created_date":  created,
			"modified_date": created,
			"_links":        map[string]any{"self": link{Href: base + "/people/" + id}},
		}
	}
	return out
}

func collection(base, name string, items []map[string]any, r *http.Request) map[string]any {
	q := r.URL.Query()
	per := maxPerPage
	if n, err := strconv.Atoi(q.Get("per_page")); err == nil && n > 0 {
		per = min(n, maxPerPage)
	}
	page := 1
	if n, err := strconv.Atoi(q.Get("page")); err == nil && n > 0 {
		page = n
	}
	pages := (len(items) + per - 1) / per
	lo := min((page-1)*per, len(items))
	hi := min(lo+per, len(items))
	shown := items[lo:hi]

	rel := "osdi:" + name
	self := fmt.Sprintf("%s/%s?page=%d&per_page=%d", base, name, page, per)
	itemLinks := make([]link, len(shown))
	for i, it := range shown {
		itemLinks[i] = it["_links"].(map[string]any)["self"].(link)
	}
	links := map[string]any{"self": link{Href: self}, rel: itemLinks, "curies": curies}
	if page < pages {
		links["next"] = link{Href: fmt.Sprintf("%s/%s?page=%d&per_page=%d", base, name, page+1, per)}
	}
	return map[string]any{
		"total_pages":   pages,
		"per_page":      per,
		"page":          page,
		"total_records": len(items),
		"_links":        links,
		"_embedded":     map[string]any{rel: shown},
	}
}
