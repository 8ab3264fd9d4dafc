// Package slack posts rekey's events to Slack, with a bot token
// (chat.postMessage, one thread per rotation) or an incoming webhook (one
// message per event).
//
// With a bot token, the first event of a rotation is a message in the
// channel; every later event of that rotation is a reply in its thread, and
// when the rotation finishes the first message is edited to show the
// outcome. Events that belong to no rotation are messages of their own.
// Incoming webhooks cannot thread, so there every event is its own message.
//
// Every message has Block Kit blocks and a plain-text fallback. Owners of
// integrations that wait for them are mentioned; urgent events mention the
// whole channel.
//
// Messages stay within Slack's limits: 50 blocks, 150 characters a
// header, 3,000 a section, and 11,000 characters of block text in all
// (Slack refuses near 12,000 with msg_blocks_too_long). An event with more
// integrations than fit says how many are in each state, names the first
// that are not current and their owners, and details the rest in replies
// in its thread (with a webhook, in messages of their own). When Slack
// still refuses a message as too long or its blocks as invalid, it is
// posted again as plain text, then shorter still, so that it arrives.
//
// Failed calls are retried: after a 429 as long as Retry-After says, after
// a 5xx or a network error with exponential backoff; but never for more
// than MaxWait for one message, nor MaxTotalWait in all within ten times
// that (a rotation holds its lock while it reports), after which the
// message is given up on and that is logged. Errors that no retry can fix
// (invalid_auth, channel_not_found, not_in_channel, a bad request) are
// returned at once. No error holds the token or the webhook URL.
package slack

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	slackapi "github.com/slack-go/slack"

	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/notifiers"
)

// Defaults for the zero values of Options.
const (
	DefaultBackoff      = time.Second      // first wait after a 5xx or network error; doubles each time
	DefaultTimeout      = 10 * time.Second // per HTTP request, when HTTPClient has none
	DefaultMaxWait      = 30 * time.Second // waits for one message, in all
	DefaultMaxTotalWait = time.Minute      // waits for every message, within ten times that
	maxBackoff          = 30 * time.Second
)

// Options configure a Notifier. Give Token (with Channel) or WebhookURL.
type Options struct {
	// Token is a bot token with chat:write. It is sent in the
	// Authorization header only.
	Token string
	// WebhookURL is an incoming webhook. It is a secret: it is never
	// printed, logged or put in an error.
	WebhookURL string
	// Channel is the channel ID (C…) to post to; required with Token.
	// With a webhook it is sent along, and ignored by modern webhooks.
	Channel string
	// APIURL overrides https://slack.com/api/ (for tests and proxies).
	APIURL string
	// HTTPClient makes the requests; it is given a timeout of
	// DefaultTimeout when it has none. Nil means a new client.
	HTTPClient *http.Client
	// Logger gets a line for each retry. Nil discards.
	Logger *slog.Logger
	// Retries is how many times a failed call is tried again (0: never).
	Retries int
	// Backoff is the first wait after a 5xx or network error, doubled for
	// each later attempt up to 30s. Zero means DefaultBackoff. Waits after
	// a 429 are what Slack's Retry-After says.
	Backoff time.Duration
	// MaxWait bounds the waits for one message: when Slack asks for more
	// (Retry-After: 600), the message is given up on at once. Zero means
	// DefaultMaxWait.
	MaxWait time.Duration
	// MaxTotalWait bounds the waits for all messages within ten times it,
	// so that a run which posts many messages to a Slack that keeps
	// answering 429 still ends promptly. Zero means DefaultMaxTotalWait.
	MaxTotalWait time.Duration
}

// Notifier posts events to Slack. It is safe for concurrent use.
type Notifier struct {
	api     *slackapi.Client // nil in webhook mode
	apiURL  string           // the Web API's root, ending in /
	webhook string
	channel string
	http    *http.Client
	log     *slog.Logger
	retries int
	backoff time.Duration
	maxWait time.Duration
	budget  *waitBudget
	secrets []string // what must never appear in an error

	// sleep waits between attempts; tests replace it to record the waits.
	sleep func(ctx context.Context, d time.Duration) error

	mu      sync.Mutex
	threads map[string]*thread // by rotation ID
}

// thread is the top message of one rotation. Its lock is held while an
// event of that rotation is posted, so that the first event's message
// exists before any reply to it is sent.
type thread struct {
	mu      sync.Mutex
	channel string
	ts      string
}

