package scan

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"unicode"

	"gopkg.in/yaml.v3"

	"github.com/rekey-dev/rekey/internal/leakcheck"
	"github.com/rekey-dev/rekey/secret"
)

func TestSuggest(t *testing.T) {
	k := keyLeak
	cases := []struct {
		name, path, content string
		format, field       string // format "" means no suggestion
	}{
		{"dotenv by name", "/srv/www/.env", "# site\nDEBUG=0\nACTION_NETWORK_API_KEY=" + k + "\n", FormatDotenv, "ACTION_NETWORK_API_KEY"},
		{"dotenv export and quotes", "/srv/www/.env.production", "export A=1\nexport AN_KEY=\"" + k + "\" # rotated by rekey\n", FormatDotenv, "AN_KEY"},
		{"dotenv single quotes", "/srv/app.env", "AN_KEY='" + k + "'\n", FormatDotenv, "AN_KEY"},
		{"dotenv inline comment", "/srv/www/.env", "AN_KEY=" + k + " # main\n", FormatDotenv, "AN_KEY"},
		{"dotenv tab comment, blanks around =", "/srv/www/.env", "AN_KEY = " + k + "\t# main\n", FormatDotenv, "AN_KEY"},
		{"dotenv by content", "/etc/default/site", "# defaults\n\nLANG=C\nSITE_AN_KEY=" + k + "\n", FormatDotenv, "SITE_AN_KEY"},
		{"dotenv, key inside a URL", "/srv/www/.env", "WEBHOOK=https://x.example/?k=" + k + "\n", "", ""},
		{"json nested", "/srv/app/config.json", "{\n  \"db\": {\"host\": \"x\"},\n  \"actionnetwork\": {\n    \"api_key\": \"" + k + "\"\n  }\n}\n", FormatJSON, "actionnetwork.api_key"},
		{"json array, one line", "/srv/app/keys.JSON", `{"a":[1,{"b":null},{"key":"` + k + `"}],"z":true}`, FormatJSON, "a.2.key"},
		{"json, member name holds a dot", "/srv/app/c.json", `{"an.key":"` + k + `"}`, "", ""},
		{"json, key as a member name", "/srv/app/c.json", `{"` + k + `":1}`, "", ""},
		{"json, broken", "/srv/app/c.json", `{"key":"` + k + `"`, "", ""},
		{"yaml nested", "/srv/app/settings.yaml", "site:\n  name: www\n  actionnetwork:\n    api_key: " + k + "\n", FormatYAML, "site.actionnetwork.api_key"},
		{"yaml sequence, quoted", "/srv/app/settings.yml", "keys:\n  - name: an\n    value: \"" + k + "\"\n", FormatYAML, "keys.0.value"},
		{"yaml, key in a longer value", "/srv/app/settings.yml", "url: https://" + k + "@x\n", "", ""},
		{"raw", "/etc/rekey/an.key", k + "\n", FormatRaw, ""},
		{"raw, no newline", "/etc/rekey/an.key", k, FormatRaw, ""},
		{"unknown format", "/srv/app/main.py", "import os\nKEY = \"" + k + "\"\n", "", ""},
	}
	needle := Needle{Key: secret.New(k), Label: "v1", State: "compromised"}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			found, err := ScanReader(context.Background(), tc.path, bytes.NewReader([]byte(tc.content)), []Needle{needle})
			if err != nil || len(found) != 1 {
				t.Fatalf("scan: %v, %+v", err, found)
			}
			s, ok := Suggest(found[0], needle.Key, []byte(tc.content))
			if tc.format == "" {
				if ok {
					t.Errorf("suggested %+v", s)
				}
				return
			}
			want := Suggestion{Path: tc.path, Format: tc.format, Field: tc.field}
			if !ok || s != want {
				t.Errorf("got %+v %v, want %+v", s, ok, want)
			}
			leakcheck.Assert(t, "suggestion", fmt.Appendf(nil, "%#v %s", s, s.Entry("an")), k)
		})
	}
}

func TestSuggestNeedsARawFindingOnTheRightLine(t *testing.T) {
	k := secret.New(keyCur)
	content := []byte("A=1\nB=" + keyCur + "\n")
	f := Finding{Path: "/srv/.env", Line: 2, Encoding: EncodingRaw}
	if _, ok := Suggest(f, k, content); !ok {
		t.Fatal("no suggestion for a plain case")
	}
	for name, f := range map[string]Finding{
		"base64":     {Path: "/srv/.env", Line: 2, Encoding: EncodingBase64},
		"wrong line": {Path: "/srv/.env", Line: 1, Encoding: EncodingRaw},
		"no line":    {Path: "/srv/.env", Line: 9, Encoding: EncodingRaw},
	} {
		if s, ok := Suggest(f, k, content); ok {
			t.Errorf("%s: suggested %+v", name, s)
		}
	}
	if _, ok := Suggest(f, secret.New(keyOld), content); ok {
		t.Error("suggested a field that holds another key")
	}
}

