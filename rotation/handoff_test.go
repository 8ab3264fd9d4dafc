package rotation_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"

	"github.com/rekey-dev/rekey/config"
	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/integrations"
	"github.com/rekey-dev/rekey/integrations/manual"
	"github.com/rekey-dev/rekey/internal/leakcheck"
	"github.com/rekey-dev/rekey/internal/vaulttest"
	"github.com/rekey-dev/rekey/notifiers"
	"github.com/rekey-dev/rekey/providers"
	"github.com/rekey-dev/rekey/records"
	"github.com/rekey-dev/rekey/rotation"
	"github.com/rekey-dev/rekey/secret"
	"github.com/rekey-dev/rekey/state"
	"github.com/rekey-dev/rekey/vaultstore"
)

// courier records deliveries; fail, when set, refuses them.
type courier struct {
	mu   sync.Mutex
	got  []rotation.Delivery
	fail error
}

func (c *courier) Deliver(_ context.Context, d rotation.Delivery) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fail != nil {
		return "", c.fail
	}
	c.got = append(c.got, d)
	return "slack-dm", nil
}

func (c *courier) deliveries() []rotation.Delivery {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]rotation.Delivery(nil), c.got...)
}

// events records what the team was told, as JSON.
type events struct {
	mu  sync.Mutex
	evs []notifiers.Event
}

func (n *events) Notify(_ context.Context, ev notifiers.Event) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.evs = append(n.evs, ev)
	return nil
}

func (n *events) all() []notifiers.Event {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]notifiers.Event(nil), n.evs...)
}

func (n *events) blob() []byte {
	b, _ := json.Marshal(n.all())
	return b
}

type okChecker struct{}

func (okChecker) Check(context.Context, secret.Key) providers.Result {
	return providers.Result{Validity: providers.Valid, Reason: "test"}
}

// handoffWorld is a key in a real Vault with a manual integration whose
// owner gets a hand-off code, an engine with a recording courier and
// notifier, and a redactor and log that see everything.
type handoffWorld struct {
	env      *vaulttest.Env
	store    *vaultstore.Store
	eng      *rotation.Engine
	job      rotation.Job
	courier  *courier
	events   *events
	redactor *secret.Redactor
	logs     *strings.Builder
	old, key secret.Key
}

func newHandoffWorld(t *testing.T, ttl string) *handoffWorld {
	t.Helper()
	ctx := context.Background()
	w := &handoffWorld{
		old: secret.New("an-old-handoff-0123456789abcdef01"), key: secret.New("an-new-handoff-fedcba9876543210fe"),
		env: vaulttest.New(t), courier: &courier{}, events: &events{}, redactor: secret.NewRedactor(), logs: &strings.Builder{},
	}
	w.store = vaultstore.New(w.env.Client, w.env.Mount, "rekey")
	if _, err := w.store.WriteKey(ctx, "actionnetwork/main", w.old, 0, nil); err != nil {
		t.Fatal(err)
	}
	in := config.Integration{ID: "callhub", Key: "an", Type: "manual", Owner: "<@U0CALLHUB>",
		Instructions: "CallHub → Settings → Integrations → Action Network → paste the key",
		Settings:     map[string]any{"handoff": map[string]any{"ttl": ttl}}}
	cfg := &config.Config{File: "rekey.yaml", Integrations: []config.Integration{in}}
	m, err := manual.New(integrations.Host{Config: cfg}, in)
	if err != nil {
		t.Fatal(err)
	}
	w.job = rotation.Job{Key: config.Key{ID: "an", VaultPath: "actionnetwork/main", Provider: "none", Owner: "<@U0KEYOWNER>"},
		Checker: okChecker{}, Reason: "manual", Targets: []rotation.Target{{Config: in, Integration: m}}}
	w.eng = w.engine()
	return w
}

