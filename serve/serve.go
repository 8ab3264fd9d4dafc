// Package serve is `rekey serve`: a daemon that audits every key's
// integrations on a schedule, reminds a key's owner before the key is due
// for rotation (and daily once it is overdue), alerts when an
// integration's state changes, and exports Prometheus metrics and a
// health check over HTTP.
//
// Several instances may share one Vault; only the holder of a lease (the
// record <state_path>/serve/lease, written with check-and-set) does the
// scheduled work. What was already said (reminders, the states last
// alerted) is kept in <state_path>/serve/said, so that a restart or a new
// leader repeats nothing. Every instance serves metrics, read from Vault.
//
// Time comes from Options.Now, so tests can move the clock by days.
package serve

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/rekey-dev/rekey/config"
	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/notifiers"
	"github.com/rekey-dev/rekey/records"
	"github.com/rekey-dev/rekey/rotation"
	"github.com/rekey-dev/rekey/state"
	"github.com/rekey-dev/rekey/store"
)

// Options configure a Server.
type Options struct {
	// Serve holds audit_interval, remind_before, listen and lease_ttl.
	Serve config.Serve
	// Store holds the keys and rekey's records (Vault in production).
	Store store.Store
	// Engine audits keys (Engine.Audit); its Store is Vault too.
	Engine *rotation.Engine
	// Jobs are the keys to watch, each with its integrations.
	Jobs []rotation.Job
	// Notifier gets reminders and alerts; nil logs them only.
	Notifier notifiers.Notifier
	// Logger gets what the daemon does (JSON in production). Nil discards.
	Logger *slog.Logger
	// Now is the clock; nil is time.Now.
	Now func() time.Time
	// ID names this instance in the lease; empty makes one from the host,
	// the process id and a random suffix.
	ID string
}

// Server is one instance of the daemon.
type Server struct {
	opts    Options
	id      string
	log     *slog.Logger
	lease   *lease
	metrics *metrics

	// noRelease makes Run return without releasing the lease, as a crash
	// would (tests only).
	noRelease bool

	mu          sync.Mutex
	lastRound   time.Time
	lastRefresh time.Time
	lastErr     string
	// rotations caches the labels of rotation records that can no longer
	// change (finished, and not the key's latest), by key and rotation id.
	rotations map[string]map[string]rotationLabel
}

