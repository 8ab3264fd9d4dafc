package all_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/rekey-dev/rekey/config"
	"github.com/rekey-dev/rekey/internal/ansim"
	"github.com/rekey-dev/rekey/internal/leakcheck"
	"github.com/rekey-dev/rekey/providers"
	"github.com/rekey-dev/rekey/providers/actionnetwork"
	"github.com/rekey-dev/rekey/providers/all"
	httpprovider "github.com/rekey-dev/rekey/providers/http"
	"github.com/rekey-dev/rekey/providers/none"
	"github.com/rekey-dev/rekey/secret"
)

func TestForBuildsEachProvider(t *testing.T) {
	for _, tc := range []struct {
		key  config.Key
		want any
	}{
		{config.Key{ID: "an", Provider: "actionnetwork"}, &actionnetwork.Checker{}},
		{config.Key{ID: "an2", Provider: "actionnetwork", ProviderURL: "http://127.0.0.1:1/api/v2/"}, &actionnetwork.Checker{}},
		{config.Key{ID: "h", Provider: "http", VerifyURL: "https://api.example.com/me", Header: "X-Api-Key"}, &httpprovider.Checker{}},
		{config.Key{ID: "n", Provider: "none"}, none.Checker{}},
	} {
		if err := all.Validate(tc.key); err != nil {
			t.Errorf("Validate(%s): %v", tc.key.ID, err)
		}
		c := all.For(tc.key, nil, nil)
		if got, want := fmt.Sprintf("%T", c), fmt.Sprintf("%T", tc.want); got != want {
			t.Errorf("For(%s) = %s, want %s", tc.key.ID, got, want)
		}
	}
}

func TestValidateRefusesWhatCannotWork(t *testing.T) {
	for _, tc := range []struct {
		key  config.Key
		want string
	}{
		{config.Key{ID: "x", Provider: "twilio"}, `providers: key x: unknown provider "twilio"`},
		{config.Key{ID: "x", Provider: ""}, `providers: key x: unknown provider ""`},
		{config.Key{ID: "h", Provider: "http", Header: "X-Api-Key"}, "providers: key h: http provider: verify_url is required"},
		{config.Key{ID: "h", Provider: "http", VerifyURL: "https://h/"}, "providers: key h: http provider: header"},
		{config.Key{ID: "an", Provider: "actionnetwork", ProviderURL: "actionnetwork.org/api/v2"}, "providers: key an: actionnetwork: provider_url"},
	} {
		err := all.Validate(tc.key)
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("Validate(%+v) = %v, want %q", tc.key, err, tc.want)
		}
		// For still gives a Checker; it answers unknown, never valid.
		r := all.For(tc.key, nil, nil).Check(t.Context(), secret.New("k-123456789"))
		if r.Validity != providers.Unknown || !strings.HasPrefix(r.Reason, tc.want) {
			t.Errorf("For(%+v).Check = %s %q", tc.key, r.Validity, r.Reason)
		}
	}
}

// End to end through For: provider_url points the checker at the simulator.
func TestForActionNetworkUsesProviderURL(t *testing.T) {
	sim := ansim.New()
	srv := httptest.NewServer(sim)
	defer srv.Close()
	good := sim.Generate()
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))

	c := all.For(config.Key{ID: "an", Provider: "actionnetwork", ProviderURL: srv.URL + "/api/v2/"}, srv.Client(), logger)
	bad := "00ff00ff00ff00ff00ff00ff00ff00ff"
	for key, want := range map[string]providers.Validity{good: providers.Valid, bad: providers.Invalid} {
		r := c.Check(t.Context(), secret.New(key))
		if r.Validity != want {
			t.Errorf("Check = %s %q, want %s", r.Validity, r.Reason, want)
		}
		leakcheck.Assert(t, "reason", []byte(r.Reason), good, bad)
		if sim.Count(key) != 1 {
			t.Errorf("simulator saw %d requests with the key, want 1", sim.Count(key))
		}
	}
	leakcheck.Assert(t, "log", logs.Bytes(), good, bad)
}
