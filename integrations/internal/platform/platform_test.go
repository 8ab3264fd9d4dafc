package platform

import (
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/rekey-dev/rekey/config"
	"github.com/rekey-dev/rekey/integrations"
)

type fields struct {
	Settings `mapstructure:",squash"`
	Targets  []string `mapstructure:"targets"`
}

func host(in config.Integration) integrations.Host {
	return integrations.Host{Config: &config.Config{File: "rekey.yaml", Integrations: []config.Integration{in}}}
}

// The common settings decode beside a type's own (squashed), unknown
// fields are still refused, and each check names the file, item and field.
func TestSettings(t *testing.T) {
	spec := Spec{Variable: regexp.MustCompile(`^\w+$`), VariableIs: "a var name", VariableHint: "(the var)", TokenHint: "a token", APIURL: "https://api.example/"}
	good := map[string]any{"variable": "AN_KEY", "token_env": "TOKEN", "targets": []any{"a"}}
	for _, c := range []struct {
		name  string
		set   map[string]any
		field string // "" when it must pass
		msg   string
	}{
		{"good", nil, "", ""},
		{"unknown field", map[string]any{"colour": "red"}, "", "colour"},
		{"no variable", map[string]any{"variable": ""}, "variable", "required (the var)"},
		{"bad variable", map[string]any{"variable": "A-B"}, "variable", `"A-B" is not a var name`},
		{"no token_env", map[string]any{"token_env": ""}, "token_env", "holding a token"},
		{"bad token_env", map[string]any{"token_env": "1X"}, "token_env", "not an environment variable name"},
		{"bad api_url", map[string]any{"api_url": "ftp://x"}, "api_url", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := map[string]any{}
			for k, v := range good {
				s[k] = v
			}
			for k, v := range c.set {
				s[k] = v
			}
			in := config.Integration{ID: "x", Type: "p", Settings: s}
			h := host(in)
			var f fields
			err := h.Config.DecodeSettings(in, &f)
			if err == nil {
				err = f.Check(h, in, spec)
			}
			if err == nil {
				_, err = f.Client(h, in, spec)
			}
			if c.name == "good" {
				if err != nil || f.Variable != "AN_KEY" || f.TokenEnv != "TOKEN" || len(f.Targets) != 1 {
					t.Fatalf("err %v, fields %+v", err, f)
				}
				return
			}
			var ce *config.Error
			if err == nil || !strings.Contains(err.Error(), "rekey.yaml") || !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("err = %v, want one naming the file and saying %q", err, c.msg)
			}
			if c.field != "" && (!errors.As(err, &ce) || ce.Field != c.field) {
				t.Fatalf("err = %#v, want field %s", err, c.field)
			}
		})
	}
}

func TestClientTakesTheDefaultAPI(t *testing.T) {
	in := config.Integration{ID: "x", Type: "p"}
	c, err := Settings{TokenEnv: "T"}.Client(host(in), in, Spec{APIURL: "https://api.example/v1/"})
	if err != nil || c.Base.String() != "https://api.example/v1/" || c.TokenEnv != "T" || c.HTTP == nil {
		t.Fatalf("client %+v, %v", c, err)
	}
}

func TestChoices(t *testing.T) {
	in := config.Integration{ID: "x", Type: "p"}
	h := host(in)
	allowed, def := []string{"production", "preview"}, []string{"production"}
	if got, err := Choices(h, in, "targets", nil, def, allowed); err != nil || len(got) != 1 || got[0] != "production" {
		t.Fatalf("unset: %v, %v", got, err)
	}
	if got, err := Choices(h, in, "targets", []string{"preview", "production"}, def, allowed); err != nil || len(got) != 2 {
		t.Fatalf("both: %v, %v", got, err)
	}
	for _, c := range []struct {
		got   []string
		field string
		msg   string
	}{
		{[]string{}, "targets", "empty"},
		{[]string{"prod"}, "targets[0]", `"prod" is not one of production, preview`},
		{[]string{"preview", "preview"}, "targets[1]", "named twice"},
	} {
		_, err := Choices(h, in, "targets", c.got, def, allowed)
		var ce *config.Error
		if !errors.As(err, &ce) || ce.Field != c.field || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%v: err = %v, want field %s saying %q", c.got, err, c.field, c.msg)
		}
	}
}

// An api_url that holds credentials is refused, and the error does not
// show them.
func TestAPIURLWithCredentialsIsNotEchoed(t *testing.T) {
	in := config.Integration{ID: "x", Type: "p"}
	_, err := Settings{TokenEnv: "T", APIURL: "https://bot:s3cr3t-passw0rd@api.example/"}.Client(host(in), in, Spec{})
	if err == nil || !strings.Contains(err.Error(), "api_url") || strings.Contains(err.Error(), "s3cr3t-passw0rd") {
		t.Fatalf("err = %v", err)
	}
}