// New checks opts and returns a Server.
func New(opts Options) (*Server, error) {
	if opts.Store == nil || opts.Engine == nil {
		return nil, errors.New("serve: a store and an engine are required")
	}
	// The audits and the hand-off page's calls share the engine.
	opts.Engine.SetDefaults()
	if opts.Serve.AuditInterval <= 0 {
		return nil, fmt.Errorf("serve: audit_interval must be positive, got %s", opts.Serve.AuditInterval)
	}
	if opts.Serve.LeaseTTL <= 0 {
		return nil, fmt.Errorf("serve: lease_ttl must be positive, got %s", opts.Serve.LeaseTTL)
	}
	for _, b := range opts.Serve.RemindBefore {
		if b <= 0 {
			return nil, fmt.Errorf("serve: remind_before: %s is not a positive duration", b)
		}
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	host, _ := os.Hostname()
	if opts.ID == "" {
		b := make([]byte, 3)
		rand.Read(b)
		opts.ID = fmt.Sprintf("%s:%d:%s", host, os.Getpid(), hex.EncodeToString(b))
	}
	s := &Server{
		opts:      opts,
		id:        opts.ID,
		log:       opts.Logger.With("instance", opts.ID),
		rotations: map[string]map[string]rotationLabel{},
	}
	s.lease = &lease{
		store: opts.Store,
		ttl:   opts.Serve.LeaseTTL.D(),
		me:    LeaseRecord{Holder: opts.ID, Host: host, PID: os.Getpid()},
	}
	s.metrics = newMetrics(s.now, s.leading)
	s.metrics.initNotifications(opts.Notifier != nil)
	return s, nil
}

// ID returns the instance's id, as the lease record names it.
func (s *Server) ID() string { return s.id }

func (s *Server) now() time.Time { return s.opts.Now().UTC() }

func (s *Server) leading() bool { return s.lease.leading(s.now()) }

func (s *Server) interval() time.Duration { return s.opts.Serve.AuditInterval.D() }

// Run serves HTTP on Options.Serve.Listen (none when empty), keeps the
// lease, and does the scheduled work while it holds it, until ctx ends.
// Then it abandons any audit in progress, releases the lease so another
// instance can take over at once, and returns nil. It returns an error
// only when it cannot start: the address cannot be listened on, or Vault
// refuses the token.
func (s *Server) Run(ctx context.Context) error {
	var srv *http.Server
	if addr := s.opts.Serve.Listen; addr != "" {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("serve: listen on %s: %w", addr, err)
		}
		if !loopback(ln.Addr()) {
			s.log.Warn("listening beyond loopback: /metrics and /healthz have no authentication", "listen", ln.Addr().String())
		}
		srv = &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.log.Error("http server stopped", "err", err)
			}
		}()
		s.log.Info("serving", "listen", ln.Addr().String(), "audit_interval", s.opts.Serve.AuditInterval.String(), "lease_ttl", s.opts.Serve.LeaseTTL.String(), "keys", len(s.opts.Jobs))
	}
	defer func() {
		if srv != nil {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			srv.Shutdown(sctx)
		}
	}()

	if err := s.tickLease(ctx); errors.Is(err, failure.ErrUnauthorized) {
		return err
	}
	// The lease is renewed every lease_ttl/3; the work runs when it is
	// due (every audit_interval, however short or long that is beside the
	// lease), and at once when the lease changes hands.
	workCtx, stopWork := context.WithCancel(ctx)
	kick := make(chan struct{}, 1)
	worked := make(chan struct{})
	go func() {
		defer close(worked)
		t := time.NewTimer(0)
		defer t.Stop()
		for {
			select {
			case <-workCtx.Done():
				return
			case <-kick:
			case <-t.C:
			}
			s.work(workCtx)
			t.Reset(s.untilDue())
		}
	}()
	t := time.NewTicker(s.lease.ttl / 3)
	defer t.Stop()
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-t.C:
			s.tickLease(ctx)
			select {
			case kick <- struct{}{}:
			default: // a round is running; it will be kicked again
			}
		}
	}
	stopWork()
	<-worked
	if s.noRelease {
		return nil
	}
	rctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	released, err := s.lease.release(rctx, s.now())
	switch {
	case err != nil:
		s.log.Error("could not release the lease; another instance takes over when it expires", "err", err)
	case released:
		s.log.Info("stopped; lease released")
	default:
		s.log.Info("stopped")
	}
	return nil
}

// untilDue is how long until the next audit round (for the leader) or
// refresh of the metrics (for the others) is due: at most audit_interval,
// and at least a second (or audit_interval, when shorter), so that a round
// that could not run is not tried again in a tight loop.
func (s *Server) untilDue() time.Duration {
	interval := s.interval()
	s.mu.Lock()
	last := s.lastRefresh
	if s.leading() {
		last = s.lastRound
	}
	s.mu.Unlock()
	d := last.Add(interval).Sub(s.now())
	return min(max(d, min(interval, time.Second)), interval)
}

func loopback(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}

// tickLease renews or takes the lease and logs what changed.
func (s *Server) tickLease(ctx context.Context) error {
	ev, err := s.lease.tick(ctx, s.now())
	rec, _ := s.lease.current()
	switch ev {
	case "acquired":
		s.log.Info("lease acquired: this instance does the scheduled work", "expires", rec.Expires)
	case "lost":
		s.log.Warn("lease lost: this instance stops the scheduled work", "err", err)
		return err
	}
	if err != nil && ctx.Err() == nil {
		s.metrics.vaultErrors.Inc()
		s.setErr(err)
		s.log.Warn("lease", "err", err)
	}
	return err
}

// step is one turn of Run's loop, done synchronously: keep the lease,
// then work. Tests drive the daemon with it.
func (s *Server) step(ctx context.Context) {
	s.tickLease(ctx)
	s.work(ctx)
}

// work runs an audit round when this instance leads and one is due, and
// otherwise refreshes the metrics from Vault once per audit interval.
func (s *Server) work(ctx context.Context) {
	now := s.now()
	if s.leading() {
		said, ver, err := s.loadSaid(ctx)
		if err != nil {
			s.vaultError("read what was said", err)
			return
		}
		s.mu.Lock()
		s.lastRound = said.LastRound
		s.mu.Unlock()
		if !now.Before(said.LastRound.Add(s.interval())) {
			s.round(ctx, now, said, ver)
			return
		}
	}
	s.mu.Lock()
	refresh := !now.Before(s.lastRefresh.Add(s.interval()))
	s.mu.Unlock()
	if refresh {
		s.refreshAll(ctx, now)
	}
}