var _ notifiers.Notifier = (*Notifier)(nil)

// New returns a Notifier for a bot token or an incoming webhook.
func New(opts Options) (*Notifier, error) {
	switch {
	case opts.Token == "" && opts.WebhookURL == "":
		return nil, errors.New("slack: a bot token or a webhook URL is required")
	case opts.Token != "" && opts.WebhookURL != "":
		return nil, errors.New("slack: give a bot token or a webhook URL, not both")
	case opts.Token != "" && opts.Channel == "":
		return nil, errors.New("slack: a channel is required with a bot token")
	case opts.Retries < 0:
		return nil, fmt.Errorf("slack: retries must not be negative, got %d", opts.Retries)
	case opts.MaxWait < 0 || opts.MaxTotalWait < 0:
		return nil, errors.New("slack: waits must not be negative")
	}

	hc := &http.Client{}
	if opts.HTTPClient != nil {
		c := *opts.HTTPClient
		hc = &c
	}
	if hc.Timeout == 0 {
		hc.Timeout = DefaultTimeout
	}
	// Slack's API and webhooks never redirect; following one would send
	// the token on, and Go puts the webhook URL (a secret) in Referer.
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	n := &Notifier{
		channel: opts.Channel,
		http:    hc,
		log:     opts.Logger,
		retries: opts.Retries,
		backoff: opts.Backoff,
		maxWait: cmp.Or(opts.MaxWait, DefaultMaxWait),
		budget:  newWaitBudget(cmp.Or(opts.MaxTotalWait, DefaultMaxTotalWait)),
		sleep:   sleep,
		threads: map[string]*thread{},
	}
	if n.log == nil {
		n.log = slog.New(slog.DiscardHandler)
	}
	if n.backoff <= 0 {
		n.backoff = DefaultBackoff
	}

	if opts.WebhookURL != "" {
		// url.Parse's errors quote the URL: say what is wrong, not what it was.
		u, err := url.Parse(opts.WebhookURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return nil, errors.New("slack: the webhook URL is not an http(s) URL")
		}
		n.webhook = opts.WebhookURL
		n.secrets = []string{opts.WebhookURL}
		return n, nil
	}

	api := opts.APIURL
	if api == "" {
		api = slackapi.APIURL
	}
	if u, err := url.Parse(api); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("slack: api_url %q is not an http(s) URL", api)
	}
	if !strings.HasSuffix(api, "/") {
		api += "/" // slack-go appends the method name to it
	}
	n.secrets, n.apiURL = []string{opts.Token}, api
	n.api = slackapi.New(opts.Token,
		slackapi.OptionAPIURL(api),
		slackapi.OptionHTTPClient(bearerClient{c: hc, token: opts.Token}),
	)
	return n, nil
}

// Notify posts ev. See the package documentation for where it goes. It
// returns an error when ev's message was not delivered; details that could
// not be posted after it are logged.
func (n *Notifier) Notify(ctx context.Context, ev notifiers.Event) error {
	if n.api == nil {
		p := renderAs(ev, false, false)
		if err := n.postWebhook(ctx, p.main); err != nil {
			return err
		}
		for i, d := range p.details {
			if err := n.postWebhook(ctx, d); err != nil {
				n.log.Warn("slack: details not posted", "event", string(ev.Kind), "part", i+1, "of", len(p.details), "err", err.Error())
				break
			}
		}
		return nil
	}
	p := render(ev, false)
	if ev.RotationID == "" {
		_, ts, err := n.post(ctx, p.main, "")
		if err != nil {
			return err
		}
		n.postDetails(ctx, ev, p.details, ts)
		return nil
	}

	th := n.thread(ev.RotationID)
	th.mu.Lock()
	defer th.mu.Unlock()

	if th.ts == "" {
		ch, ts, err := n.post(ctx, p.main, "")
		if err != nil {
			return err
		}
		th.channel, th.ts = ch, ts
		n.postDetails(ctx, ev, p.details, ts)
		return nil
	}

	var extra []slackapi.MsgOption
	if ev.Urgent {
		extra = append(extra, slackapi.MsgOptionBroadcast()) // show it in the channel too
	}
	if _, _, err := n.post(ctx, p.main, th.ts, extra...); err != nil {
		return err
	}
	n.postDetails(ctx, ev, p.details, th.ts)
	if ev.Kind == notifiers.RotationFinished {
		return n.update(ctx, th.channel, th.ts, render(ev, true).main)
	}
	return nil
}

