// Package slacktest checks a message the way Slack does before it posts
// it, so that the Slack servers of rekey's tests refuse what Slack would
// refuse, with the error code Slack answers.
//
// The Web API (chat.postMessage, chat.update) answers HTTP 200 with
// {"ok":false,"error":CODE}; an incoming webhook answers 400 with CODE as
// a plain-text body. The limits are those Slack documents for Block Kit
// (https://docs.slack.dev/reference/block-kit/blocks) and chat.postMessage
// (https://docs.slack.dev/reference/methods/chat.postMessage), plus the
// limit on all the text of a message's blocks, which Slack does not
// document but enforces with msg_blocks_too_long (observed between 12,000
// and 13,300 characters; the lower bound is taken here).
package slacktest

import (
	"encoding/json"
	"unicode/utf8"
)

// Slack's limits.
const (
	MaxBlocks          = 50    // blocks in one message (invalid_blocks)
	MaxHeader          = 150   // characters of a header block's text (invalid_blocks)
	MaxSection         = 3000  // characters of a section block's text (invalid_blocks)
	MaxContextElements = 10    // elements of a context block (invalid_blocks)
	MaxBlockText       = 12000 // characters of text in all the blocks (msg_blocks_too_long)
	MaxText            = 40000 // characters of the text field (msg_too_long)
)

// Error codes Slack answers for a message it refuses.
const (
	InvalidBlocksFormat = "invalid_blocks_format" // blocks is not a JSON array of objects
	InvalidBlocks       = "invalid_blocks"        // a block breaks a Block Kit rule
	MsgBlocksTooLong    = "msg_blocks_too_long"   // the blocks hold too much text in all
	MsgTooLong          = "msg_too_long"          // the text field is too long
	NoText              = "no_text"               // neither text nor blocks
)

type textObject struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

type block struct {
	Type     string        `json:"type"`
	Text     *textObject   `json:"text"`
	Fields   []*textObject `json:"fields"`
	Elements []*textObject `json:"elements"`
}

// Check returns "" when Slack would accept a message with this text and
// these blocks (the JSON array as sent; "" for none), or the code Slack
// answers when it refuses it.
func Check(text, blocks string) string {
	if utf8.RuneCountInString(text) > MaxText {
		return MsgTooLong
	}
	if blocks == "" || blocks == "null" {
		if text == "" {
			return NoText
		}
		return ""
	}
	var bs []*block
	if err := json.Unmarshal([]byte(blocks), &bs); err != nil {
		return InvalidBlocksFormat
	}
	if len(bs) == 0 && text == "" {
		return NoText
	}
	if len(bs) > MaxBlocks {
		return InvalidBlocks
	}
	total := 0
	count := func(t *textObject, max int, plainOnly bool) bool {
		if t == nil || t.Text == "" || (t.Type != "plain_text" && t.Type != "mrkdwn") || (plainOnly && t.Type != "plain_text") {
			return false
		}
		n := utf8.RuneCountInString(t.Text)
		total += n
		return n <= max
	}
	for _, b := range bs {
		if b == nil {
			return InvalidBlocks
		}
		switch b.Type {
		case "header":
			if !count(b.Text, MaxHeader, true) {
				return InvalidBlocks
			}
		case "section":
			if b.Text == nil && len(b.Fields) == 0 {
				return InvalidBlocks
			}
			if b.Text != nil && !count(b.Text, MaxSection, false) {
				return InvalidBlocks
			}
			if len(b.Fields) > 10 {
				return InvalidBlocks
			}
			for _, f := range b.Fields {
				if !count(f, 2000, false) {
					return InvalidBlocks
				}
			}
		case "context":
			if len(b.Elements) == 0 || len(b.Elements) > MaxContextElements {
				return InvalidBlocks
			}
			for _, e := range b.Elements {
				if !count(e, MaxSection, false) {
					return InvalidBlocks
				}
			}
		case "divider":
		default:
			// rekey sends no other kind; a test server need not know them.
			return InvalidBlocks
		}
	}
	if total > MaxBlockText {
		return MsgBlocksTooLong
	}
	return ""
}

// BlockText returns how many characters of text blocks hold in all, as
// Check counts them (0 for blocks that do not parse).
func BlockText(blocks string) int {
	var bs []*block
	if json.Unmarshal([]byte(blocks), &bs) != nil {
		return 0
	}
	n := 0
	add := func(t *textObject) {
		if t != nil {
			n += utf8.RuneCountInString(t.Text)
		}
	}
	for _, b := range bs {
		if b == nil {
			continue
		}
		add(b.Text)
		for _, f := range b.Fields {
			add(f)
		}
		for _, e := range b.Elements {
			add(e)
		}
	}
	return n
}
