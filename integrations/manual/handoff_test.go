package manual

import (
	"strings"
	"testing"
	"time"
)

// handoff: {ttl: ...} gives the engine the code's lifetime; a missing,
// out-of-range or misspelt one is a configuration error naming the field.
func TestHandoffSetting(t *testing.T) {
	ttl := func(integ any) time.Duration {
		return integ.(interface{ HandoffTTL() time.Duration }).HandoffTTL()
	}
	if got := ttl(mustBuild(t, nil)); got != 0 {
		t.Fatalf("no handoff: ttl %v", got)
	}
	if got := ttl(mustBuild(t, map[string]any{"handoff": map[string]any{"ttl": "24h"}})); got != 24*time.Hour {
		t.Fatalf("24h: ttl %v", got)
	}
	if got := ttl(mustBuild(t, map[string]any{"handoff": map[string]any{"ttl": "2d"},
		"verify": map[string]any{"exec": []any{"/bin/true"}}})); got != 48*time.Hour {
		t.Fatalf("2d with a probe: ttl %v", got)
	}
	for _, tc := range []struct {
		settings map[string]any
		want     string
	}{
		{map[string]any{"handoff": map[string]any{}}, "field handoff.ttl: required"},
		{map[string]any{"handoff": map[string]any{"ttl": "33d"}}, "field handoff.ttl: 33d: give between 1s and 32d"},
		{map[string]any{"handoff": map[string]any{"ttl": "500ms"}}, "field handoff.ttl"},
		{map[string]any{"handoff": map[string]any{"ttl": "24h", "tll": "1h"}}, "handoff.tll: unknown field"},
		{map[string]any{"handoff": map[string]any{"ttl": "a day"}}, "handoff.ttl"},
	} {
		_, err := build(t, "<@U0CALL>", tc.settings)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "integrations[0] (callhub)") {
			t.Errorf("%v: %v, want %q", tc.settings, err, tc.want)
		}
	}
}