// engine is a new engine over the same Vault, records, courier and
// notifier: each command of the CLI builds its own.
func (w *handoffWorld) engine() *rotation.Engine {
	var mu sync.Mutex
	log := slog.New(w.redactor.Handler(slog.NewTextHandler(lockedWriter{&mu, w.logs}, &slog.HandlerOptions{Level: slog.LevelDebug})))
	return &rotation.Engine{
		Store: w.store, Notifier: w.events, Logger: log, Redact: w.redactor.Redact,
		Handoffs: &rotation.Handoffs{Vault: w.store, Records: w.store, Courier: w.courier, PublicURL: "https://rekey.example.org/",
			Learn: func(s string) { w.redactor.Add(s) }},
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *strings.Builder
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (w *handoffWorld) status(t *testing.T) rotation.HandoffStatus {
	t.Helper()
	hs := w.engine().HandoffStatuses(context.Background(), w.job)
	if len(hs) != 1 {
		t.Fatalf("HandoffStatuses = %+v, want one", hs)
	}
	return hs[0]
}

// noLeaks searches everything rekey said, logged and recorded for the keys
// and the codes.
func (w *handoffWorld) noLeaks(t *testing.T) {
	t.Helper()
	secrets := []string{w.old.Reveal(), w.key.Reveal()}
	for _, d := range w.courier.deliveries() {
		secrets = append(secrets, d.Code.Reveal())
	}
	leakcheck.Assert(t, "events", w.events.blob(), secrets...)
	leakcheck.Assert(t, "log", []byte(w.logs.String()), secrets...)
	leakcheck.Assert(t, "rekey's records", w.env.Dump(t, "rekey/"), secrets...)
}

// A rotation gives the owner alone a code; the code opens the new key
// once; a second opening is alerted; the states say so; confirming by the
// code makes the integration current. No code is said, logged or
// recorded anywhere.
func TestHandoffOpensOnceAndAlertsTheSecond(t *testing.T) {
	ctx := context.Background()
	w := newHandoffWorld(t, "10m")
	out, err := w.eng.Rotate(ctx, w.job, w.key)
	if err != nil {
		t.Fatal(err)
	}
	res := out.Results[0]
	if res.State != state.Pending || !strings.Contains(res.Reason, "hand-off code was sent to <@U0CALLHUB> by Slack direct message") {
		t.Fatalf("callhub: %s: %s", res.State, res.Reason)
	}
	ds := w.courier.deliveries()
	if len(ds) != 1 {
		t.Fatalf("%d deliveries, want 1", len(ds))
	}
	d := ds[0]
	if d.Owner != "<@U0CALLHUB>" || d.Integration != "callhub" || d.Fingerprint != w.key.Fingerprint() ||
		d.Page != "https://rekey.example.org/handoff#"+d.Code.Reveal() || !strings.HasPrefix(d.Code.Reveal(), "hvs.") ||
		time.Until(d.Expires) < 9*time.Minute || time.Until(d.Expires) > 11*time.Minute {
		t.Fatalf("delivery %+v (code %d bytes)", d, len(d.Code.Reveal()))
	}
	if hs := w.status(t); hs.State != records.HandoffUnopened || hs.Delivery != "slack-dm" || hs.Sent == nil {
		t.Fatalf("before opening: %+v", hs)
	}

	// The owner opens it.
	o, err := w.engine().Reveal(ctx, d.Code, "reveal")
	if err != nil {
		t.Fatal(err)
	}
	if !o.Key.Equal(w.key) || o.Integration != "callhub" || o.KeyID != "an" || !strings.HasPrefix(o.Instructions, "CallHub →") {
		t.Fatalf("opened %+v", o)
	}
	if hs := w.status(t); hs.State != records.HandoffOpened || hs.OpenedVia != "reveal" || hs.Opened == nil {
		t.Fatalf("after opening: %+v", hs)
	}
	if n := len(w.events.all()); n == 0 {
		t.Fatal("no events")
	}
	before := len(w.events.all())

	// Someone tries again: refused, alerted, recorded.
	_, err = w.engine().Reveal(ctx, d.Code, "page")
	var ce *rotation.CodeError
	if !errors.As(err, &ce) || ce.Why != rotation.CodeUsed || !ce.Alerted {
		t.Fatalf("second opening: %v, want CodeUsed, alerted", err)
	}
	alerts := w.events.all()[before:]
	if len(alerts) != 1 || !alerts[0].Urgent || alerts[0].Kind != notifiers.LeakAlert ||
		!strings.Contains(alerts[0].Title, "callhub") || alerts[0].Fingerprint != w.key.Fingerprint() || !strings.Contains(alerts[0].Text, w.key.Fingerprint()) {
		t.Fatalf("alerts after the second opening: %+v", alerts)
	}
	if hs := w.status(t); hs.State != records.HandoffTriedTwice || hs.Tries != 1 {
		t.Fatalf("after the second opening: %+v", hs)
	}

	// Resume makes no new code for an opened one.
	if _, err := w.engine().Resume(ctx, w.job); err != nil {
		t.Fatal(err)
	}
	if n := len(w.courier.deliveries()); n != 1 {
		t.Fatalf("resume made %d more codes for an opened one", n-1)
	}

	// "I have pasted it", by the code's holder.
	r, err := w.engine().ConfirmByCode(ctx, []rotation.Job{w.job}, d.Code)
	if err != nil || r.State != state.Current {
		t.Fatalf("ConfirmByCode = %+v, %v", r, err)
	}
	if hs := w.status(t); hs.Confirmed == nil {
		t.Fatalf("confirmation not recorded: %+v", hs)
	}
	w.noLeaks(t)
}

// A code past its ttl opens nothing and says it expired; resume then
// makes a new one.
func TestHandoffExpires(t *testing.T) {
	ctx := context.Background()
	w := newHandoffWorld(t, "1s")
	if _, err := w.eng.Rotate(ctx, w.job, w.key); err != nil {
		t.Fatal(err)
	}
	d := w.courier.deliveries()[0]
	time.Sleep(2 * time.Second)
	_, err := w.engine().Reveal(ctx, d.Code, "reveal")
	var ce *rotation.CodeError
	if !errors.As(err, &ce) || ce.Why != rotation.CodeExpired || !strings.Contains(err.Error(), "expired") || ce.Alerted {
		t.Fatalf("Reveal after the ttl: %v, want CodeExpired", err)
	}
	if hs := w.status(t); hs.State != records.HandoffExpired {
		t.Fatalf("status: %+v", hs)
	}
	if _, err := w.engine().Resume(ctx, w.job); err != nil {
		t.Fatal(err)
	}
	ds := w.courier.deliveries()
	if len(ds) != 2 || ds[1].Code.Reveal() == d.Code.Reveal() {
		t.Fatalf("resume after expiry: %d deliveries", len(ds))
	}
	if hs := w.status(t); hs.State != records.HandoffUnopened {
		t.Fatalf("status after resume: %+v", hs)
	}
	// Resume again: the new code is still unopened, so none is made.
	if _, err := w.engine().Resume(ctx, w.job); err != nil {
		t.Fatal(err)
	}
	if n := len(w.courier.deliveries()); n != 2 {
		t.Fatalf("resume with an unopened code made another: %d deliveries", n)
	}
	w.noLeaks(t)
}

// A code that cannot be delivered does not fail the rotation: the key is
// stored, the integration stays pending saying why, the code is destroyed.
func TestHandoffNotDelivered(t *testing.T) {
	ctx := context.Background()
	w := newHandoffWorld(t, "10m")
	var dm []rotation.Delivery
	w.courier.fail = fmt.Errorf("slack: open a direct message with U0CALLHUB: missing_scope: %w", failure.ErrUnauthorized)
	w.eng.Handoffs.Courier = courierFunc(func(d rotation.Delivery) (string, error) {
		dm = append(dm, d)
		return w.courier.Deliver(ctx, d)
	})
	out, err := w.eng.Rotate(ctx, w.job, w.key)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := w.store.ReadKey(ctx, "actionnetwork/main"); !v.Key.Equal(w.key) {
		t.Fatal("the key was not stored")
	}
	res := out.Results[0]
	if res.State != state.Pending || !strings.Contains(res.Reason, "could not be delivered") || !strings.Contains(res.Reason, "missing_scope") {
		t.Fatalf("callhub: %s: %s", res.State, res.Reason)
	}
	if len(dm) != 1 {
		t.Fatalf("%d delivery attempts", len(dm))
	}
	if _, err := w.store.Unwrap(ctx, dm[0].Code.Reveal()); !errors.Is(err, failure.ErrNotFound) {
		t.Fatalf("the undelivered code still opens: %v", err)
	}
	if hs := w.status(t); hs.State != records.HandoffNotSent {
		t.Fatalf("status: %+v", hs)
	}
	w.courier.fail = nil
	if _, err := w.engine().Resume(ctx, w.job); err != nil {
		t.Fatal(err)
	}
	if len(w.courier.deliveries()) != 1 {
		t.Fatal("resume did not deliver a new code")
	}
	leakcheck.Assert(t, "events", w.events.blob(), dm[0].Code.Reveal())
	w.noLeaks(t)
}

type courierFunc func(rotation.Delivery) (string, error)

func (f courierFunc) Deliver(_ context.Context, d rotation.Delivery) (string, error) { return f(d) }

// Vault refusing to wrap (a token without sys/wrapping/wrap) makes no
// code and fails nothing.
func TestHandoffWrapRefused(t *testing.T) {
	ctx := context.Background()
	w := newHandoffWorld(t, "10m")
	m := w.env.Mount
	policy := fmt.Sprintf(`path "%[1]s/*" { capabilities = ["create", "read", "update", "patch", "list"] }`, m)
	if err := w.env.Client.Sys().PutPolicy("nowrap-"+m, policy); err != nil {
		t.Fatal(err)
	}
	sec, err := w.env.Client.Auth().Token().Create(&vault.TokenCreateRequest{NoDefaultPolicy: true, Policies: []string{"nowrap-" + m}, TTL: "1h"})
	if err != nil {
		t.Fatal(err)
	}
	w.store = vaultstore.New(vaulttest.NewClient(t, w.env.Addr, sec.Auth.ClientToken), m, "rekey")
	w.eng = w.engine()
	out, err := w.eng.Rotate(ctx, w.job, w.key)
	if err != nil {
		t.Fatal(err)
	}
	if res := out.Results[0]; res.State != state.Pending || !strings.Contains(res.Reason, "Vault did not wrap the key") {
		t.Fatalf("callhub: %s: %s", res.State, res.Reason)
	}
	if len(w.courier.deliveries()) != 0 {
		t.Fatal("a code was delivered")
	}
	w.noLeaks(t)
}

// A code prints, logs and marshals as a placeholder in every form.
func TestCodeNeverPrints(t *testing.T) {
	c := rotation.NewCode(" hvs.CAESIthisisacodevalue0123456789 \n")
	if c.Reveal() != "hvs.CAESIthisisacodevalue0123456789" {
		t.Fatal("NewCode does not trim")
	}
	var logs strings.Builder
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("x", "code", c)
	j, _ := json.Marshal(map[string]any{"c": c})
	text := fmt.Sprintf("%v %s %q %x %X %+v %#v %d", c, c, c, c, c, c, c, c) + logs.String() + string(j)
	leakcheck.Assert(t, "formatted", []byte(text), c.Reveal())
	if !strings.Contains(text, "<hand-off code>") {
		t.Fatalf("no placeholder in %q", text)
	}
}