func TestSuggestMakesPathsAbsolute(t *testing.T) {
	t.Chdir(t.TempDir())
	s, ok := Suggest(Finding{Path: "www/.env", Line: 1, Encoding: EncodingRaw}, secret.New(keyCur), []byte("K="+keyCur))
	wd, _ := filepath.Abs(".")
	if !ok || s.Path != filepath.Join(wd, "www", ".env") {
		t.Errorf("got %+v", s)
	}
}

func TestEntry(t *testing.T) {
	cases := []struct {
		s    Suggestion
		want string
	}{
		{Suggestion{Path: "/srv/www/.env", Format: FormatDotenv, Field: "ACTION_NETWORK_API_KEY"},
			`- {id: srv-www-env, key: actionnetwork-main, type: file, path: "/srv/www/.env", format: dotenv, field: "ACTION_NETWORK_API_KEY"}`},
		{Suggestion{Path: "/etc/rekey/an.key", Format: FormatRaw},
			`- {id: etc-rekey-an-key, key: actionnetwork-main, type: file, path: "/etc/rekey/an.key", format: raw}`},
		{Suggestion{Path: "/srv/My App: prod/config.json", Format: FormatJSON, Field: "a.b"},
			`- {id: srv-my-app-prod-config-json, key: actionnetwork-main, type: file, path: "/srv/My App: prod/config.json", format: json, field: "a.b"}`},
	}
	for _, tc := range cases {
		if got := tc.s.Entry("actionnetwork-main"); got != tc.want {
			t.Errorf("got  %s\nwant %s", got, tc.want)
		}
	}
}

func TestPathID(t *testing.T) {
	for in, want := range map[string]string{
		"/srv/www/.env":                     "srv-www-env",
		"/tmp/TestX/001/www/backup/old.env": "www-backup-old-env",
		"/.env":                             "env",
		"/":                                 "file",
	} {
		if got := pathID(in); got != want {
			t.Errorf("pathID(%q) = %q, want %q", in, got, want)
		}
	}
	long := pathID("/srv/" + strings.Repeat("a-", 60) + "/x.env")
	if len(long) > maxID || !strings.HasSuffix(long, "a-x-env") || long[0] == '-' {
		t.Errorf("pathID of a long path = %q", long)
	}
}

// TestEntryNamesAnyFile: whatever a file is called, its entry is YAML
// that names exactly that file, on one line, with no character a terminal
// would act on (escape sequences, line breaks, bidirectional overrides).
func TestEntryNamesAnyFile(t *testing.T) {
	names := []string{
		"/srv/www/.env",
		"/srv/a b/.env",
		"/srv/x: y #z/.env",
		"/srv/\x1b[31mred\x1b[0m/.env",
		"/srv/evil\n- {id: evil, key: actionnetwork-main, type: exec, apply: [sh, -c, 'curl evil']}\n/.env",
		"/srv/cr\roverwrite/.env",
		"/srv/\"q'\\/.env",
		"/srv/\u202etxt.exe/.env",
		"/srv/tab\there/.env",
		"/srv/nul\x00/.env",
		"/srv/{[&*!|>%@`]}/.env",
		"/srv/" + strings.Repeat("long name ", 20) + "/.env",
		"/srv/日本語/.env",
	}
	for _, name := range names {
		for _, field := range []string{"ACTION_NETWORK_API_KEY", "a.b: c\n- x", "\x1b]0;title\x07"} {
			e := Suggestion{Path: name, Format: FormatDotenv, Field: field}.Entry("actionnetwork-main")
			var got []map[string]string
			if err := yaml.Unmarshal([]byte(e), &got); err != nil || len(got) != 1 {
				t.Fatalf("entry for %q is not one YAML item: %v\n%s", name, err, e)
			}
			if got[0]["path"] != name || got[0]["field"] != field || got[0]["type"] != "file" || got[0]["key"] != "actionnetwork-main" || len(got[0]) != 6 {
				t.Errorf("entry for %q reads back as %q", name, got[0])
			}
			if strings.Contains(e, "\n") {
				t.Errorf("entry for %q is more than one line:\n%s", name, e)
			}
			for _, r := range e {
				if !unicode.IsPrint(r) {
					t.Errorf("entry for %q holds %U:\n%q", name, r, e)
					break
				}
			}
		}
	}
}
