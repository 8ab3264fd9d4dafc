package slack

import (
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"

	slackapi "github.com/slack-go/slack"

	"github.com/rekey-dev/rekey/notifiers"
	"github.com/rekey-dev/rekey/state"
)

// Block Kit limits (https://docs.slack.dev/reference/block-kit/blocks).
const (
	maxHeader     = 150  // characters in a header block's text
	maxSection    = 3000 // characters in a section block's text
	maxBlocks     = 50   // blocks in one message
	maxFallback   = 3500 // characters of the plain-text fallback we send
	maxIntSection = 40   // integration sections, leaving room for the rest
)

// message is one Slack message: Block Kit blocks and the plain-text
// fallback that notifications, screen readers and old clients show.
type message struct {
	text   string
	blocks []slackapi.Block
}

// render builds the message for ev. update is true for the chat.update of a
// rotation's top message: editing a message notifies nobody, so the
// <!channel> mention is left out.
func render(ev notifiers.Event, update bool) message {
	var (
		blocks []slackapi.Block
		top    []string // fallback lines before the integrations
		bottom []string // fallback lines after them
	)
	mrkdwn := func(s string) *slackapi.TextBlockObject {
		return slackapi.NewTextBlockObject(slackapi.MarkdownType, s, false, false)
	}
	section := func(s string) {
		blocks = append(blocks, slackapi.NewSectionBlock(mrkdwn(s), nil, nil))
	}

	title := ev.Title
	if title == "" {
		title = string(ev.Kind) + " " + ev.KeyID
	}
	if ev.Urgent {
		title = ":rotating_light: " + title
	}
	blocks = append(blocks, slackapi.NewHeaderBlock(
		slackapi.NewTextBlockObject(slackapi.PlainTextType, truncate(title, maxHeader), true, false)))
	head := escape(title)
	if ev.Urgent && !update {
		head = "<!channel> " + head
	}
	top = append(top, head)

	intro := escape(ev.Text)
	if ev.Urgent && !update {
		intro = strings.TrimSpace("<!channel> " + intro)
	}
	if intro != "" {
		section(truncate(intro, maxSection))
		if ev.Text != "" {
			top = append(top, escape(ev.Text))
		}
	}

	if ev.Owner != "" || ev.Instructions != "" {
		var b strings.Builder
		if ev.Owner != "" {
			fmt.Fprintf(&b, "*Owner:* %s", mention(ev.Owner))
		}
		if ev.Instructions != "" {
			if b.Len() > 0 {
				b.WriteString("\n")
			}
			fmt.Fprintf(&b, "*What to do:* %s", escape(ev.Instructions))
		}
		section(truncate(b.String(), maxSection))
		top = append(top, b.String())
	}

	// One line per integration, packed into as few sections as fit.
	lines := make([]string, len(ev.Integrations))
	for i, in := range ev.Integrations {
		lines[i] = truncate(integrationLine(in), maxSection)
	}
	var chunk strings.Builder
	nsec := 0
	for i, line := range lines {
		if chunk.Len() > 0 && chunk.Len()+1+len(line) > maxSection {
			section(chunk.String())
			nsec++
			chunk.Reset()
		}
		if nsec == maxIntSection {
			chunk.WriteString(fmt.Sprintf("… and %d more integrations", len(lines)-i))
			break
		}
		if chunk.Len() > 0 {
			chunk.WriteString("\n")
		}
		chunk.WriteString(line)
	}
	if chunk.Len() > 0 {
		section(chunk.String())
	}

	if owners := attentionOwners(ev.Integrations); len(owners) > 0 {
		s := "*Needs action from:* " + strings.Join(owners, " ")
		section(truncate(s, maxSection))
		bottom = append(bottom, s)
	}

	var ctx []string
	if ev.KeyID != "" {
		ctx = append(ctx, "Key `"+escape(ev.KeyID)+"`")
	}
	if ev.RotationID != "" {
		ctx = append(ctx, "Rotation `"+escape(ev.RotationID)+"`")
	}
	if ev.Reason != "" {
		ctx = append(ctx, "Reason: "+escape(ev.Reason))
	}
	if ev.Fingerprint != "" {
		fp := "Fingerprint `" + escape(ev.Fingerprint) + "`"
		if ev.OldFingerprint != "" {
			fp += " (replaces `" + escape(ev.OldFingerprint) + "`)"
		}
		ctx = append(ctx, fp)
	} else if ev.OldFingerprint != "" {
		ctx = append(ctx, "Previous fingerprint `"+escape(ev.OldFingerprint)+"`")
	}
	if len(ctx) > 0 {
		s := truncate(strings.Join(ctx, " · "), maxSection)
		blocks = append(blocks, slackapi.NewContextBlock("", mrkdwn(s)))
		bottom = append(bottom, s)
	}

	if len(blocks) > maxBlocks {
		blocks = blocks[:maxBlocks]
	}
	return message{text: fallback(top, lines, ev.Integrations, bottom), blocks: blocks}
}

