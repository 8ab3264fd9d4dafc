package serve

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"

	"github.com/rekey-dev/rekey/internal/leakcheck"
	"github.com/rekey-dev/rekey/internal/testtool"
	"github.com/rekey-dev/rekey/rotation"
)

// promtool returns the path of Prometheus's promtool; a missing one skips
// the test, or fails it where every test must run (testtool.Required).
func promtool(t *testing.T) string {
	return testtool.Find(t, "prometheus", "promtool")
}

// TestMetricsPassPromtool: a live /metrics, before any audit and after
// one, passes `promtool check metrics` with no warning, and every counter
// family has its series from the start.
func TestMetricsPassPromtool(t *testing.T) {
	tool := promtool(t)
	ctx := context.Background()
	w := newWorld(t, 90*day)
	k1, k2 := w.mint(), w.mint()
	w.storeKey(k1)
	w.hold(k1)
	if _, err := w.engine().Rotate(ctx, rotation.Job{Key: w.job.Key, Targets: w.job.Targets, Reason: "scheduled"}, k2); err != nil {
		t.Fatal(err)
	}
	s := w.server("one")
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()

	check := func(when string) string {
		resp, err := http.Get(srv.URL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(tool, "check", "metrics")
		cmd.Stdin = bytes.NewReader(body)
		out, err := cmd.CombinedOutput()
		if err != nil || len(bytes.TrimSpace(out)) > 0 {
			t.Errorf("%s: promtool check metrics: %v\n%s\n--- /metrics:\n%s", when, err, out, body)
		}
		leakcheck.Assert(t, "/metrics", body, w.keys...)
		return string(body)
	}

	before := check("before any audit")
	for _, series := range []string{
		`rekey_notifications_total{kind="reminder",result="sent"} 0`,
		`rekey_notifications_total{kind="state_changed",result="failed"} 0`,
		`rekey_audit_rounds_total 0`,
		`rekey_vault_errors_total 0`,
	} {
		if !strings.Contains(before, series) {
			t.Errorf("no %s before the first event", series)
		}
	}
	s.step(ctx)
	after := check("after an audit")
	if !strings.Contains(after, `rekey_key_rotation_due_seconds{key="an-main"}`) {
		t.Errorf("no rekey_key_rotation_due_seconds:\n%s", after)
	}
	if strings.Contains(after, "days") {
		t.Errorf("a metric still counts in days:\n%s", after)
	}
}
