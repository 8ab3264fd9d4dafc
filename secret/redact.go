package secret

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// Marker is what a Redactor puts in place of a secret.
const Marker = "[redacted]"

// MinRedactLen is the shortest value a Redactor replaces: a shorter one
// would be found in ordinary words and numbers, and no key or token rekey
// holds is that short (keys are at least 16 bytes).
const MinRedactLen = 8

// Redactor is the second wall behind errors built from what rekey knows:
// it knows every secret rekey holds in this process (the keys of this run,
// the Vault token, the Slack and GitHub tokens, the values of ${VAR}s and
// token_env variables) and replaces each, wherever it appears in a text
// that is about to be printed, logged, posted or recorded, with Marker:
// raw, hex (lower and upper case), base64 (standard and URL-safe, at any
// alignment inside a longer stream: Base64Fragments), URL-encoded (query
// and path escaping), and escaped as in a JSON or a Go-quoted string.
//
// Its methods are safe for concurrent use, and a nil *Redactor redacts
// nothing. A secret split across two writes to Writer, or encoded in some
// other way (gzip, encryption), is not found: the first wall is that
// errors and reasons never hold a byte the peer chose.
type Redactor struct {
	mu     sync.Mutex
	values map[string]bool
	r      atomic.Pointer[strings.Replacer] // nil until a secret is known
}

// NewRedactor returns a Redactor that knows no secret yet.
func NewRedactor() *Redactor { return &Redactor{values: map[string]bool{}} }

// Add makes the Redactor replace each value from now on. Values shorter
// than MinRedactLen are ignored.
func (r *Redactor) Add(values ...string) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	changed := false
	for _, v := range values {
		if len(v) >= MinRedactLen && !r.values[v] {
			r.values[v] = true
			changed = true
		}
	}
	if !changed {
		return
	}
	var forms []string
	seen := map[string]bool{}
	for v := range r.values {
		for _, f := range RedactForms(v) {
			if len(f) >= MinRedactLen && !seen[f] {
				seen[f] = true
				forms = append(forms, f)
			}
		}
	}
	// At one position the first listed form that matches wins: the
	// longest first, so a whole value is replaced rather than a fragment
	// of its encoding that it happens to contain.
	slices.SortFunc(forms, func(a, b string) int {
		if len(a) != len(b) {
			return len(b) - len(a)
		}
		return strings.Compare(a, b)
	})
	pairs := make([]string, 0, 2*len(forms))
	for _, f := range forms {
		pairs = append(pairs, f, Marker)
	}
	r.r.Store(strings.NewReplacer(pairs...))
}

// AddKey makes the Redactor replace each key's value from now on.
func (r *Redactor) AddKey(keys ...Key) {
	for _, k := range keys {
		r.Add(k.v)
	}
}

// Redact returns s with every known secret, in every encoding the
// Redactor knows, replaced by Marker.
func (r *Redactor) Redact(s string) string {
	if r == nil {
		return s
	}
	rep := r.r.Load()
	if rep == nil {
		return s
	}
	return rep.Replace(s)
}

// Error returns err unchanged when its text holds no secret, else an
// error whose text is redacted and which still wraps err for errors.Is
// and errors.As. Nil stays nil.
func (r *Redactor) Error(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	red := r.Redact(msg)
	if red == msg {
		return err
	}
	return &redactedError{msg: red, err: err}
}

type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// RedactForms are the encodings of v a Redactor replaces: v itself, lower
// and upper case hex, Base64Fragments, query and path escaping, and the
// escaped forms inside a JSON and a Go-quoted string, each once.
func RedactForms(v string) []string {
	if v == "" {
		return nil
	}
	forms := []string{v, hex.EncodeToString([]byte(v)), strings.ToUpper(hex.EncodeToString([]byte(v)))}
	forms = append(forms, Base64Fragments(v)...)
	forms = append(forms, url.QueryEscape(v), url.PathEscape(v), strings.ReplaceAll(url.QueryEscape(v), "+", "%20"))
	if b, err := json.Marshal(v); err == nil {
		forms = append(forms, string(b[1:len(b)-1]))
	}
	var sb strings.Builder
	enc := json.NewEncoder(&sb)
	enc.SetEscapeHTML(false)
	if enc.Encode(v) == nil {
		s := strings.TrimSpace(sb.String())
		forms = append(forms, s[1:len(s)-1])
	}
	q := strconv.Quote(v)
	forms = append(forms, q[1:len(q)-1])
	q = strconv.QuoteToASCII(v)
	forms = append(forms, q[1:len(q)-1])
	var out []string
	for _, f := range forms {
		if f != "" && !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	return out
}

// Writer returns a writer that redacts each write before passing it to w.
// It reports len(p) written when w took the whole redacted text.
func (r *Redactor) Writer(w io.Writer) io.Writer { return &redactWriter{r: r, w: w} }

type redactWriter struct {
	r *Redactor
	w io.Writer
}

func (rw *redactWriter) Write(p []byte) (int, error) {
	s := rw.r.Redact(string(p))
	if _, err := io.WriteString(rw.w, s); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Unwrap returns the writer underneath (to tell whether it is a terminal).
func (rw *redactWriter) Unwrap() io.Writer { return rw.w }

// Handler returns a slog.Handler that redacts a record's message and
// every attribute (string values, errors, and any other value whose text
// holds a secret, which is then logged as its redacted text) before h
// handles it.
func (r *Redactor) Handler(h slog.Handler) slog.Handler { return &redactHandler{r: r, h: h} }

type redactHandler struct {
	r *Redactor
	h slog.Handler
}

func (rh *redactHandler) Enabled(ctx context.Context, l slog.Level) bool { return rh.h.Enabled(ctx, l) }

func (rh *redactHandler) Handle(ctx context.Context, rec slog.Record) error {
	out := slog.NewRecord(rec.Time, rec.Level, rh.r.Redact(rec.Message), rec.PC)
	rec.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(rh.attr(a))
		return true
	})
	return rh.h.Handle(ctx, out)
}

func (rh *redactHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	red := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		red[i] = rh.attr(a)
	}
	return &redactHandler{r: rh.r, h: rh.h.WithAttrs(red)}
}

func (rh *redactHandler) WithGroup(name string) slog.Handler {
	return &redactHandler{r: rh.r, h: rh.h.WithGroup(name)}
}

func (rh *redactHandler) attr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, rh.r.Redact(v.String()))
	case slog.KindGroup:
		group := v.Group()
		red := make([]any, len(group))
		for i, g := range group {
			red[i] = rh.attr(g)
		}
		return slog.Group(a.Key, red...)
	case slog.KindAny:
		if err, ok := v.Any().(error); ok {
			return slog.String(a.Key, rh.r.Redact(err.Error()))
		}
		s := fmt.Sprint(v.Any())
		if red := rh.r.Redact(s); red != s {
			return slog.String(a.Key, red)
		}
	}
	return slog.Attr{Key: a.Key, Value: v}
}
