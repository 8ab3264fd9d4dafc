package file

import (
	"errors"
	"strings"
	"testing"
)

// The new value in these tables is not a real key, so leakcheck has
// nothing to look for; the Apply tests in file_test.go check leaks.
const newValue = "an_NEW-key.42"

type rewriteCase struct {
	name    string
	in      string
	field   string
	value   string // newValue when empty
	want    string
	wantErr error
}

func runRewrite(t *testing.T, cases []rewriteCase, rewrite func([]byte, string, string) ([]byte, error), read func([]byte, string) (string, error)) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			value := tc.value
			if value == "" {
				value = newValue
			}
			got, err := rewrite([]byte(tc.in), tc.field, value)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("rewrite: error %v, want %v", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), value) {
					t.Errorf("error %q holds the value", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("rewrite: %v", err)
			}
			if string(got) != tc.want {
				t.Fatalf("rewrite:\n got %q\nwant %q", got, tc.want)
			}
			back, err := read(got, tc.field)
			if err != nil || back != value {
				t.Fatalf("read back %q, %v; want %q", back, err, value)
			}
			again, err := rewrite(got, tc.field, value)
			if err != nil || string(again) != string(got) {
				t.Fatalf("second rewrite changed the content: %q, %v", again, err)
			}
		})
	}
}

