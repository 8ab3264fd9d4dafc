package serve

import (
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rekey-dev/rekey/notifiers"
	"github.com/rekey-dev/rekey/records"
	"github.com/rekey-dev/rekey/state"
)

// States lists every integration state, so that rekey_integrations has a
// series (possibly 0) for each and an alert on "stale > 0" clears itself.
var States = []state.State{
	state.Current, state.Stale, state.Compromised,
	state.Pending, state.Failing, state.Unknown,
}

// Rotation outcomes, as rekey_rotations labels them.
const (
	OutcomeComplete   = "complete"    // every integration current
	OutcomeIncomplete = "incomplete"  // stored, but some integration was not current when it finished
	OutcomeAborted    = "aborted"     // stopped before Vault was written: nothing changed
	OutcomeInProgress = "in_progress" // running, or interrupted after the Vault write (`rekey resume` finishes it)
)

// Outcome classifies a rotation record.
func Outcome(r *records.Rotation) string {
	switch r.Phase {
	case records.PhaseAborted:
		return OutcomeAborted
	case records.PhaseDone:
		for _, in := range r.Integrations {
			if in.State != state.Current {
				return OutcomeIncomplete
			}
		}
		return OutcomeComplete
	}
	return OutcomeInProgress
}

// keyFigures is what the metrics say about one key, as last read from Vault.
type keyFigures struct {
	version     int
	stored      time.Time // when the current version was stored
	rotateEvery time.Duration
	states      map[state.State]int
	audited     bool
	auditAt     time.Time
	auditTook   time.Duration
	rotations   map[rotationLabel]int
}

type rotationLabel struct{ reason, outcome string }

// metrics is the daemon's Prometheus registry. Figures about keys are
// computed when scraped (ages grow between audits) from what the last
// refresh read from Vault.
type metrics struct {
	reg *prometheus.Registry
	now func() time.Time

	mu      sync.Mutex
	keys    map[string]*keyFigures
	leading func() bool

	notifications *prometheus.CounterVec
	rounds        prometheus.Counter
	vaultErrors   prometheus.Counter
}

var (
	descAge = prometheus.NewDesc("rekey_key_age_seconds",
		"Seconds since the key's current version was stored.", []string{"key"}, nil)
	descDue = prometheus.NewDesc("rekey_key_rotation_due_seconds",
		"Seconds until the key is due for rotation (rotate_every); negative once overdue.", []string{"key"}, nil)
	descVersion = prometheus.NewDesc("rekey_key_version",
		"The key's current version in Vault.", []string{"key"}, nil)
	descIntegrations = prometheus.NewDesc("rekey_integrations",
		"Integrations of the key in each state, as the last audit (by rekey serve or rekey audit) found them.", []string{"key", "state"}, nil)
	descAuditAt = prometheus.NewDesc("rekey_last_audit_timestamp_seconds",
		"When the key's integrations were last audited, by rekey serve or rekey audit (Unix time).", []string{"key"}, nil)
	descAuditTook = prometheus.NewDesc("rekey_last_audit_duration_seconds",
		"How long the key's last audit took.", []string{"key"}, nil)
	descRotations = prometheus.NewDesc("rekey_rotations",
		"Rotation records of the key in Vault, by reason (scheduled, manual, leak) and outcome (complete, incomplete, aborted, in_progress).",
		[]string{"key", "reason", "outcome"}, nil)
	descLeader = prometheus.NewDesc("rekey_leader",
		"1 when this instance holds the lease and does the scheduled work.", nil, nil)
)

func newMetrics(now func() time.Time, leading func() bool) *metrics {
	m := &metrics{
		reg:     prometheus.NewRegistry(),
		now:     now,
		keys:    map[string]*keyFigures{},
		leading: leading,
		notifications: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rekey_notifications_total",
			Help: "Reminders and state-change alerts this instance sent, by kind and result (sent, failed, logged: no notifier configured).",
		}, []string{"kind", "result"}),
		rounds: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rekey_audit_rounds_total",
			Help: "Audit rounds this instance ran.",
		}),
		vaultErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rekey_vault_errors_total",
			Help: "Vault reads and writes of the daemon that failed.",
		}),
	}
	m.reg.MustRegister(m, m.notifications, m.rounds, m.vaultErrors)
	return m
}

// notificationKinds are the events the daemon sends.
var notificationKinds = []notifiers.Kind{notifiers.Reminder, notifiers.StateChanged}

// initNotifications gives rekey_notifications_total its series from the
// start, at 0, for every kind and each result this instance can have, so
// that an alert on increase(...) sees the first failure.
func (m *metrics) initNotifications(notifier bool) {
	results := []string{"sent", "failed"}
	if !notifier {
		results = []string{"logged"}
	}
	for _, k := range notificationKinds {
		for _, r := range results {
			m.notifications.WithLabelValues(string(k), r)
		}
	}
}

func (m *metrics) set(key string, f *keyFigures) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.keys[key] = f
}

// Describe implements prometheus.Collector.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descAge, descDue, descVersion, descIntegrations, descAuditAt, descAuditTook, descRotations, descLeader} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	now := m.now()
	leader := 0.0
	if m.leading() {
		leader = 1
	}
	ch <- prometheus.MustNewConstMetric(descLeader, prometheus.GaugeValue, leader)

	m.mu.Lock()
	defer m.mu.Unlock()
	ids := make([]string, 0, len(m.keys))
	for id := range m.keys {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		f := m.keys[id]
		if f.version > 0 {
			ch <- prometheus.MustNewConstMetric(descVersion, prometheus.GaugeValue, float64(f.version), id)
			ch <- prometheus.MustNewConstMetric(descAge, prometheus.GaugeValue, now.Sub(f.stored).Seconds(), id)
			if f.rotateEvery > 0 {
				due := f.stored.Add(f.rotateEvery).Sub(now).Seconds()
				ch <- prometheus.MustNewConstMetric(descDue, prometheus.GaugeValue, due, id)
			}
		}
		if f.audited {
			for _, s := range States {
				ch <- prometheus.MustNewConstMetric(descIntegrations, prometheus.GaugeValue, float64(f.states[s]), id, string(s))
			}
			ch <- prometheus.MustNewConstMetric(descAuditAt, prometheus.GaugeValue, float64(f.auditAt.UnixNano())/1e9, id)
			ch <- prometheus.MustNewConstMetric(descAuditTook, prometheus.GaugeValue, f.auditTook.Seconds(), id)
		}
		for l, n := range f.rotations {
			ch <- prometheus.MustNewConstMetric(descRotations, prometheus.GaugeValue, float64(n), id, l.reason, l.outcome)
		}
	}
}
