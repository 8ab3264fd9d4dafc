package slack

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"

	slackapi "github.com/slack-go/slack"

	"github.com/rekey-dev/rekey/notifiers"
	"github.com/rekey-dev/rekey/state"
)

// Slack's limits (https://docs.slack.dev/reference/block-kit/blocks and
// chat.postMessage), and the share of them each part of a message gets.
const (
	maxHeader    = 150   // characters in a header block's text
	maxSection   = 3000  // characters in a section block's text
	maxBlocks    = 50    // blocks in one message
	maxBlockText = 11000 // characters of text in all the blocks: Slack refuses near 12,000 (msg_blocks_too_long)
	maxFallback  = 3500  // characters of the plain-text fallback (Slack refuses over 40,000: msg_too_long)
	maxShort     = 1000  // characters of the last, shortest form of a message Slack refused

	maxIntro   = 2500 // the event's text
	maxPerson  = 1500 // the owner and what to do
	maxOwners  = 1500 // "Needs action from:"
	maxSummary = 4000 // the first integrations not current, when not all fit
	maxFirst   = 25   // lines of them
	maxContext = 500  // key, rotation, reason, fingerprints
	maxDetails = 30   // messages detailing one event's integrations
)

// message is one Slack message: Block Kit blocks and the plain-text
// fallback that notifications, screen readers and old clients show.
type message struct {
	text   string
	blocks []slackapi.Block
}

// shorter returns the forms message is sent in when Slack refuses it for
// its size or its blocks: its plain-text fallback alone, then that cut to
// maxShort characters; a form that would be the same message again is
// left out.
func (m message) shorter() []message {
	var out []message
	if len(m.blocks) > 0 {
		out = append(out, message{text: m.text})
	}
	if cut := truncate(m.text, maxShort); cut != m.text {
		out = append(out, message{text: cut})
	}
	return out
}

// post is what one event becomes: its message and, when its integrations
// do not all fit in one, the messages that detail the rest (replies in
// its thread with a bot token, messages of their own with a webhook).
type post struct {
	main    message
	details []message
}

// builder adds blocks to a message, counting their text.
type builder struct {
	blocks []slackapi.Block
	chars  int
}

func (b *builder) header(s string) {
	s = truncate(s, maxHeader)
	b.blocks = append(b.blocks, slackapi.NewHeaderBlock(slackapi.NewTextBlockObject(slackapi.PlainTextType, s, true, false)))
	b.chars += utf8.RuneCountInString(s)
}

func (b *builder) section(s string) {
	if s == "" {
		return
	}
	s = truncate(s, maxSection)
	b.blocks = append(b.blocks, slackapi.NewSectionBlock(mrkdwn(s), nil, nil))
	b.chars += utf8.RuneCountInString(s)
}

func (b *builder) context(s string) {
	if s == "" {
		return
	}
	s = truncate(s, maxSection)
	b.blocks = append(b.blocks, slackapi.NewContextBlock("", mrkdwn(s)))
	b.chars += utf8.RuneCountInString(s)
}

// lines adds lines packed into as few sections as they fit in.
func (b *builder) lines(lines []string) {
	var chunk strings.Builder
	var p packing
	for _, l := range lines {
		l = truncate(l, maxSection)
		joined := p.open > 0
		if p.add(l) {
			b.section(chunk.String())
			chunk.Reset()
		} else if joined {
			chunk.WriteString("\n")
		}
		chunk.WriteString(l)
	}
	b.section(chunk.String())
}

// packing is how builder.lines packs lines into sections, counted line
// by line: each section holds as many whole lines, one per row, as fit in
// maxSection characters.
type packing struct {
	chars, sections int // of the sections filled
	open            int // characters of the section being filled
}

// add packs line l (cut to maxSection), and reports whether it starts a
// new section after a filled one.
func (p *packing) add(l string) (next bool) {
	ln := min(utf8.RuneCountInString(l), maxSection)
	if p.open > 0 && p.open+1+ln > maxSection {
		p.chars += p.open
		p.sections++
		p.open, next = 0, true
	}
	if p.open > 0 {
		p.open++
	}
	p.open += ln
	return next
}