// postDetails replies with each detail message in the thread of ts, and
// logs (and stops at) the first that cannot be posted.
func (n *Notifier) postDetails(ctx context.Context, ev notifiers.Event, details []message, ts string) {
	for i, d := range details {
		if _, _, err := n.post(ctx, d, ts); err != nil {
			n.log.Warn("slack: details not posted", "event", string(ev.Kind), "part", i+1, "of", len(details), "err", err.Error())
			return
		}
	}
}

// Thread returns the channel and timestamp of a rotation's top message, so
// that a caller can record them and a later process can continue the
// thread with ResumeThread.
func (n *Notifier) Thread(rotationID string) (channel, ts string, ok bool) {
	th := n.thread(rotationID)
	th.mu.Lock()
	defer th.mu.Unlock()
	return th.channel, th.ts, th.ts != ""
}

// ResumeThread makes later events of a rotation replies to a top message
// posted earlier (by another process), as returned by Thread.
func (n *Notifier) ResumeThread(rotationID, channel, ts string) {
	th := n.thread(rotationID)
	th.mu.Lock()
	defer th.mu.Unlock()
	th.channel, th.ts = channel, ts
}

func (n *Notifier) thread(id string) *thread {
	n.mu.Lock()
	defer n.mu.Unlock()
	th := n.threads[id]
	if th == nil {
		th = &thread{}
		n.threads[id] = th
	}
	return th
}

// Ping checks, without posting, that Slack answers and the bot token is
// valid (auth.test). An incoming webhook cannot be checked without
// posting, so Ping says nothing of one.
func (n *Notifier) Ping(ctx context.Context) error {
	if n.api == nil {
		return nil
	}
	return n.retry(ctx, "auth.test", func(ctx context.Context) error {
		_, err := n.api.AuthTestContext(ctx)
		return err
	})
}

// post sends msg with chat.postMessage, as a reply when threadTS is set,
// and returns the channel and timestamp of the message. When Slack
// refuses it for its size or its blocks, it is sent again in its shorter
// forms.
func (n *Notifier) post(ctx context.Context, msg message, threadTS string, extra ...slackapi.MsgOption) (channel, ts string, err error) {
	what := "post to " + n.channel
	if threadTS != "" {
		what = "reply in thread " + threadTS + " in " + n.channel
	}
	err = n.shortening(what, msg, func(m message) error {
		opts := []slackapi.MsgOption{
			slackapi.MsgOptionText(m.text, false),
			slackapi.MsgOptionDisableLinkUnfurl(),
		}
		if len(m.blocks) > 0 {
			opts = append(opts, slackapi.MsgOptionBlocks(m.blocks...))
		}
		if threadTS != "" {
			opts = append(opts, slackapi.MsgOptionTS(threadTS))
		}
		opts = append(opts, extra...)
		return n.retry(ctx, what, func(ctx context.Context) error {
			var err error
			channel, ts, err = n.api.PostMessageContext(ctx, n.channel, opts...)
			return err
		})
	})
	return channel, ts, err
}

// update replaces the message at ts with msg (chat.update).
func (n *Notifier) update(ctx context.Context, channel, ts string, msg message) error {
	what := "update message " + ts + " in " + channel
	return n.shortening(what, msg, func(m message) error {
		opts := []slackapi.MsgOption{slackapi.MsgOptionText(m.text, false)}
		if len(m.blocks) > 0 {
			opts = append(opts, slackapi.MsgOptionBlocks(m.blocks...))
		} else {
			// An edit keeps the old blocks unless told to drop them.
			opts = append(opts, slackapi.MsgOptionBlocks())
		}
		return n.retry(ctx, what, func(ctx context.Context) error {
			_, _, _, err := n.api.UpdateMessageContext(ctx, channel, ts, opts...)
			return err
		})
	})
}

// postWebhook sends msg to the incoming webhook.
func (n *Notifier) postWebhook(ctx context.Context, msg message) error {
	return n.shortening("post to webhook", msg, func(m message) error {
		wm := &slackapi.WebhookMessage{
			Channel:     n.channel,
			Text:        m.text,
			UnfurlLinks: new(false),
		}
		if len(m.blocks) > 0 {
			wm.Blocks = &slackapi.Blocks{BlockSet: m.blocks}
		}
		return n.retry(ctx, "post to webhook", func(ctx context.Context) error {
			return slackapi.PostWebhookCustomHTTPContext(ctx, n.webhook, n.http, wm)
		})
	})
}

