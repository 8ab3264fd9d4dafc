package serve

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/rekey-dev/rekey/rotation"
	"github.com/rekey-dev/rekey/state"
)

// The hand-off page: GET /handoff is one small page (HTML, CSS and JS
// embedded here; it loads nothing from anywhere else) that a manual
// integration's owner opens from <public_url>/handoff#<code>. The code
// travels in the URL's fragment, so no request line, proxy log or Referer
// holds it; the page's script reads it, drops it from the address bar,
// and POSTs it in a JSON body to
//
//	POST /handoff/lookup   which key and integration it is for, without opening it
//	POST /handoff/reveal   opens it (once) and answers the key
//	POST /handoff/confirm  "I have pasted it": records the confirmation as
//	                       `rekey confirm` would, runs the probe, tells the
//	                       rotation's Slack thread
//
// Every answer is no-store, with a Content-Security-Policy that allows the
// page's own script and style and nothing else, no Referer, no framing.
// Reveal and confirm attempts are rate-limited per client and in all.
// Nothing is logged of the code or the key.

//go:embed handoff/index.html handoff/app.js handoff/app.css
var handoffFiles embed.FS

// contentSecurityPolicy allows the page's own script, style and calls,
// and nothing else: no inline script, no other origin, no framing, no
// form posting anywhere.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// maxCallBody bounds a call's JSON body.
const maxCallBody = 4096

type handoffPage struct {
	eng       *rotation.Engine
	jobs      []rotation.Job
	log       *slog.Logger
	publicURL string

	mu      sync.Mutex
	clients map[string]*clientLimits
	all     *rate.Limiter // reveal and confirm attempts, whoever makes them
}

type clientLimits struct {
	lookup, open *rate.Limiter
	seen         time.Time
}

func newHandoffPage(eng *rotation.Engine, jobs []rotation.Job, log *slog.Logger) *handoffPage {
	return &handoffPage{
		eng: eng, jobs: jobs, log: log, publicURL: eng.Handoffs.PublicURL,
		clients: map[string]*clientLimits{},
		all:     rate.NewLimiter(rate.Every(2*time.Second), 20),
	}
}

func (p *handoffPage) routes(mux *http.ServeMux) {
	mux.HandleFunc("GET /handoff", p.file("handoff/index.html", "text/html; charset=utf-8"))
	mux.HandleFunc("GET /handoff/app.js", p.file("handoff/app.js", "text/javascript; charset=utf-8"))
	mux.HandleFunc("GET /handoff/app.css", p.file("handoff/app.css", "text/css; charset=utf-8"))
	mux.HandleFunc("POST /handoff/lookup", p.call(false, p.lookup))
	mux.HandleFunc("POST /handoff/reveal", p.call(true, p.reveal))
	mux.HandleFunc("POST /handoff/confirm", p.call(true, p.confirm))
}

// secure sets the headers every answer of the page carries.
func secure(h http.Header) {
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
}

func (p *handoffPage) file(name, ctype string) http.HandlerFunc {
	b, err := handoffFiles.ReadFile(name)
	if err != nil {
		panic("serve: embedded " + name + ": " + err.Error())
	}
	return func(w http.ResponseWriter, r *http.Request) {
		secure(w.Header())
		w.Header().Set("Content-Type", ctype)
		w.Write(b)
	}
}

// answer writes v as JSON with status.
func answer(w http.ResponseWriter, status int, v any) {
	secure(w.Header())
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

type apiError struct {
	Error string `json:"error"`
	State string `json:"state,omitempty"`
}

// call checks a call (same origin, JSON, small, within the rate limits),
// reads the code from it, and runs do.
func (p *handoffPage) call(opens bool, do func(ctx context.Context, w http.ResponseWriter, code rotation.Code, client string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !p.sameOrigin(r) {
			answer(w, http.StatusForbidden, apiError{Error: "calls come from the hand-off page only"})
			return
		}
		if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			answer(w, http.StatusUnsupportedMediaType, apiError{Error: "send JSON"})
			return
		}
		client := clientIP(r)
		if !p.allow(client, opens) {
			w.Header().Set("Retry-After", "10")
			answer(w, http.StatusTooManyRequests, apiError{Error: "Too many attempts: wait a minute and try again."})
			p.log.Warn("hand-off page: rate limited", "client", client, "path", r.URL.Path)
			return
		}
		var body struct {
			Code string `json:"code"`
		}
		err := json.NewDecoder(io.LimitReader(r.Body, maxCallBody)).Decode(&body)
		code := rotation.NewCode(body.Code)
		if h := p.eng.Handoffs; h != nil && h.Learn != nil && !code.IsZero() {
			h.Learn(code.Reveal()) // before anything could log it
		}
		if err != nil || code.IsZero() {
			answer(w, http.StatusBadRequest, apiError{Error: "no hand-off code in the request"})
			return
		}
		do(r.Context(), w, code, client)
	}
}

