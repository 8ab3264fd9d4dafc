package http

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/rekey-dev/rekey/secret"
)

func TestTemplateExpand(t *testing.T) {
	env := map[string]string{"WP_TOKEN": "tok-1", "HOST": "site.example", "LOOKS_LIKE_SLOT": "{{key}}${HOST}"}
	getenv := func(k string) string { return env[k] }
	key := secret.New("the-key")
	cases := []struct {
		name, src string
		env, key  bool
		want      string
		parseErr  string
		expandErr string
	}{
		{"literal", "plain text", true, true, "plain text", "", ""},
		{"env", "Bearer ${WP_TOKEN}", true, false, "Bearer tok-1", "", ""},
		{"two slots", "https://${HOST}/x?k={{key}}", true, true, "https://site.example/x?k=the-key", "", ""},
		{"spaced key slot", "X {{ key }} Y", false, true, "X the-key Y", "", ""},
		{"env value is not searched for slots", "${LOOKS_LIKE_SLOT}", true, true, "{{key}}${HOST}", "", ""},
		{"body keeps ${...}", "cost: ${PRICE}", false, true, "cost: ${PRICE}", "", ""},
		{"other braces stay", "{{name}} {{key}}", false, true, "{{name}} the-key", "", ""},
		{"unset env", "Bearer ${NOPE}", true, false, "", "", "environment variable NOPE is not set"},
		{"bad env name", "${1X}", true, false, "", "is not an environment variable name", ""},
		{"unterminated", "https://${HOST/x", true, false, "", "unterminated ${", ""},
		{"key where not allowed", "https://x/{{key}}", true, false, "", "never in a URL", ""},
		{"wrong case", "{{KEY}}", false, true, "", "write {{key}}", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tm, err := parseTemplate(c.src, c.env, c.key)
			if c.parseErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.parseErr) {
					t.Fatalf("parse: %v, want %q", err, c.parseErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			got, err := tm.expand(getenv, key, raw)
			if c.expandErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.expandErr) {
					t.Fatalf("expand: %v, want %q", err, c.expandErr)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("expand = %q, %v; want %q", got, err, c.want)
			}
		})
	}
}

func TestBodyModes(t *testing.T) {
	awkward := "k\"ey\\with</script>\u2028é\n"
	cases := []struct {
		name, body, contentType string
		mode                    bodyMode
		err                     bool
	}{
		{"JSON string by content type", `{"api_key": "{{key}}"}`, "application/json", bodyJSONString, false},
		{"JSON value by content type", `{"api_key": {{key}}}`, "application/json; charset=utf-8", bodyJSONValue, false},
		{"vendor JSON", `{"k": "{{key}}"}`, "application/vnd.api+json", bodyJSONString, false},
		{"JSON sniffed", ` {"api_key": "{{key}}", "n": 1}`, "", bodyJSONString, false},
		{"JSON array sniffed", `[{{key}}]`, "", bodyJSONValue, false},
		{"bare slot is raw", `{{key}}`, "", bodyRaw, false},
		{"text is raw", `{{key}}`, "text/plain", bodyRaw, false},
		{"form", `api_key={{key}}&x=1`, "application/x-www-form-urlencoded", bodyForm, false},
		{"not JSON but sniffed brace", `{api_key: {{key}}}`, "", bodyRaw, false},
		{"declared JSON that is not", `api_key={{key}}`, "application/json", 0, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tm, err := parseTemplate(c.body, false, true)
			if err != nil {
				t.Fatal(err)
			}
			mode, err := detectBody(tm, c.contentType)
			if c.err {
				if err == nil {
					t.Fatalf("mode %v, want an error", mode)
				}
				return
			}
			if err != nil || mode != c.mode {
				t.Fatalf("mode %v, %v; want %v", mode, err, c.mode)
			}
			out, err := tm.expand(nil, secret.New(awkward), mode.escape)
			if err != nil {
				t.Fatal(err)
			}
			if mode == bodyJSONString || mode == bodyJSONValue {
				var doc any
				if err := json.Unmarshal([]byte(out), &doc); err != nil {
					t.Fatalf("filled body is not JSON: %v", err)
				}
				if !strings.Contains(string(mustJSON(doc)), string(mustJSON(awkward))) {
					t.Fatal("the key did not survive a JSON round trip")
				}
			}
		})
	}
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

func TestPointer(t *testing.T) {
	// The example document of RFC 6901 section 5.
	var doc any
	json.Unmarshal([]byte(`{"foo": ["bar", "baz"], "": 0, "a/b": 1, "c%d": 2, "e^f": 3,
		"g|h": 4, "i\\j": 5, "k\"l": 6, " ": 7, "m~n": 8, "s": {"key": "v"}}`), &doc)
	cases := []struct {
		ptr   string
		want  string // JSON of the value
		found bool
	}{
		{"", "", true},
		{"/foo", `["bar","baz"]`, true},
		{"/foo/0", `"bar"`, true},
		{"/", `0`, true},
		{"/a~1b", `1`, true},
		{"/c%d", `2`, true},
		{"/e^f", `3`, true},
		{"/g|h", `4`, true},
		{"/i\\j", `5`, true},
		{"/k\"l", `6`, true},
		{"/ ", `7`, true},
		{"/m~0n", `8`, true},
		{"/s/key", `"v"`, true},
		{"/foo/2", "", false},
		{"/foo/01", "", false},
		{"/foo/-", "", false},
		{"/nope", "", false},
		{"/s/key/deeper", "", false},
	}
	for _, c := range cases {
		p, err := parsePointer(c.ptr)
		if err != nil {
			t.Fatalf("%q: %v", c.ptr, err)
		}
		v, err := p.resolve(doc)
		if (err == nil) != c.found {
			t.Fatalf("%q: %v, want found %v", c.ptr, err, c.found)
		}
		if c.found && c.want != "" && string(mustJSON(v)) != c.want {
			t.Fatalf("%q = %s, want %s", c.ptr, mustJSON(v), c.want)
		}
	}
	for _, bad := range []string{"foo", "/a~2", "/a~"} {
		if _, err := parsePointer(bad); err == nil {
			t.Fatalf("%q parsed", bad)
		}
	}
}
