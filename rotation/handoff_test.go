package rotation_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/rekey-dev/rekey/internal/leakcheck"
	"github.com/rekey-dev/rekey/providers"
	"github.com/rekey-dev/rekey/rotation"
	"github.com/rekey-dev/rekey/secret"
	"github.com/rekey-dev/rekey/vaultstore"
)

type okChecker struct{}

func (okChecker) Check(context.Context, secret.Key) providers.Result {
	return providers.Result{Validity: providers.Valid, Reason: "test"}
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

// The Vault store and its token-less opener have what hand-offs need.
var (
	_ rotation.Wrapper        = (*vaultstore.Store)(nil)
	_ rotation.Wrapper        = (*vaultstore.Opener)(nil)
	_ rotation.HandoffRecords = (*vaultstore.Store)(nil)
)
