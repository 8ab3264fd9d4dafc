package slacktest

import (
	"encoding/json"
	"strings"
	"testing"
)

func section(s string) map[string]any {
	return map[string]any{"type": "section", "text": map[string]any{"type": "mrkdwn", "text": s}}
}

func blocks(t *testing.T, bs ...map[string]any) string {
	t.Helper()
	b, err := json.Marshal(bs)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestCheck(t *testing.T) {
	header := func(s string) map[string]any {
		return map[string]any{"type": "header", "text": map[string]any{"type": "plain_text", "text": s}}
	}
	context := func(n int, s string) map[string]any {
		var els []any
		for range n {
			els = append(els, map[string]any{"type": "mrkdwn", "text": s})
		}
		return map[string]any{"type": "context", "elements": els}
	}
	many := make([]map[string]any, 51)
	for i := range many {
		many[i] = section("x")
	}
	var four []map[string]any
	for range 4 {
		four = append(four, section(strings.Repeat("é", 3000)))
	}
	tests := []struct {
		name, text, blocks, want string
	}{
		{"text only", "hello", "", ""},
		{"nothing", "", "", NoText},
		{"text too long", strings.Repeat("a", MaxText+1), "", MsgTooLong},
		{"text at the limit", strings.Repeat("a", MaxText), "", ""},
		{"blocks not JSON", "x", "[{", InvalidBlocksFormat},
		{"blocks not an array", "x", `{"type":"section"}`, InvalidBlocksFormat},
		{"fine", "x", blocks(t, header("h"), section("s"), context(2, "c")), ""},
		{"51 blocks", "x", blocks(t, many...), InvalidBlocks},
		{"50 blocks", "x", blocks(t, many[:50]...), ""},
		{"header too long", "x", blocks(t, header(strings.Repeat("h", 151))), InvalidBlocks},
		{"header in mrkdwn", "x", `[{"type":"header","text":{"type":"mrkdwn","text":"h"}}]`, InvalidBlocks},
		{"section too long", "x", blocks(t, section(strings.Repeat("s", 3001))), InvalidBlocks},
		{"section at the limit, counted in characters", "x", blocks(t, section(strings.Repeat("é", 3000))), ""},
		{"empty section", "x", blocks(t, section("")), InvalidBlocks},
		{"context of 11", "x", blocks(t, context(11, "c")), InvalidBlocks},
		{"unknown block", "x", `[{"type":"carousel"}]`, InvalidBlocks},
		{"12,000 characters in all", "x", blocks(t, four...), ""},
		{"12,001 characters in all", "x", blocks(t, append(four[:4:4], section("y"))...), MsgBlocksTooLong},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Check(tt.text, tt.blocks); got != tt.want {
				t.Errorf("Check = %q, want %q", got, tt.want)
			}
		})
	}
	if n := BlockText(blocks(t, header("abc"), section("dé"), context(2, "xy"))); n != 9 {
		t.Errorf("BlockText = %d, want 9", n)
	}
}
