package secret_test

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/internal/leakcheck"
	"github.com/rekey-dev/rekey/secret"
)

// everyEncoding is text holding v in each encoding a careless line of code
// (or a peer echoing a request) could produce.
func everyEncoding(v string) string {
	b := []byte(v)
	var parts []string
	parts = append(parts, "raw "+v, "hex "+hex.EncodeToString(b), "HEX "+strings.ToUpper(hex.EncodeToString(b)))
	for _, pre := range []string{"", "A", "AB", "API_KEY="} {
		parts = append(parts,
			"std "+base64.StdEncoding.EncodeToString(append([]byte(pre), b...)),
			"url "+base64.RawURLEncoding.EncodeToString(append([]byte(pre), b...)))
	}
	j, _ := json.Marshal(map[string]string{"v": v})
	parts = append(parts, "query ?k="+url.QueryEscape(v), "path /"+url.PathEscape(v), "json "+string(j), fmt.Sprintf("quoted %q", v))
	return strings.Join(parts, "\n")
}

func TestRedactorReplacesEveryEncoding(t *testing.T) {
	secrets := []string{
		"an-0123456789abcdef0123456789abcdef", // a key
		"hvs.CAESIJ0kq9c3-vault-token_xyz",    // a Vault token
		`p@ss "word" <&> with/slash+plus=`,    // a ${VAR} value needing every escape
		"tab\there and a newline\nhere ok",    // Go-quoted and JSON-escaped differ
	}
	r := secret.NewRedactor()
	r.Add(secrets...)
	for _, s := range secrets {
		text := everyEncoding(s)
		if len(leakcheck.Find([]byte(text), s)) == 0 {
			t.Fatalf("test text holds no form of %q", s)
		}
		got := r.Redact(text)
		if found := leakcheck.Find([]byte(got), s); len(found) > 0 {
			t.Errorf("%q: still holds %v after redaction:\n%s", s, found, got)
		}
		for _, enc := range []string{url.QueryEscape(s), url.PathEscape(s)} {
			if strings.Contains(got, enc) {
				t.Errorf("%q: URL-encoded form %q left in:\n%s", s, enc, got)
			}
		}
		if !strings.Contains(got, secret.Marker) {
			t.Errorf("%q: no marker in %s", s, got)
		}
	}
}

func TestRedactorLeavesOtherTextAlone(t *testing.T) {
	r := secret.NewRedactor()
	r.Add("short", "") // shorter than MinRedactLen: ignored
	r.AddKey(secret.New("an-0123456789abcdef0123456789abcdef"))
	text := "a short note: status 503, connection refused (sha256:0123456789ab)"
	if got := r.Redact(text); got != text {
		t.Fatalf("Redact changed text holding no secret: %q", got)
	}
	var nilR *secret.Redactor
	if got := nilR.Redact("an-0123456789abcdef0123456789abcdef"); got != "an-0123456789abcdef0123456789abcdef" {
		t.Fatal("a nil Redactor changed text")
	}
	if err := r.Error(nil); err != nil {
		t.Fatalf("Error(nil) = %v", err)
	}
}

func TestRedactorErrorKeepsItsClass(t *testing.T) {
	const tok = "xoxb-1234567890-abcdefghijkl"
	r := secret.NewRedactor()
	r.Add(tok)
	err := r.Error(fmt.Errorf("slack: answer quoted Bearer %s: %w", tok, failure.ErrTransient))
	if strings.Contains(err.Error(), tok) || !strings.Contains(err.Error(), secret.Marker) {
		t.Fatalf("error text %q", err)
	}
	if !errors.Is(err, failure.ErrTransient) {
		t.Fatalf("redacted error lost its class: %v", err)
	}
	plain := errors.New("nothing secret here")
	if r.Error(plain) != plain {
		t.Fatal("an error holding no secret was replaced")
	}
}

func TestRedactorWriterAndHandler(t *testing.T) {
	const key = "an-fedcba9876543210fedcba9876543210"
	r := secret.NewRedactor()
	r.Add(key)

	var out bytes.Buffer
	w := r.Writer(&out)
	msg := "rekey: error: the target said " + base64.StdEncoding.EncodeToString([]byte("k="+key)) + "\n"
	if n, err := io.WriteString(w, msg); err != nil || n != len(msg) {
		t.Fatalf("Write = %d, %v; want %d", n, err, len(msg))
	}
	if u, ok := w.(interface{ Unwrap() io.Writer }); !ok || u.Unwrap() != &out {
		t.Fatal("the writer does not say what it wraps")
	}

	for _, h := range []slog.Handler{slog.NewTextHandler(&out, nil), slog.NewJSONHandler(&out, nil)} {
		log := slog.New(r.Handler(h)).With("target", "echoed "+key)
		log.Info("peer said "+key,
			"reason", "quoted "+hex.EncodeToString([]byte(key)),
			"err", fmt.Errorf("wrapped %s", key),
			slog.Group("req", "header", "OSDI-API-Token: "+key),
			"value", struct{ K string }{key},
			"n", 3)
		log.WithGroup("g").Warn("again", "k", key)
	}
	leakcheck.Assert(t, "writer and log output", out.Bytes(), key)
	for _, want := range []string{`n=3`, `"n":3`, secret.Marker} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lost %q:\n%s", want, out.String())
		}
	}
}

func TestRedactorConcurrentUse(t *testing.T) {
	r := secret.NewRedactor()
	var wg sync.WaitGroup
	keys := make([]string, 50)
	for i := range keys {
		keys[i] = fmt.Sprintf("key-%02d-0123456789abcdef", i)
	}
	for i := range keys {
		wg.Go(func() { r.Add(keys[i]) })
		wg.Go(func() { _ = r.Redact("text with " + keys[i]) })
	}
	wg.Wait()
	all := strings.Join(keys, " ")
	if found := leakcheck.Find([]byte(r.Redact(all)), keys...); len(found) > 0 {
		t.Fatalf("after concurrent Adds, %v left", found)
	}
}

// BenchmarkRedact measures the second wall's cost on a typical reason
// with the secrets of a run (a key's versions, tokens, ${VAR} values).
func BenchmarkRedact(b *testing.B) {
	r := secret.NewRedactor()
	for i := range 20 {
		r.Add(fmt.Sprintf("secret-%02d-0123456789abcdef0123", i))
	}
	reason := "http: apply PUT ${TARGET}/wp-json/signup/v1/settings: status 503: transient failure (retry after 2s)"
	b.ReportAllocs()
	for b.Loop() {
		_ = r.Redact(reason)
	}
}