func (s *Server) loadSaid(ctx context.Context) (*Said, int, error) {
	said, v, err := s.opts.Store.Said(ctx)
	if errors.Is(err, failure.ErrNotFound) {
		return &Said{Keys: map[string]*KeySaid{}}, v, nil
	}
	if err != nil {
		return nil, 0, err
	}
	if said.Keys == nil {
		said.Keys = map[string]*KeySaid{}
	}
	return said, v, nil
}

// round audits every key, alerts on changes, reminds, and records what
// was said after each key.
func (s *Server) round(ctx context.Context, start time.Time, said *Said, ver int) {
	s.log.Info("audit round", "keys", len(s.opts.Jobs))
	s.metrics.rounds.Inc()
	for i, job := range s.opts.Jobs {
		if ctx.Err() != nil || !s.leading() {
			s.log.Info("audit round abandoned", "key", job.Key.ID)
			return
		}
		ks, changed := s.auditKey(ctx, job, said.Keys[job.Key.ID])
		if ctx.Err() != nil {
			s.log.Info("audit round abandoned", "key", job.Key.ID)
			return
		}
		said.Keys[job.Key.ID] = ks
		last := i == len(s.opts.Jobs)-1
		if last {
			said.LastRound, said.By = start, s.id
		}
		if !changed && !last {
			continue
		}
		v, err := s.opts.Store.SaveSaid(context.WithoutCancel(ctx), said, ver)
		if err != nil {
			// A conflict means another instance wrote it: we no longer lead.
			s.vaultError("record what was said", err)
			return
		}
		ver = v
	}
	if len(s.opts.Jobs) == 0 {
		said.LastRound, said.By = start, s.id
		if _, err := s.opts.Store.SaveSaid(context.WithoutCancel(ctx), said, ver); err != nil {
			s.vaultError("record what was said", err)
			return
		}
	}
	s.mu.Lock()
	s.lastRound, s.lastRefresh = start, s.now()
	s.mu.Unlock()
}

// auditKey audits one key, alerts on its integrations' changes and
// reminds its owner when due. It returns what was said about the key, and
// whether that changed.
func (s *Server) auditKey(ctx context.Context, job rotation.Job, prev *KeySaid) (*KeySaid, bool) {
	id := job.Key.ID
	if prev == nil {
		prev = &KeySaid{}
	}
	next := clone(prev)
	ka := s.opts.Engine.Audit(ctx, job)
	if ctx.Err() != nil {
		return prev, false
	}
	log := s.log.With("key", id)
	cur, kerr := s.opts.Store.ReadKey(ctx, job.Key.VaultPath)
	s.refreshKey(ctx, job, cur, kerr)

	counts := map[state.State]int{}
	for _, r := range ka.Integrations {
		counts[r.State]++
	}
	log.Info("audited", "fingerprint", ka.Current, "took", ka.Duration.String(), "current", counts[state.Current],
		"stale", counts[state.Stale], "compromised", counts[state.Compromised], "pending", counts[state.Pending],
		"failing", counts[state.Failing], "unknown", counts[state.Unknown])

	// Alerts: only when the key itself could be read, so that Vault being
	// away is not taken for every integration changing.
	if ka.Error != "" {
		log.Warn("could not audit the key", "err", ka.Error)
	} else {
		var configured []string
		var changes []Change
		for _, r := range ka.Integrations {
			configured = append(configured, r.ID)
			if c, ok := observe(next, r.ID, r.State); ok {
				changes = append(changes, c)
			}
		}
		forget(next, configured)
		if len(changes) > 0 {
			if err := s.notify(ctx, stateChanged(job, ka, changes)); err != nil {
				log.Warn("state change alert not delivered; it is sent again next round", "err", err)
				next.Integrations = clone(prev).Integrations
			} else {
				for _, c := range changes {
					log.Info("state changed", "integration", c.ID, "previous", c.Previous, "state", c.State)
				}
			}
		}
	}

	// Reminders.
	switch {
	case errors.Is(kerr, failure.ErrNotFound):
		log.Warn("the key has no version in Vault; no reminders until it has one")
	case kerr != nil:
		// refreshKey logged it; remind next round.
	default:
		if rem, ok := remind(next, s.now(), storedAt(cur), cur.Version, job.Key.RotateEvery.D(), s.opts.Serve.RemindBefore); ok {
			if err := s.notify(ctx, reminder(job, ka, cur, rem, s.now())); err != nil {
				log.Warn("reminder not delivered; it is sent again next round", "err", err)
				next.Version, next.Reminded, next.OverdueSent = prev.Version, prev.Reminded, prev.OverdueSent
			} else {
				log.Info("reminded", "owner", job.Key.Owner, "due", rem.Due, "before", rem.Before, "overdue", rem.Overdue(), "overdue_days", rem.OverdueDays)
			}
		}
	}
	s.followLeaks(ctx, job, next, log)
	b1, _ := json.Marshal(prev)
	b2, _ := json.Marshal(next)
	return next, string(b1) != string(b2)
}

