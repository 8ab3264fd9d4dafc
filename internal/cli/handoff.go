package cli

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rekey-dev/rekey/config"
	"github.com/rekey-dev/rekey/notifiers/slack"
	"github.com/rekey-dev/rekey/rotation"
	"github.com/rekey-dev/rekey/store"
)

// Hand-off codes in the CLI: the engine makes a code for each manual
// integration with a handoff; the courier here gives it to its owner
// alone, by Slack direct message when the owner is a Slack user and
// notify.slack has a bot token, else on the operator's terminal once the
// rotation's live view is done. Both paths bypass the redactor, which
// knows every code: they are the only places a code is shown.

// slackUserRE is a Slack user mention: <@U…> or <@W…>, with an optional
// |name.
var slackUserRE = regexp.MustCompile(`^<@([UW][A-Z0-9]{2,})(?:\|[^>]*)?>$`)

// slackUser returns the Slack user id an owner names, if it is one.
func slackUser(owner string) (string, bool) {
	m := slackUserRE.FindStringSubmatch(strings.TrimSpace(owner))
	if m == nil {
		return "", false
	}
	return m[1], true
}

// handoffs is what the engine needs for hand-off codes in this run.
func (a *app) handoffs() *rotation.Handoffs {
	wrapper, ok := a.store.(store.Wrapper)
	if !ok {
		return nil // no store yet, or one that cannot wrap
	}
	hr, _ := a.store.(store.HandoffRecords)
	if a.courier == nil {
		a.courier = &courier{a: a}
	}
	return &rotation.Handoffs{
		Vault: wrapper, Records: hr, Courier: a.courier,
		PublicURL: a.cfg.Serve.PublicURL, Learn: func(s string) { a.g.redact.Add(s) },
	}
}

// courier delivers hand-off codes: a Slack direct message, or the
// operator's terminal (queued until the live view is done drawing).
type courier struct {
	a *app

	once   sync.Once
	bot    *slack.Notifier // nil without a bot token
	botErr error

	mu     sync.Mutex
	queued []rotation.Delivery
}

// slackBot returns a Slack notifier for direct messages, without the
// redacting wrapper (the message holds the code): nil when notify.slack
// has no bot token.
func (c *courier) slackBot() (*slack.Notifier, error) {
	c.once.Do(func() { c.bot, c.botErr = c.a.slackBot() })
	return c.bot, c.botErr
}

func (a *app) slackBot() (*slack.Notifier, error) {
	sc := a.cfg.Notify.Slack
	if sc == nil || sc.TokenEnv == "" {
		return nil, nil
	}
	tok := a.getenv(sc.TokenEnv)
	if tok == "" {
		return nil, fmt.Errorf("notify.slack: $%s is not set", sc.TokenEnv)
	}
	return slack.New(slack.Options{Token: tok, Channel: sc.Channel, APIURL: sc.APIURL, Logger: a.log,
		HTTPClient: &http.Client{Timeout: 15 * time.Second}, Retries: max(*a.cfg.Rotation.Retries, 3)})
}

// Deliver implements rotation.Courier.
func (c *courier) Deliver(ctx context.Context, d rotation.Delivery) (string, error) {
	if user, ok := slackUser(d.Owner); ok {
		bot, err := c.slackBot()
		if err != nil {
			return "", err
		}
		if bot != nil {
			return "slack-dm", bot.SendDirect(ctx, user, c.a.directMessage(d))
		}
	}
	c.mu.Lock()
	c.queued = append(c.queued, d)
	c.mu.Unlock()
	return "terminal", nil
}

// vaultAddr is the Vault address a code's holder reveals it at.
func (a *app) vaultAddr() string {
	if a.vault != nil {
		return a.vault.Client().Address()
	}
	return a.cfg.Vault.Address
}

// directMessage is a hand-off code's Slack message. Its fallback text,
// which phones show in notifications, does not hold the code.
func (a *app) directMessage(d rotation.Delivery) slack.DirectMessage {
	m := slack.DirectMessage{
		Title:    "Your one-time hand-off code for " + d.Integration,
		Fallback: fmt.Sprintf("Your one-time hand-off code for %s (key %s) is in this message.", d.Integration, d.KeyID),
		Context: "It opens once: once opened it opens nothing more. If it says it was already opened and you did not open it, " +
			"tell the team at once. Do not forward this message.",
	}
	m.Sections = append(m.Sections, fmt.Sprintf("The new key for *%s* (key `%s`, `%s`) is waiting for you, until %s.",
		d.Integration, d.KeyID, d.Fingerprint, d.Expires.UTC().Format(time.RFC3339)))
	if d.Page != "" {
		m.Sections = append(m.Sections, "*Open it here:* <"+d.Page+"|the hand-off page>: press *Reveal*, copy the key, paste it, then press *I have pasted it*.")
	}
	reveal := "rekey reveal"
	if addr := a.vaultAddr(); addr != "" {
		reveal = "VAULT_ADDR=" + addr + " rekey reveal"
	}
	m.Sections = append(m.Sections, "*Or in a terminal:* run `"+reveal+"` and paste this code at its prompt:\n```"+d.Code.Reveal()+"```")
	if d.Instructions != "" {
		m.Sections = append(m.Sections, "*What to do with it:* "+d.Instructions)
	}
	return m
}