func TestRewriteDotenv(t *testing.T) {
	runRewrite(t, []rewriteCase{
		{name: "plain", in: "KEY=old\n", field: "KEY", want: "KEY=" + newValue + "\n"},
		{name: "no final newline", in: "A=1\nKEY=old", field: "KEY", want: "A=1\nKEY=" + newValue},
		{name: "export", in: "export KEY=old\n", field: "KEY", want: "export KEY=" + newValue + "\n"},
		{name: "indented export with tab", in: "  export\tKEY=old\n", field: "KEY", want: "  export\tKEY=" + newValue + "\n"},
		{name: "single quoted", in: "KEY='old'\n", field: "KEY", want: "KEY='" + newValue + "'\n"},
		{name: "double quoted", in: "KEY=\"old\"\n", field: "KEY", want: "KEY=\"" + newValue + "\"\n"},
		{name: "inline comment", in: "KEY=old # the key\n", field: "KEY", want: "KEY=" + newValue + " # the key\n"},
		{name: "quoted with comment", in: "KEY=\"old\"   # the key\n", field: "KEY", want: "KEY=\"" + newValue + "\"   # the key\n"},
		{name: "hash inside value", in: "KEY=o#ld\n", field: "KEY", want: "KEY=" + newValue + "\n"},
		{name: "spaces around equals", in: "KEY = old\n", field: "KEY", want: "KEY = " + newValue + "\n"},
		{name: "CRLF", in: "A=1\r\nKEY=old\r\nB=2\r\n", field: "KEY", want: "A=1\r\nKEY=" + newValue + "\r\nB=2\r\n"},
		{name: "CRLF quoted", in: "KEY='old'\r\n", field: "KEY", want: "KEY='" + newValue + "'\r\n"},
		{name: "trailing blanks kept", in: "KEY=old  \t\nB=2\n", field: "KEY", want: "KEY=" + newValue + "  \t\nB=2\n"},
		{name: "empty value", in: "KEY=\nB=2\n", field: "KEY", want: "KEY=" + newValue + "\nB=2\n"},
		{name: "empty value with comment", in: "KEY=   # fill me\n", field: "KEY", want: "KEY=" + newValue + "   # fill me\n"},
		{name: "empty quotes", in: "KEY=''\n", field: "KEY", want: "KEY='" + newValue + "'\n"},
		{name: "comment and neighbours kept", in: "# KEY=commented\nOTHER=KEY=old\nKEY=old\nKEY_2=old\n", field: "KEY", want: "# KEY=commented\nOTHER=KEY=old\nKEY=" + newValue + "\nKEY_2=old\n"},
		{name: "every duplicate", in: "KEY=a\nB=1\nexport KEY='b'\n", field: "KEY", want: "KEY=" + newValue + "\nB=1\nexport KEY='" + newValue + "'\n"},
		{name: "multi-line value of another variable", in: "CERT=\"-----\nKEY=inside\n-----\"\nKEY=old\n", field: "KEY", want: "CERT=\"-----\nKEY=inside\n-----\"\nKEY=" + newValue + "\n"},
		{name: "multi-line value replaced", in: "KEY=\"line1\nline2\"\nB=2\n", field: "KEY", want: "KEY=\"" + newValue + "\"\nB=2\n"},
		{name: "dotted name", in: "app.key=old\n", field: "app.key", want: "app.key=" + newValue + "\n"},
		{name: "already holds it", in: "KEY=\"" + newValue + "\" # x\n", field: "KEY", want: "KEY=\"" + newValue + "\" # x\n"},

		{name: "missing: appended", in: "A=1\n", field: "KEY", want: "A=1\nKEY=" + newValue + "\n"},
		{name: "missing: no final newline", in: "A=1", field: "KEY", want: "A=1\nKEY=" + newValue + "\n"},
		{name: "missing: CRLF file", in: "A=1\r\n", field: "KEY", want: "A=1\r\nKEY=" + newValue + "\r\n"},
		{name: "missing: export style", in: "# env\nexport A=1\n", field: "KEY", want: "# env\nexport A=1\nexport KEY=" + newValue + "\n"},
		{name: "missing: empty file", in: "", field: "KEY", want: "KEY=" + newValue + "\n"},
		{name: "missing: only commented", in: "#KEY=old\n", field: "KEY", want: "#KEY=old\nKEY=" + newValue + "\n"},

		{name: "value needs quotes", in: "KEY=old\n", field: "KEY", value: "a b#c", want: "KEY='a b#c'\n"},
		{name: "value with dollar leaves double quotes", in: "KEY=\"old\"\n", field: "KEY", value: "a$b", want: "KEY='a$b'\n"},
		{name: "value with single quote", in: "KEY='old'\n", field: "KEY", value: `it's x`, want: `KEY="it's x"` + "\n"},
		{name: "value with single quote and dollar", in: "KEY='old'\n", field: "KEY", value: `it's $x`, wantErr: errBadValue},
		{name: "value with backslash", in: "KEY=old\n", field: "KEY", value: `a\b`, wantErr: errBadValue},
		{name: "value starting with hash", in: "KEY=old\n", field: "KEY", value: "#abc", want: "KEY='#abc'\n"},
		{name: "non-ASCII value", in: "KEY=\"old\"\n", field: "KEY", value: "ключ", want: "KEY=\"ключ\"\n"},

		{name: "value with line break", in: "KEY=old\n", field: "KEY", value: "a\nb", wantErr: errBadValue},
		{name: "value with tab", in: "KEY=old\n", field: "KEY", value: "a\tb", wantErr: errBadValue},
		{name: "invalid UTF-8 value", in: "KEY=old\n", field: "KEY", value: "a\xffb", wantErr: errBadValue},
		{name: "unclosed quote", in: "KEY=\"old\nB=2\n", field: "KEY", wantErr: errSyntax},
		{name: "unclosed quote elsewhere", in: "A=\"x\nKEY=old\n", field: "KEY", value: `it's`, wantErr: errSyntax},
		{name: "bad name", in: "KEY=old\n", field: "1KEY", wantErr: errNoField},
	}, rewriteDotenv, readDotenv)
}