// leakRealert is how often the team is told again, urgently, that a
// leaked key still works.
const leakRealert = 24 * time.Hour

// followLeaks asks, through the engine, whether each leaked version of
// the key not yet known dead still works, and tells the team: urgently
// when it still works (then again each leakRealert while it does), or
// when its version is gone from Vault so that it can no longer be asked
// about (once); and once when the provider at last refuses it, with how
// far the leak is contained (the engine records that only once the team
// has been told, so a message Slack refused is sent next round). next
// records what was told.
func (s *Server) followLeaks(ctx context.Context, job rotation.Job, next *KeySaid, log *slog.Logger) {
	fs, err := s.opts.Engine.FollowLeaks(ctx, job, func(f rotation.LeakFollowUp) error {
		if err := s.notify(ctx, rotation.LeakContainedEvent(job, f)); err != nil {
			log.Warn("leak follow-up not delivered; it is sent again next round", "version", f.Version, "err", err)
			return err
		}
		log.Info("leak followed up", "version", f.Version, "fingerprint", f.Fingerprint, "state", string(f.Check.State), "reason", f.Check.Reason)
		return nil
	})
	if err != nil {
		log.Warn("could not follow up the key's leaks", "err", err)
		return
	}
	open := map[int]records.LeakSaid{}
	for _, f := range fs {
		if f.Check.State == rotation.LeakDead {
			continue // told above, or to be told next round
		}
		was, told := next.Leaks[f.Version]
		said := records.LeakSaid{State: string(f.Check.State), At: s.now()}
		var ev notifiers.Event
		switch {
		case f.Check.State == rotation.LeakWorks:
			j := job
			j.RotationID = f.RotationID
			ev = rotation.StillWorksEvent(j, f.Fingerprint, f.Check)
		case f.Gone:
			said.State = "gone"
			ev = rotation.LeakUncheckedEvent(job, f)
		default:
			log.Warn("whether the leaked key still works could not be checked; asked again next round", "version", f.Version, "fingerprint", f.Fingerprint, "reason", f.Check.Reason)
			if told {
				open[f.Version] = was
			}
			continue
		}
		if told && was.State == said.State && (said.State == "gone" || said.At.Sub(was.At) < leakRealert) {
			open[f.Version] = was
			continue
		}
		if err := s.notify(ctx, ev); err != nil {
			log.Warn("leak follow-up not delivered; it is sent again next round", "version", f.Version, "err", err)
			if told {
				open[f.Version] = was
			}
			continue
		}
		log.Info("leak followed up", "version", f.Version, "fingerprint", f.Fingerprint, "state", said.State, "reason", f.Check.Reason)
		open[f.Version] = said
	}
	// What was told of versions no longer followed (known dead) is
	// forgotten.
	next.Leaks = nil
	if len(open) > 0 {
		next.Leaks = open
	}
}

// notify sends ev, if this instance still leads.
func (s *Server) notify(ctx context.Context, ev notifiers.Event) error {
	if !s.leading() {
		return errors.New("serve: no longer holding the lease")
	}
	if ev.At.IsZero() {
		ev.At = s.now()
	}
	if s.opts.Notifier == nil {
		s.log.Info("no notifier configured; not sent", "event", string(ev.Kind), "key", ev.KeyID, "title", ev.Title)
		s.metrics.notifications.WithLabelValues(string(ev.Kind), "logged").Inc()
		return nil
	}
	if err := s.opts.Notifier.Notify(context.WithoutCancel(ctx), ev); err != nil {
		s.metrics.notifications.WithLabelValues(string(ev.Kind), "failed").Inc()
		return err
	}
	s.metrics.notifications.WithLabelValues(string(ev.Kind), "sent").Inc()
	return nil
}