// fallback joins the plain-text version of the message. When it is too
// long, the integrations that are fine are left out first, then the rest is
// shortened, so that the mentions of the people who must act (in bottom)
// always reach the notification.
func fallback(top, lines []string, ins []notifiers.Integration, bottom []string) string {
	count := func(parts []string) int {
		n := 0
		for _, p := range parts {
			n += utf8.RuneCountInString(p) + 1
		}
		return n
	}
	top = append([]string(nil), top...)
	for i := range top {
		top[i] = truncate(top[i], maxFallback/4)
	}
	join := func(mid []string) string {
		all := append(append(append([]string{}, top...), mid...), bottom...)
		return strings.Join(all, "\n")
	}
	if count(top)+count(lines)+count(bottom) <= maxFallback {
		return join(lines)
	}
	var needy []string
	for i, in := range ins {
		if in.State.NeedsAction() {
			needy = append(needy, lines[i])
		}
	}
	if n := len(lines) - len(needy); n > 0 {
		needy = append(needy, fmt.Sprintf("(and %d more integrations)", n))
	}
	if count(top)+count(needy)+count(bottom) <= maxFallback {
		return join(needy)
	}
	if room := maxFallback - count(top) - count(bottom) - 1; room > 20 {
		return join([]string{truncate(strings.Join(needy, "\n"), room)})
	}
	tail := truncate(strings.Join(bottom, "\n"), maxFallback/2)
	head := truncate(strings.Join(top, "\n"), maxFallback-utf8.RuneCountInString(tail)-1)
	return head + "\n" + tail
}

// integrationLine is one integration's line: an emoji for its state, its id
// and type, the state (with the previous one when it changed), the reason,
// and its owner when the owner must act.
func integrationLine(in notifiers.Integration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s *%s*", stateEmoji(in.State), escape(in.ID))
	if in.Type != "" {
		fmt.Fprintf(&b, " (%s)", escape(in.Type))
	}
	b.WriteString(": ")
	if in.Previous != "" && in.Previous != in.State {
		fmt.Fprintf(&b, "%s → ", in.Previous)
	}
	b.WriteString(string(orUnknown(in.State)))
	if in.Reason != "" {
		fmt.Fprintf(&b, " — %s", escape(in.Reason))
	}
	if owner := mention(in.Owner); in.State.NeedsAction() && owner != "" && !strings.Contains(b.String(), owner) {
		fmt.Fprintf(&b, " %s", owner)
	}
	return b.String()
}

func orUnknown(s state.State) state.State {
	if s == "" {
		return state.Unknown
	}
	return s
}

func stateEmoji(s state.State) string {
	switch s {
	case state.Current:
		return ":white_check_mark:"
	case state.Failing:
		return ":x:"
	case state.Pending:
		return ":hourglass_flowing_sand:"
	case state.Stale:
		return ":warning:"
	case state.Compromised:
		return ":rotating_light:"
	case state.Applying, state.Verifying:
		return ":arrows_counterclockwise:"
	case state.Waiting:
		return ":white_circle:"
	default:
		return ":grey_question:"
	}
}

// attentionOwners lists, once each and in order, the owners of the
// integrations that need them.
func attentionOwners(ins []notifiers.Integration) []string {
	var out []string
	seen := map[string]bool{}
	for _, in := range ins {
		if !in.State.NeedsAction() || in.Owner == "" || seen[in.Owner] {
			continue
		}
		seen[in.Owner] = true
		out = append(out, mention(in.Owner))
	}
	return out
}

// mentionRE matches owner strings already in Slack's mention syntax: one or
// more of <@U…>, <!subteam^S…>, <#C…> or <!here>, separated by spaces or
// commas.
var mentionRE = regexp.MustCompile(`^\s*(<[@#!][A-Za-z0-9^|._-]+>[\s,]*)+$`)

// mention returns owner as Slack should receive it: mention syntax is sent
// as it is, anything else is escaped so it is shown, not interpreted.
func mention(owner string) string {
	if mentionRE.MatchString(owner) {
		return strings.TrimSpace(owner)
	}
	return escape(strings.TrimSpace(owner))
}

var entities = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

// personRE matches the mentions free text may carry to Slack: users
// (<@U…>), channels (<#C…>) and user groups (<!subteam^S…>), as rekey puts
// owners into reasons ("waiting for <@U0CALL>"). <!channel>, <!here> and
// links are not among them.
var personRE = regexp.MustCompile(`<(@[UW][A-Z0-9]+|#C[A-Z0-9]+|!subteam\^[A-Z0-9]+)(\|[^<>&]*)?>`)

// escape makes s safe inside Slack mrkdwn: the three characters Slack uses
// for its own markup are replaced by entities, except in the mentions
// personRE matches.
func escape(s string) string {
	var b strings.Builder
	last := 0
	for _, m := range personRE.FindAllStringIndex(s, -1) {
		b.WriteString(entities.Replace(s[last:m[0]]))
		b.WriteString(s[m[0]:m[1]])
		last = m[1]
	}
	b.WriteString(entities.Replace(s[last:]))
	return b.String()
}

// truncate shortens s to at most n characters (runes), ending with "…".
func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}
