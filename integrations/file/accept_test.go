//go:build unix

package file

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/integrations"
	"github.com/rekey-dev/rekey/internal/leakcheck"
	"github.com/rekey-dev/rekey/providers/actionnetwork"
	"github.com/rekey-dev/rekey/secret"
)

// Accepts says, before any key exists, what Apply would say of a key's
// shape: for every format and key, Accepts refuses exactly the keys
// Apply refuses, in the same words, and takes every key of Action
// Network's form.
func TestAcceptsAgreesWithApply(t *testing.T) {
	files := map[string]struct{ content, field string }{
		FormatDotenv: {"A=1\nKEY='old'\n", "KEY"},
		FormatJSON:   {`{"an": {"key": "old"}}`, "an.key"},
		FormatYAML:   {"an:\n  key: old\n", "an.key"},
		FormatRaw:    {"old\n", ""},
	}
	keys := []struct {
		name, key string
		refused   map[string]string // format: what the refusal says
	}{
		{"hex", "0123456789abcdef0123456789abcdef", nil},
		{"punctuation", "ak_0f-1e.2d~3c", nil},
		{"single quote", "ab'cd", nil},
		{"quote and dollar", `ab'c$d`, map[string]string{FormatDotenv: "a single quote together with"}},
		{"backslash", `ab\cd`, map[string]string{FormatDotenv: "a backslash"}},
		{"line break inside", "ab\ncd", map[string]string{FormatDotenv: "line break", FormatJSON: "line break", FormatYAML: "line break", FormatRaw: "line break"}},
		{"tab inside", "ab\tcd", map[string]string{FormatDotenv: "control character", FormatJSON: "control character", FormatYAML: "control character", FormatRaw: "control character"}},
		{"space around", " abcd", map[string]string{FormatRaw: "white space around"}},
		{"invalid UTF-8", "ab\xffcd", map[string]string{FormatDotenv: "UTF-8", FormatJSON: "UTF-8", FormatYAML: "UTF-8", FormatRaw: "UTF-8"}},
	}
	for format, fc := range files {
		for _, k := range keys {
			t.Run(format+"/"+k.name, func(t *testing.T) {
				dir := t.TempDir()
				path := filepath.Join(dir, "target")
				writeFile(t, path, fc.content, 0o600)
				settings := map[string]any{"path": path, "format": format}
				if fc.field != "" {
					settings["field"] = fc.field
				}
				f := newFile(t, env(), settings)
				a, ok := any(f).(integrations.Acceptor)
				if !ok {
					t.Fatalf("%T is not an integrations.Acceptor", f)
				}
				acc := a.Accepts(secret.New(k.key))
				_, applied := f.Apply(context.Background(), integrations.ApplyRequest{Key: secret.New(k.key)})
				want, refused := k.refused[format]
				switch {
				case !refused && (acc != nil || applied != nil):
					t.Fatalf("Accepts: %v; Apply: %v; want both to take the key", acc, applied)
				case refused && (acc == nil || applied == nil):
					t.Fatalf("Accepts: %v; Apply: %v; want both to refuse the key", acc, applied)
				case refused:
					for what, err := range map[string]error{"Accepts": acc, "Apply": applied} {
						if !errors.Is(err, failure.ErrInvalid) || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), path) {
							t.Errorf("%s: %v; want invalid, naming %s, saying %q", what, err, path, want)
						}
						leakcheck.Assert(t, what+" error", []byte(err.Error()), k.key)
					}
					if got, _ := os.ReadFile(path); string(got) != fc.content {
						t.Errorf("a refused key changed the file: %q", got)
					}
				}
			})
		}
		t.Run(format+"/actionnetwork", func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "target")
			writeFile(t, path, fc.content, 0o600)
			settings := map[string]any{"path": path, "format": format}
			if fc.field != "" {
				settings["field"] = fc.field
			}
			if err := integrations.CheckAccepts(newFile(t, env(), settings), actionnetwork.KeyForm); err != nil {
				t.Errorf("keys of Action Network's form: %v", err)
			}
		})
	}
	// A form whose keys a dotenv file cannot all hold is found before
	// any key exists.
	path := filepath.Join(t.TempDir(), ".env")
	writeFile(t, path, "KEY=old\n", 0o600)
	err := integrations.CheckAccepts(newFile(t, env(), map[string]any{"path": path, "format": FormatDotenv, "field": "KEY"}),
		secret.Form{Alphabet: `abc'$`, MinLen: 8, MaxLen: 8})
	if !errors.Is(err, failure.ErrInvalid) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), `8 characters of "abc'$"`) {
		t.Errorf("CheckAccepts of a form with quotes and '$': %v", err)
	}
}