func TestReadDotenv(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
		wantErr        error
	}{
		{name: "plain", in: "KEY=abc\n", want: "abc"},
		{name: "comment", in: "KEY=abc # c\n", want: "abc"},
		{name: "hash without blank", in: "KEY=abc#c\n", want: "abc#c"},
		{name: "single quotes are literal", in: `KEY='a\nb # c'` + "\n", want: `a\nb # c`},
		{name: "double quote escapes", in: `KEY="a\"b\\c\nd\q"`, want: "a\"b\\c\nd\\q"},
		{name: "CRLF", in: "KEY=abc\r\n", want: "abc"},
		{name: "last wins", in: "KEY=first\nKEY=second\n", want: "second"},
		{name: "export", in: "export KEY=abc", want: "abc"},
		{name: "missing", in: "OTHER=abc\n", wantErr: errNoField},
		{name: "empty", in: "KEY=\n", wantErr: errNoValue},
		{name: "empty with comment", in: "KEY= # nothing\n", wantErr: errNoValue},
		{name: "empty quotes", in: "KEY=\"\"\n", wantErr: errNoValue},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := readDotenv([]byte(tc.in), "KEY")
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("error %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestRewriteJSON(t *testing.T) {
	runRewrite(t, []rewriteCase{
		{name: "nested", in: `{"actionnetwork": {"api_key": "old"}, "b": 1}`, field: "actionnetwork.api_key",
			want: `{"actionnetwork": {"api_key": "` + newValue + `"}, "b": 1}`},
		{name: "pretty, CRLF, order kept", in: "{\r\n  \"z\": true,\r\n  \"api_key\" :\t\"old\",\r\n  \"a\": [1, 2]\r\n}\r\n", field: "api_key",
			want: "{\r\n  \"z\": true,\r\n  \"api_key\" :\t\"" + newValue + "\",\r\n  \"a\": [1, 2]\r\n}\r\n"},
		{name: "list index", in: `{"keys":[{"value":"a"},{"value":"old","note":"x"}]}`, field: "keys.1.value",
			want: `{"keys":[{"value":"a"},{"value":"` + newValue + `","note":"x"}]}`},
		{name: "top-level list", in: `["a", "old"]`, field: "1", want: `["a", "` + newValue + `"]`},
		{name: "digits name an object member", in: `{"0": "old", "1": "x"}`, field: "0", want: `{"0": "` + newValue + `", "1": "x"}`},
		{name: "null is filled", in: `{"api_key": null}`, field: "api_key", want: `{"api_key": "` + newValue + `"}`},
		{name: "escaped strings around", in: `{"a\"b": "x\\\"y", "k": "o\u006cd", "c": "}"}`, field: "k",
			want: `{"a\"b": "x\\\"y", "k": "` + newValue + `", "c": "}"}`},
		{name: "every duplicate", in: `{"k": "a", "k": "b"}`, field: "k", want: `{"k": "` + newValue + `", "k": "` + newValue + `"}`},
		{name: "byte order mark kept", in: "\xEF\xBB\xBF{\"k\": \"old\"}\n", field: "k", want: "\xEF\xBB\xBF{\"k\": \"" + newValue + "\"}\n"},
		{name: "value needing escapes", in: `{"k": "old"}`, field: "k", value: `a"b\c<d>&`, want: `{"k": "a\"b\\c<d>&"}`},
		{name: "already holds it, escaped differently", in: `{"k": "a\/b"}`, field: "k", value: "a/b", want: `{"k": "a\/b"}`},
		{name: "deep", in: `{"a":{"b":{"c":[[],{"d":"old"}]}}}`, field: "a.b.c.1.d", want: `{"a":{"b":{"c":[[],{"d":"` + newValue + `"}]}}}`},

		{name: "missing", in: `{"a": {"b": "x"}}`, field: "a.c", wantErr: errNoField},
		{name: "through a string", in: `{"a": "x"}`, field: "a.b", wantErr: errNoField},
		{name: "index out of range", in: `{"a": ["x"]}`, field: "a.1", wantErr: errNoField},
		{name: "a number", in: `{"k": 123}`, field: "k", wantErr: errUnsupported},
		{name: "an object", in: `{"k": {}}`, field: "k", wantErr: errUnsupported},
		{name: "not JSON", in: `{"k": "old",}`, field: "k", wantErr: errSyntax},
		{name: "two documents", in: `{"k": "old"} {}`, field: "k", wantErr: errSyntax},
		{name: "empty path step", in: `{"k": "old"}`, field: "k..x", wantErr: errNoField},
		{name: "value with control character", in: `{"k": "old"}`, field: "k", value: "a\x00b", wantErr: errBadValue},
	}, rewriteJSON, readJSON)
}

func TestReadJSON(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
		wantErr        error
	}{
		{name: "string", in: `{"k": "a\u00e9\n"}`, want: "aé\n"},
		{name: "last duplicate", in: `{"k": "a", "k": "b"}`, want: "b"},
		{name: "null", in: `{"k": null}`, wantErr: errNoValue},
		{name: "empty", in: `{"k": ""}`, wantErr: errNoValue},
		{name: "bool", in: `{"k": true}`, wantErr: errUnsupported},
		{name: "missing", in: `{}`, wantErr: errNoField},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := readJSON([]byte(tc.in), "k")
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("error %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestRewriteYAML(t *testing.T) {
	runRewrite(t, []rewriteCase{
		{name: "plain", in: "# config\nactionnetwork:\n  api_key: old # the key\n  url: https://x/\n", field: "actionnetwork.api_key",
			want: "# config\nactionnetwork:\n  api_key: " + newValue + " # the key\n  url: https://x/\n"},
		{name: "single quoted", in: "api_key: 'old'\n", field: "api_key", want: "api_key: '" + newValue + "'\n"},
		{name: "double quoted", in: "api_key: \"old\"\n", field: "api_key", want: "api_key: \"" + newValue + "\"\n"},
		{name: "CRLF", in: "a: 1\r\napi_key: old\r\nb: 2\r\n", field: "api_key", want: "a: 1\r\napi_key: " + newValue + "\r\nb: 2\r\n"},
		{name: "list index", in: "keys:\n  - value: a\n  - value: old\n    note: x\n", field: "keys.1.value",
			want: "keys:\n  - value: a\n  - value: " + newValue + "\n    note: x\n"},
		{name: "flow mapping", in: "cfg: {api_key: old, x: 1}\n", field: "cfg.api_key", want: "cfg: {api_key: " + newValue + ", x: 1}\n"},
		{name: "flow sequence", in: "keys: [a, old]\n", field: "keys.1", want: "keys: [a, " + newValue + "]\n"},
		{name: "anchor kept", in: "api_key: &k old\nother: *k\n", field: "api_key", want: "api_key: &k " + newValue + "\nother: *k\n"},
		{name: "tag kept", in: "api_key: !!str old\n", field: "api_key", want: "api_key: !!str " + newValue + "\n"},
		{name: "tag on its own line", in: "api_key: !!str\n  old\n", field: "api_key", want: "api_key: !!str\n  " + newValue + "\n"},
		{name: "non-ASCII before the value", in: "näme: 'ключ'\nkey: {é: x, api_key: \"old\"}\n", field: "key.api_key",
			want: "näme: 'ключ'\nkey: {é: x, api_key: \"" + newValue + "\"}\n"},
		{name: "null filled", in: "api_key: ~\n", field: "api_key", want: "api_key: " + newValue + "\n"},
		{name: "document markers and BOM", in: "\xEF\xBB\xBF%YAML 1.1\n---\napi_key: old\n...\n", field: "api_key", want: "\xEF\xBB\xBF%YAML 1.1\n---\napi_key: " + newValue + "\n...\n"},
		{name: "every duplicate in a list", in: "a:\n  - k: old\n  - k: old\n", field: "a.0.k", want: "a:\n  - k: " + newValue + "\n  - k: old\n"},
		{name: "digits as a key", in: "'0': old\n", field: "0", want: "'0': " + newValue + "\n"},
		{name: "already holds it", in: "api_key: '" + newValue + "'\n", field: "api_key", want: "api_key: '" + newValue + "'\n"},
		{name: "multi-line double quoted", in: "api_key: \"old\n  key\"\nb: 1\n", field: "api_key", want: "api_key: \"" + newValue + "\"\nb: 1\n"},

		{name: "digits need quotes", in: "api_key: old\n", field: "api_key", value: "123456", want: "api_key: \"123456\"\n"},
		{name: "yes needs quotes", in: "api_key: old\n", field: "api_key", value: "yes", want: "api_key: \"yes\"\n"},
		{name: "blank needs quotes", in: "api_key: old\n", field: "api_key", value: "a #b: c", want: "api_key: \"a #b: c\"\n"},
		{name: "single quote doubled", in: "api_key: 'old'\n", field: "api_key", value: "it's", want: "api_key: 'it''s'\n"},
		{name: "double quote escapes", in: "api_key: \"old\"\n", field: "api_key", value: `a"b\c`, want: `api_key: "a\"b\\c"` + "\n"},
		{name: "comma in flow", in: "cfg: {api_key: old}\n", field: "cfg.api_key", value: "a,b", want: "cfg: {api_key: \"a,b\"}\n"},

		{name: "missing", in: "a: 1\n", field: "api_key", wantErr: errNoField},
		{name: "empty document", in: "# nothing\n", field: "api_key", wantErr: errNoField},
		{name: "block scalar", in: "api_key: |\n  old\n", field: "api_key", wantErr: errUnsupported},
		{name: "no value", in: "api_key:\nb: 1\n", field: "api_key", wantErr: errUnsupported},
		{name: "alias", in: "a: &k old\napi_key: *k\n", field: "api_key", wantErr: errUnsupported},
		{name: "through an alias", in: "a: &m {k: old}\nb: *m\n", field: "b.k", wantErr: errUnsupported},
		{name: "a mapping", in: "api_key: {a: 1}\n", field: "api_key", wantErr: errUnsupported},
		{name: "two documents", in: "api_key: old\n---\napi_key: old\n", field: "api_key", wantErr: errUnsupported},
		{name: "multi-line plain", in: "api_key: old\n  key\n", field: "api_key", wantErr: errUnsupported},
		{name: "not YAML", in: "a: [\n", field: "a", wantErr: errSyntax},
		{name: "UTF-16", in: "\xFF\xFEa\x00:\x00", field: "a", wantErr: errUnsupported},
		{name: "value with line break", in: "api_key: old\n", field: "api_key", value: "a\u2028b", wantErr: errBadValue},
	}, rewriteYAML, readYAML)
}

func TestReadYAML(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
		wantErr        error
	}{
		{name: "plain", in: "k: abc # c\n", want: "abc"},
		{name: "number text", in: "k: 0123\n", want: "0123"},
		{name: "literal block", in: "k: |\n  abc\n", want: "abc"},
		{name: "through an alias", in: "a: &v abc\nk: *v\n", want: "abc"},
		{name: "null", in: "k: null\n", wantErr: errNoValue},
		{name: "empty", in: "k:\n", wantErr: errNoValue},
		{name: "sequence", in: "k: [a]\n", wantErr: errUnsupported},
		{name: "missing", in: "a: 1\n", wantErr: errNoField},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := readYAML([]byte(tc.in), "k")
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("error %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestRewriteRaw(t *testing.T) {
	raw := func(c []byte, _, v string) ([]byte, error) { return rewriteRaw(c, v) }
	read := func(c []byte, _ string) (string, error) { return readRaw(c) }
	runRewrite(t, []rewriteCase{
		{name: "trailing newline kept", in: "old\n", want: newValue + "\n"},
		{name: "no newline", in: "old", want: newValue},
		{name: "white space kept", in: "  old \r\n\n", want: "  " + newValue + " \r\n\n"},
		{name: "empty file", in: "", want: newValue},
		{name: "only a newline", in: "\n", want: newValue + "\n"},
		{name: "several lines are one value", in: "a\nb\n", want: newValue + "\n"},
		{name: "white space around the value", in: "old\n", value: " x", wantErr: errBadValue},
		{name: "a line break in the value", in: "old\n", value: "x\ny", wantErr: errBadValue},
	}, raw, read)
}