// size is the characters and sections the lines packed so far take.
func (p packing) size() (chars, sections int) {
	if p.open > 0 {
		return p.chars + p.open, p.sections + 1
	}
	return p.chars, p.sections
}

// packedSize is the characters and sections lines take when packed.
func packedSize(lines []string) (chars, sections int) {
	var p packing
	for _, l := range lines {
		p.add(l)
	}
	return p.size()
}

func mrkdwn(s string) *slackapi.TextBlockObject {
	return slackapi.NewTextBlockObject(slackapi.MarkdownType, s, false, false)
}

// render builds the messages for ev, as replies in a thread. update is
// true for the chat.update of a rotation's top message: editing a message
// notifies nobody, so the <!channel> mention is left out, and the details
// are already in the thread.
func render(ev notifiers.Event, update bool) post { return renderAs(ev, update, true) }

// renderAs is render; threaded is false for an incoming webhook, where
// the details are messages of their own.
func renderAs(ev notifiers.Event, update, threaded bool) post {
	var (
		b      builder
		top    []string // fallback lines before the integrations
		bottom []string // fallback lines after them
	)

	title := ev.Title
	if title == "" {
		title = string(ev.Kind) + " " + ev.KeyID
	}
	if ev.Urgent {
		title = ":rotating_light: " + title
	}
	b.header(title)
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
		b.section(truncate(intro, maxIntro))
		if ev.Text != "" {
			top = append(top, escape(ev.Text))
		}
	}

	if ev.Owner != "" || ev.Instructions != "" {
		var p strings.Builder
		if ev.Owner != "" {
			fmt.Fprintf(&p, "*Owner:* %s", mention(ev.Owner))
		}
		if ev.Instructions != "" {
			if p.Len() > 0 {
				p.WriteString("\n")
			}
			fmt.Fprintf(&p, "*What to do:* %s", escape(ev.Instructions))
		}
		b.section(truncate(p.String(), maxPerson))
		top = append(top, p.String())
	}

	lines := make([]string, len(ev.Integrations))
	for i, in := range ev.Integrations {
		lines[i] = truncate(integrationLine(in), maxSection)
	}

	owners := ""
	if all := attentionOwners(ev.Integrations); len(all) > 0 {
		s := "*Needs action from:* " + strings.Join(all, " ")
		bottom = append(bottom, s)
		owners = fitList("*Needs action from:* ", all, maxOwners, "and %d more, named with their integrations")
	}
	context := truncate(contextLine(ev), maxContext)
	if context != "" {
		bottom = append(bottom, context)
	}

	// The integrations take what is left. When they do not all fit,
	// the message says how many are in each state and lists the first
	// that are not current; the rest go into detail messages.
	room := maxBlockText - b.chars - utf8.RuneCountInString(owners) - utf8.RuneCountInString(context)
	blocksLeft := maxBlocks - len(b.blocks) - 2
	var rest []string
	if chars, secs := packedSize(lines); chars <= room && secs <= blocksLeft {
		b.lines(lines)
	} else {
		var pending []string // not current, in order
		for i, in := range ev.Integrations {
			if in.State != state.Current {
				pending = append(pending, lines[i])
			}
		}
		b.section(counts(ev.Integrations))
		room = min(maxSummary, maxBlockText-b.chars-utf8.RuneCountInString(owners)-utf8.RuneCountInString(context)-200)
		shown := 0
		var p packing
		for shown < len(pending) && shown < maxFirst {
			next := p
			next.add(pending[shown])
			if chars, secs := next.size(); chars > room || secs > blocksLeft-2 {
				break
			}
			p = next
			shown++
		}
		b.lines(pending[:shown])
		rest = pending[shown:]
		if len(rest) > 0 {
			where := "listed in the replies to this message"
			if !threaded {
				where = "listed in the messages that follow"
			}
			b.section(fmt.Sprintf("… and %d more not current, %s", len(rest), where))
		}
	}
	b.section(owners)
	b.context(context)

	p := post{main: message{text: fallback(top, lines, ev.Integrations, bottom), blocks: b.blocks}}
	if !update {
		p.details = details(ev, title, rest, threaded)
	}
	return p
}

