package none_test

import (
	"context"
	"testing"

	"github.com/rekey-dev/rekey/providers"
	"github.com/rekey-dev/rekey/providers/none"
	"github.com/rekey-dev/rekey/secret"
)

func TestAlwaysValidWithoutChecking(t *testing.T) {
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	for _, key := range []secret.Key{secret.New("anything"), secret.New("another")} {
		for _, ctx := range []context.Context{t.Context(), cancelled} {
			r := none.New().Check(ctx, key)
			if r.Validity != providers.Valid || r.Reason != "provider none: no check" {
				t.Errorf("Check = %s %q", r.Validity, r.Reason)
			}
		}
	}
}