func (s *Server) vaultError(what string, err error) {
	s.metrics.vaultErrors.Inc()
	s.setErr(err)
	s.log.Warn("vault: could not "+what, "err", err)
}

func (s *Server) setErr(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastErr = err.Error()
}

// storedAt is when the key's current version was stored: rekey's
// rotated_at when the metadata describes this version, else Vault's
// creation time of the version.
func storedAt(cur store.KeyVersion) time.Time {
	if cur.Metadata["fingerprint"] == cur.Fingerprint() {
		if t, err := time.Parse(time.RFC3339, cur.Metadata["rotated_at"]); err == nil {
			return t.UTC()
		}
	}
	return cur.Created.UTC()
}

func eventIntegrations(ka *rotation.KeyAudit) []notifiers.Integration {
	var out []notifiers.Integration
	for _, r := range ka.Integrations {
		out = append(out, notifiers.Integration{ID: r.ID, Type: r.Type, State: r.State, Reason: r.Reason, Owner: r.Owner})
	}
	return out
}

func stateChanged(job rotation.Job, ka *rotation.KeyAudit, changes []Change) notifiers.Event {
	ev := notifiers.Event{
		Kind: notifiers.StateChanged, KeyID: job.Key.ID, Fingerprint: ka.Current, Owner: job.Key.Owner,
		Text: fmt.Sprintf("Found by the scheduled audit. Run `rekey audit %s` for every integration's state.", job.Key.ID),
	}
	all := map[string]notifiers.Integration{}
	for _, in := range eventIntegrations(ka) {
		all[in.ID] = in
	}
	for _, c := range changes {
		if in, ok := all[c.ID]; ok {
			in.Previous = c.Previous
			ev.Integrations = append(ev.Integrations, in)
		}
		if c.State == state.Compromised {
			ev.Urgent = true
		}
	}
	if len(changes) == 1 {
		c := changes[0]
		ev.Title = fmt.Sprintf("%s: %s went from %s to %s", job.Key.ID, c.ID, c.Previous, c.State)
	} else {
		ev.Title = fmt.Sprintf("%s: %d integrations changed state", job.Key.ID, len(changes))
	}
	return ev
}

func reminder(job rotation.Job, ka *rotation.KeyAudit, cur store.KeyVersion, rem Reminder, now time.Time) notifiers.Event {
	ev := notifiers.Event{
		Kind: notifiers.Reminder, KeyID: job.Key.ID, Reason: "scheduled", Fingerprint: cur.Fingerprint(),
		Owner: job.Key.Owner, Instructions: job.Key.Instructions,
		Integrations: eventIntegrations(ka),
	}
	day := rem.Due.Format("2006-01-02")
	switch {
	case rem.Overdue() && rem.OverdueDays == 0:
		ev.Title = fmt.Sprintf("%s is due for rotation today (%s)", job.Key.ID, day)
	case rem.Overdue():
		ev.Title = fmt.Sprintf("%s is overdue for rotation by %s (due %s)", job.Key.ID, plural(rem.OverdueDays, "day"), day)
	case rem.Due.Sub(now) >= 24*time.Hour:
		days := int(math.Ceil(rem.Due.Sub(now).Hours() / 24))
		ev.Title = fmt.Sprintf("%s is due for rotation in %s (%s)", job.Key.ID, plural(days, "day"), day)
	default:
		hours := int(math.Ceil(rem.Due.Sub(now).Hours()))
		ev.Title = fmt.Sprintf("%s is due for rotation in %s (%s)", job.Key.ID, plural(hours, "hour"), rem.Due.Format("2006-01-02 15:04 UTC"))
	}
	ev.Text = fmt.Sprintf("Version %d was stored %s and is to be rotated every %s. When the people below are ready, run `rekey rotate %s --reason scheduled`: the old key stops working the moment the new one is generated.",
		cur.Version, storedAt(cur).Format("2006-01-02"), job.Key.RotateEvery, job.Key.ID)
	return ev
}

func plural(n int, unit string) string {
	if n == 1 {
		return "1 " + unit
	}
	return fmt.Sprintf("%d %ss", n, unit)
}