// shortening sends msg with send, and when Slack refuses it for its size
// or its blocks, each of its shorter forms in turn until one is taken.
func (n *Notifier) shortening(what string, msg message, send func(message) error) error {
	err := send(msg)
	for _, short := range msg.shorter() {
		if !refused(err) {
			break
		}
		n.log.Warn("slack: message refused for its size or blocks; sending it again as plain text",
			"target", what, "characters", utf8.RuneCountInString(short.text), "err", err.Error())
		err = send(short)
	}
	return err
}

// retry calls do until it succeeds, fails for good, runs out of retries or
// ctx ends, or the waits would pass maxWait for this message or the
// budget for all. Every error it returns has been through classify.
func (n *Notifier) retry(ctx context.Context, what string, do func(context.Context) error) error {
	wait := n.backoff
	var waited time.Duration
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("slack: %s: %w", what, err)
		}
		raw := do(ctx)
		if raw == nil {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("slack: %s: %w", what, err)
		}
		err := classify(what, raw, n.secrets...)
		if !retryable(err) {
			return err
		}
		if attempt >= n.retries {
			if attempt > 0 {
				return classify(fmt.Sprintf("%s (gave up after %d attempts)", what, attempt+1), raw, n.secrets...)
			}
			return err
		}
		d := wait
		if ra := failure.RetryAfter(err); ra > 0 {
			d = ra
		} else {
			wait = min(2*wait, maxBackoff)
		}
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < d {
			return classify(fmt.Sprintf("%s (no time left to wait %s for another attempt)", what, d), raw, n.secrets...)
		}
		if waited+d > n.maxWait {
			n.log.Warn("slack: giving up on a message: the wait Slack asks for passes what rekey waits for one message",
				"target", what, "wait", d, "waited", waited, "max_wait", n.maxWait, "err", err.Error())
			return classify(fmt.Sprintf("%s (given up: waiting %s more would pass the %s rekey waits for one message)", what, d, n.maxWait), raw, n.secrets...)
		}
		if !n.budget.take(d) {
			n.log.Warn("slack: giving up on a message: rekey has waited for Slack as long as it waits in all",
				"target", what, "wait", d, "max_total_wait", n.budget.max, "err", err.Error())
			return classify(fmt.Sprintf("%s (given up: waiting %s more would pass the %s rekey waits for Slack in all)", what, d, n.budget.max), raw, n.secrets...)
		}
		waited += d
		n.log.Warn("slack: retrying", "target", what, "attempt", attempt+1, "wait", d, "err", err.Error())
		if err := n.sleep(ctx, d); err != nil {
			return fmt.Errorf("slack: %s: %w", what, err)
		}
	}
}

// waitBudget is how long a Notifier may still wait for Slack: at most max
// within any window of ten times max.
type waitBudget struct {
	max    time.Duration
	window time.Duration
	now    func() time.Time

	mu    sync.Mutex
	waits []budgetWait
}

type budgetWait struct {
	at time.Time
	d  time.Duration
}

func newWaitBudget(max time.Duration) *waitBudget {
	return &waitBudget{max: max, window: 10 * max, now: time.Now}
}

// take reserves d, or reports false when that would pass the budget.
func (b *waitBudget) take(d time.Duration) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	kept := b.waits[:0]
	var sum time.Duration
	for _, w := range b.waits {
		if now.Sub(w.at) < b.window {
			kept = append(kept, w)
			sum += w.d
		}
	}
	b.waits = kept
	if sum+d > b.max {
		return false
	}
	b.waits = append(b.waits, budgetWait{at: now, d: d})
	return true
}

// bearerClient sends the bot token in the Authorization header, as Slack
// recommends, instead of the form field slack-go puts it in: request
// bodies end up in proxies' and debuggers' logs more often than headers.
type bearerClient struct {
	c     *http.Client
	token string
}

func (b bearerClient) Do(req *http.Request) (*http.Response, error) {
	r := req.Clone(req.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	if req.Body != nil && strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		body, err := io.ReadAll(req.Body)
		_ = req.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("read request body: %w", err)
		}
		if vals, err := url.ParseQuery(string(body)); err == nil && vals.Has("token") {
			vals.Del("token")
			body = []byte(vals.Encode())
		}
		r.Body = io.NopCloser(strings.NewReader(string(body)))
		r.ContentLength = int64(len(body))
		r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(string(body))), nil }
	}
	return b.c.Do(r)
}
