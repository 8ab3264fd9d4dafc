package serve

import (
	"context"
	"encoding/json"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/rekey-dev/rekey/config"
	"github.com/rekey-dev/rekey/rotation"
	"github.com/rekey-dev/rekey/state"
)

// A due key gets one reminder per threshold, not one per audit; a new
// instance on the same Vault does not repeat it; once due, one a day.
func TestDueKeyRemindsOnce(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t, 90*day)
	k1 := w.mint()
	w.storeKey(k1)
	w.hold(k1)
	cur, err := w.store.ReadKey(ctx, w.job.Key.VaultPath)
	if err != nil {
		t.Fatal(err)
	}
	due := cur.Created.Add(90 * day)
	w.clock.Set(due.Add(-10 * day))

	one := w.server("one")
	one.step(ctx)
	if !one.leading() {
		t.Fatal("the only instance did not take the lease")
	}
	expect := func(total int, latest string) {
		t.Helper()
		texts := w.slack.texts()
		if len(texts) != total {
			t.Fatalf("%d Slack messages, want %d: %q", len(texts), total, texts)
		}
		if latest != "" && !strings.Contains(texts[total-1], latest) {
			t.Fatalf("latest message %q, want it to say %q", texts[total-1], latest)
		}
	}
	expect(1, "an-main is due for rotation in 10 days")
	if msg := w.slack.texts()[0]; !strings.Contains(msg, "UOWNER") || !strings.Contains(msg, "GENERATE NEW KEY") {
		t.Errorf("the reminder names neither the owner nor what to click: %q", msg)
	}
	for range 3 {
		w.clock.Add(time.Hour)
		one.step(ctx)
	}
	expect(1, "")
	if got := w.said().Keys["an-main"]; got == nil || !slices.Equal(got.Reminded, []string{"14d"}) || got.Version != 1 {
		t.Fatalf("said about an-main: %+v", got)
	}
	if n := w.said().LastRound; !n.After(due.Add(-10*day + 2*time.Hour)) {
		t.Fatalf("the audits did not run each hour: last round %v", n)
	}

	// A restart: the first instance stops (releasing the lease), a new one
	// takes over and audits, and says nothing new.
	if _, err := one.lease.release(ctx, w.clock.Now()); err != nil {
		t.Fatal(err)
	}
	two := w.server("two")
	for range 3 {
		w.clock.Add(time.Hour)
		two.step(ctx)
	}
	if !two.leading() || w.said().By != "two" {
		t.Fatalf("the new instance did not take over: leading %v, last round by %q", two.leading(), w.said().By)
	}
	expect(1, "")

	// The next thresholds, then the due day, then daily.
	w.clock.Set(due.Add(-6 * day))
	two.step(ctx)
	expect(2, "an-main is due for rotation in 6 days")
	w.clock.Set(due.Add(-12 * time.Hour))
	two.step(ctx)
	expect(3, "an-main is due for rotation in 12 hours")
	w.clock.Set(due.Add(time.Hour))
	two.step(ctx)
	expect(4, "an-main is due for rotation today")
	w.clock.Add(2 * time.Hour)
	two.step(ctx)
	expect(4, "")
	w.clock.Set(due.Add(day + 2*time.Hour))
	two.step(ctx)
	expect(5, "an-main is overdue for rotation by 1 day")
	w.clock.Add(2 * time.Hour)
	two.step(ctx)
	expect(5, "")

	// Rotated: the new version (rotated now) is not due; its own reminders
	// start again at 14 days before its due date.
	k2 := w.mint()
	w.storeKey(k2)
	w.hold(k2)
	rotated := w.clock.Now().UTC().Truncate(time.Second)
	if err := w.store.PatchMetadata(ctx, w.job.Key.VaultPath, map[string]string{"rotated_at": rotated.Format(time.RFC3339), "fingerprint": k2.Fingerprint()}); err != nil {
		t.Fatal(err)
	}
	w.clock.Add(time.Hour)
	two.step(ctx)
	expect(5, "")
	w.clock.Set(rotated.Add(77 * day))
	two.step(ctx)
	expect(6, "an-main is due for rotation in 13 days")
	if got := w.said().Keys["an-main"]; got.Version != 2 || !slices.Equal(got.Reminded, []string{"14d"}) || got.OverdueSent != 0 {
		t.Fatalf("said about an-main after the rotation: %+v", got)
	}
	if n := w.slack.count("went from"); n != 0 {
		t.Errorf("%d state change alerts for an integration that stayed current", n)
	}
}