// refreshAll reads every key's figures from Vault for the metrics.
func (s *Server) refreshAll(ctx context.Context, now time.Time) {
	for _, job := range s.opts.Jobs {
		if ctx.Err() != nil {
			return
		}
		cur, err := s.opts.Store.ReadKey(ctx, job.Key.VaultPath)
		s.refreshKey(ctx, job, cur, err)
	}
	s.mu.Lock()
	s.lastRefresh = now
	s.mu.Unlock()
}

// refreshKey reads one key's figures: its version, its last audit (by
// anyone) and its rotation records.
func (s *Server) refreshKey(ctx context.Context, job rotation.Job, cur store.KeyVersion, kerr error) {
	f := &keyFigures{rotateEvery: job.Key.RotateEvery.D()}
	if kerr == nil {
		f.version, f.stored = cur.Version, storedAt(cur)
	} else if !errors.Is(kerr, failure.ErrNotFound) {
		s.vaultError("read the key", kerr)
	}
	st, _, err := s.opts.Store.KeyState(ctx, job.Key.ID)
	if err != nil {
		s.vaultError("read the key's state", err)
		st = &records.KeyState{}
	}
	a, _, err := s.opts.Store.LastAudit(ctx, job.Key.ID)
	if err != nil && !errors.Is(err, failure.ErrNotFound) {
		s.vaultError("read the key's last audit", err)
	}
	if a != nil {
		f.audited, f.auditAt, f.auditTook = true, a.At, a.Duration
		f.states = map[state.State]int{}
		for _, in := range a.Integrations {
			f.states[in.State]++
		}
	}
	f.rotations = s.rotationCounts(ctx, job.Key.ID, st.LatestRotation)
	s.metrics.set(job.Key.ID, f)
}

// rotationCounts counts the key's rotation records by reason and outcome.
// Records that can no longer change are read once.
func (s *Server) rotationCounts(ctx context.Context, keyID, latest string) map[rotationLabel]int {
	out := map[rotationLabel]int{}
	ids, err := s.opts.Store.Rotations(ctx, keyID)
	if err != nil {
		s.vaultError("list rotations", err)
		return out
	}
	s.mu.Lock()
	cache := s.rotations[keyID]
	if cache == nil {
		cache = map[string]rotationLabel{}
		s.rotations[keyID] = cache
	}
	s.mu.Unlock()
	for _, id := range ids {
		s.mu.Lock()
		l, ok := cache[id]
		s.mu.Unlock()
		if !ok {
			r, err := s.opts.Store.Rotation(ctx, keyID, id)
			if err != nil {
				s.vaultError("read rotation "+id, err)
				continue
			}
			reason := r.Reason
			if reason == "" {
				reason = "unknown"
			}
			l = rotationLabel{reason: reason, outcome: Outcome(r)}
			if id != latest && (r.Phase == records.PhaseDone || r.Phase == records.PhaseAborted) {
				s.mu.Lock()
				cache[id] = l
				s.mu.Unlock()
			}
		}
		out[l]++
	}
	return out
}

// Health is what /healthz answers.
type Health struct {
	Status    string       `json:"status"`
	Instance  string       `json:"instance"`
	Leader    bool         `json:"leader"`
	Lease     *LeaseRecord `json:"lease,omitempty"`
	LastRound time.Time    `json:"last_round,omitzero"`
	LastError string       `json:"last_error,omitempty"`
}

// Health reports the instance's state.
func (s *Server) Health() Health {
	h := Health{Status: "ok", Instance: s.id, Leader: s.leading()}
	if rec, _ := s.lease.current(); rec.Holder != "" {
		h.Lease = &rec
	}
	s.mu.Lock()
	h.LastRound, h.LastError = s.lastRound, s.lastErr
	s.mu.Unlock()
	return h
}

// Handler serves /metrics (Prometheus text) and /healthz (JSON, 200 while
// the daemon runs, whether or not it holds the lease), and, when the
// engine makes hand-off codes, the hand-off page (/handoff). Every instance
// serves the figures: the leader refreshes them from Vault after each
// audit round, the others once per audit interval.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{Registry: s.metrics.reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(s.Health())
	})
	if e := s.opts.Engine; e.Handoffs != nil && e.Handoffs.Records != nil {
		newHandoffPage(e, s.opts.Jobs, s.log).routes(mux) // handoff.go
	}
	return mux
}