// printHandoffs prints the codes queued for the operator's terminal, on
// stderr as it is (the redactor would hide them), never on stdout where
// --output json goes.
func (a *app) printHandoffs() {
	if a.courier == nil {
		return
	}
	a.courier.mu.Lock()
	queued := a.courier.queued
	a.courier.queued = nil
	a.courier.mu.Unlock()
	w := rawWriter(a.s.Err)
	for _, d := range queued {
		fmt.Fprintf(w, "\nHand-off code for %s (owner %s; key %s, %s):\n\n    %s\n\n", d.Integration, orSomeone(d.Owner), d.KeyID, d.Fingerprint, d.Code.Reveal())
		fmt.Fprintf(w, "  It opens the new key once, until %s. Pass it to %s privately, not in a shared channel:\n", d.Expires.UTC().Format(time.RFC3339), orSomeone(d.Owner))
		reveal := "rekey reveal"
		if addr := a.vaultAddr(); addr != "" {
			reveal = "VAULT_ADDR=" + addr + " rekey reveal"
		}
		fmt.Fprintf(w, "  they run `%s` and paste it", reveal)
		if d.Page != "" {
			fmt.Fprintf(w, ", or open %s", d.Page)
		}
		fmt.Fprintln(w, ".")
	}
}

// rawWriter is w without the redactor that wraps it; it keeps the
// syncWriter beneath, so that a hand-off code's lines are written one at
// a time with everything else.
func rawWriter(w io.Writer) io.Writer {
	for {
		if _, ok := w.(*syncWriter); ok {
			return w
		}
		u, ok := w.(interface{ Unwrap() io.Writer })
		if !ok {
			return w
		}
		w = u.Unwrap()
	}
}

// preflightHandoffs proves, before the owner clicks, that each hand-off
// can be delivered: a Slack user's needs a bot token with im:write (to
// open the direct message) and chat:write; any other owner's code is
// printed on this terminal.
func (a *app) preflightHandoffs(ctx context.Context, targets []rotation.Target, p *preflight) {
	if !rotation.HasHandoff(targets) {
		return
	}
	var (
		scopes   []string
		said     bool
		scopeErr error
		asked    bool
	)
	for i, t := range targets {
		if !rotation.HasHandoff(targets[i : i+1]) {
			continue
		}
		r := &p.Integrations[i]
		user, isSlack := slackUser(t.Config.Owner)
		if !isSlack {
			r.Detail += "; hand-off code printed on this terminal, to pass on to " + orSomeone(t.Config.Owner)
			continue
		}
		sc := a.cfg.Notify.Slack
		if sc == nil || sc.TokenEnv == "" {
			r.Detail += "; hand-off code printed on this terminal: " + t.Config.Owner + " is a Slack user, but notify.slack has no bot token to send a direct message with"
			continue
		}
		if !asked {
			asked = true
			bot, err := a.slackBot()
			if err == nil {
				scopes, said, err = bot.Scopes(ctx)
			}
			scopeErr = err
		}
		switch {
		case scopeErr != nil:
			r.OK = false
			r.Detail += "; hand-off code by Slack direct message to " + user + ": Slack could not be asked what the bot may do: " + scopeErr.Error()
		case !said:
			r.Detail += "; hand-off code by Slack direct message to " + user + " (Slack did not say the bot token's scopes; it needs im:write and chat:write)"
		case !slices.Contains(scopes, "im:write") || !slices.Contains(scopes, "chat:write"):
			r.OK = false
			var lacks []string
			for _, s := range []string{"chat:write", "im:write"} {
				if !slices.Contains(scopes, s) {
					lacks = append(lacks, s)
				}
			}
			r.Detail += "; hand-off code by Slack direct message to " + user + ": the bot token lacks " + strings.Join(lacks, ", ") + " (add it in the Slack app's OAuth scopes and reinstall the app)"
		default:
			r.Detail += "; hand-off code by Slack direct message to " + user + " (the bot has im:write and chat:write)"
		}
	}
}

// handoffStatuses is where each hand-off of key k stands.
func (a *app) handoffStatuses(ctx context.Context, k config.Key) []rotation.HandoffStatus {
	targets, err := a.targets(k.ID)
	if err != nil || !rotation.HasHandoff(targets) {
		return nil
	}
	return a.engine(nil).HandoffStatuses(ctx, rotation.Job{Key: k, Targets: targets})
}

// printHandoff prints the hand-off line of integration id, if it has one.
func printHandoff(w io.Writer, indent string, hs []rotation.HandoffStatus, id string) {
	for _, h := range hs {
		if h.Integration == id {
			fmt.Fprintf(w, "%shand-off: %s: %s\n", indent, h.State, h.Detail)
		}
	}
}