// A state change gives one alert, not one per audit, and not again after
// a restart. An alert Slack did not take is sent at the next audit.
func TestStateChangeAlertsOnce(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t, 0)
	old, cur := w.mint(), w.mint()
	w.storeKey(old)
	w.storeKey(cur)
	w.hold(cur)

	one := w.server("one")
	one.step(ctx)
	if n := len(w.slack.texts()); n != 0 {
		t.Fatalf("%d messages for the first audit, want none (nothing changed)", n)
	}
	if got := w.said().Keys["an-main"].Integrations["site-env"]; got.Alerted != state.Current {
		t.Fatalf("baseline %+v", got)
	}

	w.hold(old)
	for range 3 {
		w.clock.Add(time.Hour)
		one.step(ctx)
	}
	if texts := w.slack.texts(); len(texts) != 1 || !strings.Contains(texts[0], "an-main: site-env went from current to stale") {
		t.Fatalf("messages %q, want one alert current to stale", texts)
	}
	if msg := w.slack.texts()[0]; !strings.Contains(msg, "USITE") {
		t.Errorf("the alert does not name the integration's owner: %q", msg)
	}

	if _, err := one.lease.release(ctx, w.clock.Now()); err != nil {
		t.Fatal(err)
	}
	two := w.server("two")
	for range 2 {
		w.clock.Add(time.Hour)
		two.step(ctx)
	}
	if n := len(w.slack.texts()); n != 1 || w.said().By != "two" {
		t.Fatalf("after a restart: %d messages (want 1), last round by %q", n, w.said().By)
	}

	w.hold(cur)
	w.clock.Add(time.Hour)
	two.step(ctx)
	if n := w.slack.count("an-main: site-env went from stale to current"); n != 1 || len(w.slack.texts()) != 2 {
		t.Fatalf("messages %q, want a second alert stale to current", w.slack.texts())
	}

	// Slack refuses the next alert: it is not taken as said.
	w.hold(old)
	w.slack.setFail("ratelimited_forever")
	w.clock.Add(time.Hour)
	two.step(ctx)
	if got := w.said().Keys["an-main"].Integrations["site-env"].Alerted; got != state.Current {
		t.Fatalf("an alert Slack refused is recorded as said (%s)", got)
	}
	w.slack.setFail("")
	for range 2 {
		w.clock.Add(time.Hour)
		two.step(ctx)
	}
	if n := w.slack.count("went from current to stale"); n != 2 || len(w.slack.texts()) != 3 {
		t.Fatalf("messages %q, want the refused alert sent once when Slack is back", w.slack.texts())
	}
}

// Two instances: one works; when it dies without releasing the lease, the
// other takes over once the lease expires, judged by its own clock.
func TestLeaseTakeover(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t, 0)
	k := w.mint()
	w.storeKey(k)
	w.hold(k)
	start := w.clock.Now()
	at := func(d time.Duration) { w.clock.Set(start.Add(d)) }

	one, two := w.server("one"), w.server("two")
	one.step(ctx)
	two.step(ctx)
	if !one.leading() || two.leading() {
		t.Fatalf("leading: one %v, two %v; want one only", one.leading(), two.leading())
	}
	if by := w.said().By; by != "one" {
		t.Fatalf("the audit was run by %q, want one", by)
	}
	if l := w.lease(); !l.Held || l.Holder != "one" || l.PID == 0 || l.Host == "" || !l.Expires.After(start) {
		t.Fatalf("lease record %+v", l)
	}

	at(30 * time.Second) // one renews; two sees the new version
	one.step(ctx)
	two.step(ctx)
	// one dies here, without releasing.
	at(69 * time.Second)
	if !one.leading() {
		t.Fatal("one stopped leading before 2/3 of its lease")
	}
	two.step(ctx)
	at(71 * time.Second)
	if one.leading() {
		t.Fatal("one still works 2/3 of a lease after its last renewal")
	}
	at(89 * time.Second)
	two.step(ctx)
	if two.leading() {
		t.Fatal("two took over before the lease expired")
	}
	at(91 * time.Second)
	two.step(ctx)
	if !two.leading() || w.lease().Holder != "two" {
		t.Fatalf("two did not take over an expired lease: %+v", w.lease())
	}
	// one comes back: its renewal fails, and it stays a follower.
	one.step(ctx)
	if one.leading() || !two.leading() {
		t.Fatalf("after one came back: one %v, two %v", one.leading(), two.leading())
	}
	at(2 * time.Hour) // two renews first, so one sees a live lease
	two.step(ctx)
	one.step(ctx)
	if by := w.said().By; by != "two" {
		t.Fatalf("the audit was run by %q, want two", by)
	}
}