// sameOrigin reports whether a call comes from this server's page (or
// names no origin, as a non-browser client does).
func (p *handoffPage) sameOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil {
		return false
	}
	if u.Host == r.Host {
		return true
	}
	if pu, err := url.Parse(p.publicURL); err == nil && p.publicURL != "" {
		return u.Scheme == pu.Scheme && u.Host == pu.Host
	}
	return false
}

func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// allow takes one attempt from the client's limits (and, for a call that
// opens or confirms, from everyone's).
func (p *handoffPage) allow(client string, opens bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	c := p.clients[client]
	if c == nil {
		if len(p.clients) > 10000 {
			for k, v := range p.clients {
				if now.Sub(v.seen) > 10*time.Minute {
					delete(p.clients, k)
				}
			}
		}
		c = &clientLimits{
			lookup: rate.NewLimiter(rate.Every(time.Second), 10),
			open:   rate.NewLimiter(rate.Every(6*time.Second), 5),
		}
		p.clients[client] = c
	}
	c.seen = now
	if !opens {
		return c.lookup.Allow()
	}
	return c.open.Allow() && p.all.Allow()
}

// engine is a copy of the daemon's engine for one call: calls run at
// once, and beside the audits.
func (p *handoffPage) engine() *rotation.Engine {
	e := *p.eng
	return &e
}

func (p *handoffPage) redact(s string) string {
	if p.eng.Redact != nil {
		return p.eng.Redact(s)
	}
	return s
}

// codeAnswer is how a code that did not open is answered.
func (p *handoffPage) codeAnswer(w http.ResponseWriter, err error, what string) {
	var ce *rotation.CodeError
	if errors.As(err, &ce) {
		status := http.StatusNotFound
		if ce.Why == rotation.CodeExpired || ce.Why == rotation.CodeUsed {
			status = http.StatusGone
		}
		answer(w, status, apiError{Error: p.redact(ce.Error()), State: string(ce.Why)})
		return
	}
	p.log.Error("hand-off page: "+what, "err", err)
	answer(w, http.StatusBadGateway, apiError{Error: "Vault could not be asked just now; try again in a minute."})
}

func (p *handoffPage) instructions(keyID, integration string) string {
	for _, j := range p.jobs {
		if j.Key.ID != keyID {
			continue
		}
		for _, t := range j.Targets {
			if t.Config.ID == integration {
				return t.Config.Instructions
			}
		}
	}
	return ""
}

func (p *handoffPage) lookup(ctx context.Context, w http.ResponseWriter, code rotation.Code, client string) {
	info, err := p.engine().LookupCode(ctx, code)
	if err != nil {
		p.codeAnswer(w, err, "look a code up")
		return
	}
	answer(w, http.StatusOK, struct {
		*rotation.CodeInfo
		Instructions string `json:"instructions,omitempty"`
	}{info, p.instructions(info.KeyID, info.Integration)})
}

func (p *handoffPage) reveal(ctx context.Context, w http.ResponseWriter, code rotation.Code, client string) {
	o, err := p.engine().Reveal(ctx, code, "page")
	if err != nil {
		p.log.Warn("hand-off page: a code did not open", "client", client, "err", err)
		p.codeAnswer(w, err, "open a code")
		return
	}
	p.log.Info("hand-off page: code opened", "key", o.KeyID, "integration", o.Integration, "fingerprint", o.Fingerprint, "client", client)
	instructions := p.instructions(o.KeyID, o.Integration)
	if instructions == "" {
		instructions = o.Instructions
	}
	// The key, once, to the holder of the code: the one answer that
	// carries it.
	answer(w, http.StatusOK, map[string]string{
		"key": o.Key.Reveal(), "key_id": o.KeyID, "integration": o.Integration,
		"fingerprint": o.Fingerprint, "instructions": instructions,
	})
}

func (p *handoffPage) confirm(ctx context.Context, w http.ResponseWriter, code rotation.Code, client string) {
	res, err := p.engine().ConfirmByCode(ctx, p.jobs, code)
	if err != nil {
		var ce *rotation.CodeError
		if errors.As(err, &ce) {
			p.codeAnswer(w, err, "confirm")
			return
		}
		p.log.Warn("hand-off page: confirmation not recorded", "client", client, "err", err)
		answer(w, http.StatusConflict, apiError{Error: "The confirmation could not be recorded: " + p.redact(err.Error())})
		return
	}
	p.log.Info("hand-off page: confirmed", "integration", res.ID, "state", res.State, "client", client)
	answer(w, http.StatusOK, struct {
		Integration string      `json:"integration"`
		State       state.State `json:"state"`
		Reason      string      `json:"reason"`
	}{res.ID, res.State, res.Reason})
}