// details packs lines into messages within Slack's limits, at most
// maxDetails of them; the last says how many were left out, if any.
func details(ev notifiers.Event, title string, lines []string, threaded bool) []message {
	if len(lines) == 0 {
		return nil
	}
	const reserve = 700 // the context line, and the note of what was left out
	var chunks [][]string
	for start := 0; start < len(lines); {
		end := start + 1
		var p packing
		p.add(lines[start])
		for end < len(lines) {
			next := p
			next.add(lines[end])
			if chars, secs := next.size(); chars > maxBlockText-reserve || secs > maxBlocks-3 {
				break
			}
			p = next
			end++
		}
		chunks = append(chunks, lines[start:end])
		start = end
	}
	left := 0
	if len(chunks) > maxDetails {
		for _, c := range chunks[maxDetails:] {
			left += len(c)
		}
		chunks = chunks[:maxDetails]
	}
	what := "Continued"
	if !threaded {
		what = "Continued from " + escape(truncate(title, 200))
	}
	var out []message
	for i, c := range chunks {
		var b builder
		b.lines(c)
		tail := ""
		if i == len(chunks)-1 && left > 0 {
			tail = fmt.Sprintf("… and %d more not current, not listed here: `rekey audit %s` lists them all", left, escape(ev.KeyID))
			b.section(tail)
		}
		ctx := fmt.Sprintf("%s (part %d of %d)", what, i+1, len(chunks))
		if k := contextLine(ev); k != "" {
			ctx += " · " + k
		}
		b.context(truncate(ctx, maxContext))
		text := truncate(ctx+"\n"+strings.Join(c, "\n"), maxFallback-utf8.RuneCountInString(tail)-1)
		if tail != "" {
			text += "\n" + tail
		}
		out = append(out, message{text: text, blocks: b.blocks})
	}
	return out
}

// counts says how many integrations are in each state, worst first:
// "*1000 integrations:* 800 failing, 100 pending, 100 current".
func counts(ins []notifiers.Integration) string {
	n := map[state.State]int{}
	for _, in := range ins {
		n[orUnknown(in.State)]++
	}
	order := []state.State{state.Compromised, state.Failing, state.Stale, state.Pending, state.Unknown,
		state.Waiting, state.Applying, state.Verifying, state.Current}
	var parts []string
	for _, s := range order {
		if n[s] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n[s], s))
			delete(n, s)
		}
	}
	for _, s := range slices.Sorted(maps.Keys(n)) { // states this list does not know yet
		parts = append(parts, fmt.Sprintf("%d %s", n[s], escape(string(s))))
	}
	return fmt.Sprintf("*%d integrations:* %s", len(ins), strings.Join(parts, ", "))
}

// fitList joins prefix and items, leaving out the items that would make
// it longer than max characters and saying how many with more.
func fitList(prefix string, items []string, max int, more string) string {
	s := prefix
	for i, it := range items {
		tail := ""
		if i < len(items)-1 {
			tail = " " + fmt.Sprintf(more, len(items)-i-1)
		}
		if utf8.RuneCountInString(s)+1+utf8.RuneCountInString(it)+utf8.RuneCountInString(tail) > max {
			return s + " " + fmt.Sprintf(more, len(items)-i)
		}
		if i > 0 {
			s += " "
		}
		s += it
	}
	return s
}

// contextLine names the key, the rotation, the reason and the fingerprints.
func contextLine(ev notifiers.Event) string {
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
	return strings.Join(ctx, " · ")
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