// The same with real processes' timing: Run, a short lease, and a crash.
func TestLeaseTakeoverRun(t *testing.T) {
	w := newWorld(t, 0)
	w.realClock()
	w.serve.LeaseTTL = config.Duration(time.Second)
	w.serve.AuditInterval = config.Duration(200 * time.Millisecond)
	k := w.mint()
	w.storeKey(k)
	w.hold(k)

	one, two := w.server("one"), w.server("two")
	one.noRelease = true // it will die as if killed
	stopOne, oneDone := run(t, one)
	waitFor(t, 10*time.Second, "one to lead", one.leading)
	waitFor(t, 10*time.Second, "one to audit", func() bool { return w.saidBy() == "one" })
	stopTwo, twoDone := run(t, two)
	defer func() { stopTwo(); <-twoDone }()

	// Over more than a lease, only one works.
	until := time.Now().Add(1500 * time.Millisecond)
	for time.Now().Before(until) {
		if two.leading() {
			t.Fatal("two leads while one holds the lease")
		}
		if !one.leading() {
			t.Fatal("one lost the lease while alive")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := two.metrics.rounds; counterValue(t, n) != 0 {
		t.Fatal("two audited while one held the lease")
	}

	stopOne()
	<-oneDone
	killed := time.Now()
	waitFor(t, 10*time.Second, "two to take over", two.leading)
	took := time.Since(killed)
	ttl := w.serve.LeaseTTL.D()
	if limit := ttl + ttl/3 + 2*time.Second; took > limit {
		t.Errorf("two took over %v after one died; the lease expires in %v", took, ttl)
	}
	t.Logf("two took over %v after one died (lease %v)", took, ttl)
	waitFor(t, 10*time.Second, "two to audit", func() bool { return w.saidBy() == "two" })
	if l := w.lease(); !l.Held || l.Holder != "two" {
		t.Fatalf("lease record %+v", l)
	}

	// SIGTERM: two stops and releases the lease.
	stopTwo()
	<-twoDone
	if l := w.lease(); l.Held || l.Holder != "two" || l.Released.IsZero() {
		t.Fatalf("lease record after a clean stop: %+v", l)
	}
}

// A clean stop releases the lease, so another instance takes over at its
// next look, long before the lease would have expired.
func TestStopReleasesLease(t *testing.T) {
	w := newWorld(t, 0)
	w.realClock()
	w.serve.LeaseTTL = config.Duration(6 * time.Second)
	k := w.mint()
	w.storeKey(k)
	w.hold(k)

	one, two := w.server("one"), w.server("two")
	stopOne, oneDone := run(t, one)
	waitFor(t, 10*time.Second, "one to lead", one.leading)
	stopTwo, twoDone := run(t, two)
	defer func() { stopTwo(); <-twoDone }()
	time.Sleep(100 * time.Millisecond) // two has looked at the lease once
	stopOne()
	<-oneDone
	stopped := time.Now()
	if l := w.lease(); l.Held {
		t.Fatalf("lease still held after a clean stop: %+v", l)
	}
	waitFor(t, 10*time.Second, "two to take over", two.leading)
	if took := time.Since(stopped); took >= w.serve.LeaseTTL.D() {
		t.Errorf("two took over %v after one stopped: it waited for expiry, not the release", took)
	}
}

// /metrics is Prometheus text with each key's age, seconds until due,
// integrations by state, last audit time and duration, rotations by
// outcome, and whether this instance leads; /healthz says who leads.
func TestMetricsAndHealth(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t, 90*day)
	k1 := w.mint()
	w.storeKey(k1)
	w.hold(k1)
	k2 := w.mint()
	eng := w.engine()
	out, err := eng.Rotate(ctx, rotation.Job{Key: w.job.Key, Targets: w.job.Targets, Reason: "scheduled"}, k2)
	if err != nil || !out.AllCurrent() {
		t.Fatalf("rotate: %v %+v", err, out)
	}
	rotated := out.Rotation.Started.Truncate(time.Second)
	w.clock.Set(rotated.Add(10 * day))

	one, two := w.server("one"), w.server("two")
	one.step(ctx)
	two.step(ctx)
	audited := w.clock.Now()

	for _, s := range []*Server{one, two} {
		srv := httptest.NewServer(s.Handler())
		defer srv.Close()
		fams := scrape(t, srv.URL+"/metrics")
		leader := 0.0
		if s == one {
			leader = 1
		}
		checks := []struct {
			name   string
			labels map[string]string
			want   float64
			within float64
		}{
			{"rekey_leader", nil, leader, 0},
			{"rekey_key_version", map[string]string{"key": "an-main"}, 2, 0},
			{"rekey_key_age_seconds", map[string]string{"key": "an-main"}, (10 * day).Seconds(), 5},
			{"rekey_key_rotation_due_seconds", map[string]string{"key": "an-main"}, (80 * day).Seconds(), 5},
			{"rekey_integrations", map[string]string{"key": "an-main", "state": "current"}, 1, 0},
			{"rekey_integrations", map[string]string{"key": "an-main", "state": "stale"}, 0, 0},
			{"rekey_integrations", map[string]string{"key": "an-main", "state": "failing"}, 0, 0},
			{"rekey_last_audit_timestamp_seconds", map[string]string{"key": "an-main"}, float64(audited.Unix()), 2},
			{"rekey_rotations", map[string]string{"key": "an-main", "reason": "scheduled", "outcome": "complete"}, 1, 0},
		}
		for _, c := range checks {
			got, ok := value(fams, c.name, c.labels)
			if !ok {
				t.Errorf("%s: no %s%v", s.ID(), c.name, c.labels)
				continue
			}
			if math.Abs(got-c.want) > c.within {
				t.Errorf("%s: %s%v = %v, want %v", s.ID(), c.name, c.labels, got, c.want)
			}
		}
		if got, ok := value(fams, "rekey_last_audit_duration_seconds", map[string]string{"key": "an-main"}); !ok || got <= 0 || got > 60 {
			t.Errorf("%s: rekey_last_audit_duration_seconds = %v, %v", s.ID(), got, ok)
		}
		if s == one {
			if got, _ := value(fams, "rekey_audit_rounds_total", nil); got != 1 {
				t.Errorf("rekey_audit_rounds_total = %v, want 1", got)
			}
		}

		resp, err := http.Get(srv.URL + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		var h Health
		err = json.NewDecoder(resp.Body).Decode(&h)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("/healthz: %d %v", resp.StatusCode, err)
		}
		if h.Status != "ok" || h.Instance != s.ID() || h.Leader != (s == one) || h.Lease == nil || h.Lease.Holder != "one" {
			t.Errorf("/healthz of %s: %+v", s.ID(), h)
		}
	}
}

func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("/metrics: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("/metrics is not Prometheus text: %v", err)
	}
	return fams
}

