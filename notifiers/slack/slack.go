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
// Failed calls are retried: after a 429 as long as Retry-After says, after
// a 5xx or a network error with exponential backoff. Errors that no retry
// can fix (invalid_auth, channel_not_found, not_in_channel, a bad request)
// are returned at once. No error holds the token or the webhook URL.
package slack

import (
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

	slackapi "github.com/slack-go/slack"

	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/notifiers"
)

// Defaults for the zero values of Options.
const (
	DefaultBackoff = time.Second      // first wait after a 5xx or network error; doubles each time
	DefaultTimeout = 10 * time.Second // per HTTP request, when HTTPClient has none
	maxBackoff     = 30 * time.Second
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

// Notify posts ev. See the package documentation for where it goes.
func (n *Notifier) Notify(ctx context.Context, ev notifiers.Event) error {
	if n.api == nil {
		return n.postWebhook(ctx, render(ev, false))
	}
	if ev.RotationID == "" {
		_, _, err := n.post(ctx, render(ev, false), "")
		return err
	}

	th := n.thread(ev.RotationID)
	th.mu.Lock()
	defer th.mu.Unlock()

	if th.ts == "" {
		ch, ts, err := n.post(ctx, render(ev, false), "")
		if err != nil {
			return err
		}
		th.channel, th.ts = ch, ts
		return nil
	}

	var extra []slackapi.MsgOption
	if ev.Urgent {
		extra = append(extra, slackapi.MsgOptionBroadcast()) // show it in the channel too
	}
	if _, _, err := n.post(ctx, render(ev, false), th.ts, extra...); err != nil {
		return err
	}
	if ev.Kind == notifiers.RotationFinished {
		return n.update(ctx, th.channel, th.ts, render(ev, true))
	}
	return nil
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
// and returns the channel and timestamp of the message.
func (n *Notifier) post(ctx context.Context, msg message, threadTS string, extra ...slackapi.MsgOption) (channel, ts string, err error) {
	what := "post to " + n.channel
	opts := []slackapi.MsgOption{
		slackapi.MsgOptionText(msg.text, false),
		slackapi.MsgOptionBlocks(msg.blocks...),
		slackapi.MsgOptionDisableLinkUnfurl(),
	}
	if threadTS != "" {
		what = "reply in thread " + threadTS + " in " + n.channel
		opts = append(opts, slackapi.MsgOptionTS(threadTS))
	}
	opts = append(opts, extra...)
	err = n.retry(ctx, what, func(ctx context.Context) error {
		var err error
		channel, ts, err = n.api.PostMessageContext(ctx, n.channel, opts...)
		return err
	})
	return channel, ts, err
}

// update replaces the message at ts with msg (chat.update).
func (n *Notifier) update(ctx context.Context, channel, ts string, msg message) error {
	return n.retry(ctx, "update message "+ts+" in "+channel, func(ctx context.Context) error {
		_, _, _, err := n.api.UpdateMessageContext(ctx, channel, ts,
			slackapi.MsgOptionText(msg.text, false),
			slackapi.MsgOptionBlocks(msg.blocks...),
		)
		return err
	})
}

// postWebhook sends msg to the incoming webhook.
func (n *Notifier) postWebhook(ctx context.Context, msg message) error {
	wm := &slackapi.WebhookMessage{
		Channel:     n.channel,
		Text:        msg.text,
		Blocks:      &slackapi.Blocks{BlockSet: msg.blocks},
		UnfurlLinks: new(false),
	}
	return n.retry(ctx, "post to webhook", func(ctx context.Context) error {
		return slackapi.PostWebhookCustomHTTPContext(ctx, n.webhook, n.http, wm)
	})
}

// retry calls do until it succeeds, fails for good, runs out of retries or
// ctx ends. Every error it returns has been through classify.
func (n *Notifier) retry(ctx context.Context, what string, do func(context.Context) error) error {
	wait := n.backoff
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
		n.log.Warn("slack: retrying", "target", what, "attempt", attempt+1, "wait", d, "err", err.Error())
		if err := n.sleep(ctx, d); err != nil {
			return fmt.Errorf("slack: %s: %w", what, err)
		}
	}
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