// value finds the sample of name whose labels include labels.
func value(fams map[string]*dto.MetricFamily, name string, labels map[string]string) (float64, bool) {
	f, ok := fams[name]
	if !ok {
		return 0, false
	}
next:
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range labels {
			if have[k] != v {
				continue next
			}
		}
		switch {
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Untyped != nil:
			return m.GetUntyped().GetValue(), true
		}
	}
	return 0, false
}

// audit_interval is kept whatever the lease's life: with a lease of a
// minute (renewed every 20s) and audit_interval 1s, a change is alerted
// within 3 seconds.
func TestAuditIntervalShorterThanLease(t *testing.T) {
	w := newWorld(t, 0)
	w.realClock()
	w.serve.LeaseTTL = config.Duration(time.Minute)
	w.serve.AuditInterval = config.Duration(time.Second)
	old, cur := w.mint(), w.mint()
	w.storeKey(old)
	w.storeKey(cur)
	w.hold(cur)

	one := w.server("one")
	stop, done := run(t, one)
	defer func() { stop(); <-done }()
	waitFor(t, 10*time.Second, "the first audit round", func() bool { return w.saidBy() == "one" })

	w.hold(old)
	changed := time.Now()
	waitFor(t, 10*time.Second, "the alert", func() bool { return w.slack.count("site-env went from current to stale") == 1 })
	took := time.Since(changed)
	t.Logf("alerted %v after the change (audit_interval 1s, lease 1m)", took)
	if took > 3*time.Second {
		t.Errorf("alerted %v after the change, want within 3s", took)
	}
	if n := counterValue(t, one.metrics.rounds); n < 2 {
		t.Errorf("%v audit rounds", n)
	}
}
