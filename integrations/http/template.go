package http

import (
	"bytes"
	"encoding/json"
	"fmt"
	"mime"
	"net/url"
	"regexp"
	"strings"

	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/secret"
)

// template is a configured string with ${VAR} and {{key}} slots, expanded
// in one pass so that a value from the environment is never searched for
// slots itself.
type template struct {
	src   string
	parts []part
}

type part struct {
	lit string
	env string // ${env}
	key bool   // {{key}}
}

var (
	slotRE   = regexp.MustCompile(`\$\{([^}]*)\}|\{\{\s*([A-Za-z_]*)\s*\}\}`)
	envRE    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	keyUsage = "{{key}}"
)

// parseTemplate splits s into literal text and slots. env allows ${VAR};
// key allows {{key}}. The error is a message for config.Invalid.
func parseTemplate(s string, env, key bool) (template, error) {
	t := template{src: s}
	last := 0
	for _, m := range slotRE.FindAllStringSubmatchIndex(s, -1) {
		if m[0] > last {
			t.parts = append(t.parts, part{lit: s[last:m[0]]})
		}
		last = m[1]
		switch {
		case m[2] >= 0 && !env:
			// ${...} is left as it is where the environment is not read
			// (the body): it may be the target's own syntax.
			t.parts = append(t.parts, part{lit: s[m[0]:m[1]]})
		case m[2] >= 0:
			name := s[m[2]:m[3]]
			if !envRE.MatchString(name) {
				return t, fmt.Errorf("${%s} is not an environment variable name", name)
			}
			t.parts = append(t.parts, part{env: name})
		case s[m[4]:m[5]] == "key":
			if !key {
				return t, fmt.Errorf("%s is never in a URL, which logs and errors show: put it in a header or the body", keyUsage)
			}
			t.parts = append(t.parts, part{key: true})
		case strings.EqualFold(s[m[4]:m[5]], "key"):
			return t, fmt.Errorf("%s is not a slot: write %s", s[m[0]:m[1]], keyUsage)
		default:
			t.parts = append(t.parts, part{lit: s[m[0]:m[1]]})
		}
	}
	if last < len(s) {
		t.parts = append(t.parts, part{lit: s[last:]})
	}
	if env {
		for _, p := range t.parts {
			if strings.Contains(p.lit, "${") {
				return t, fmt.Errorf("unterminated ${ (write ${NAME})")
			}
		}
	}
	return t, nil
}

func (t template) hasKey() bool {
	for _, p := range t.parts {
		if p.key {
			return true
		}
	}
	return false
}

// expand fills the slots: ${VAR} from getenv (unset or empty is an error
// naming VAR), {{key}} with escape(key).
func (t template) expand(getenv func(string) string, key secret.Key, escape func(string) string) (string, error) {
	var b strings.Builder
	for _, p := range t.parts {
		switch {
		case p.env != "":
			v := getenv(p.env)
			if v == "" {
				return "", fmt.Errorf("environment variable %s is not set: %w", p.env, failure.ErrInvalid)
			}
			b.WriteString(v)
		case p.key:
			b.WriteString(escape(key.Reveal()))
		default:
			b.WriteString(p.lit)
		}
	}
	return b.String(), nil
}

// bodyMode says how {{key}} is written into a body.
type bodyMode int

const (
	bodyRaw        bodyMode = iota // as it is
	bodyJSONString                 // inside a JSON string: escaped, no quotes
	bodyJSONValue                  // as a JSON value: a quoted, escaped string
	bodyForm                       // application/x-www-form-urlencoded: percent-encoded
)

// detectBody decides how to write the key into body. With a JSON
// Content-Type (application/json, */*+json) the body must be JSON once
// {{key}} is filled; with none, a body that starts with { or [ and is JSON
// once filled is sent as JSON. {{key}} inside a JSON string gets the key
// escaped for a JSON string; {{key}} standing as a value gets a quoted
// JSON string. A form body gets the key percent-encoded. Anything else is
// sent as it is.
func detectBody(t template, contentType string) (bodyMode, error) {
	media := ""
	if contentType != "" {
		m, _, err := mime.ParseMediaType(contentType)
		if err != nil {
			return 0, fmt.Errorf("Content-Type %q does not parse", contentType)
		}
		media = m
	}
	isJSON := media == "application/json" || strings.HasSuffix(media, "+json")
	switch {
	case media == "application/x-www-form-urlencoded":
		return bodyForm, nil
	case media != "" && !isJSON:
		return bodyRaw, nil
	}
	filled := func(v string) []byte {
		var b strings.Builder
		for _, p := range t.parts {
			switch {
			case p.key:
				b.WriteString(v)
			case p.env != "":
				b.WriteString("${" + p.env + "}")
			default:
				b.WriteString(p.lit)
			}
		}
		return []byte(b.String())
	}
	if !isJSON {
		trimmed := bytes.TrimSpace(filled("k"))
		if len(trimmed) == 0 || (trimmed[0] != '{' && trimmed[0] != '[') {
			return bodyRaw, nil
		}
	}
	switch {
	case json.Valid(filled("k")):
		return bodyJSONString, nil
	case json.Valid(filled(`"k"`)):
		return bodyJSONValue, nil
	}
	if isJSON {
		return 0, fmt.Errorf("is not JSON with %s inside a string or standing as a value", keyUsage)
	}
	return bodyRaw, nil
}

func (m bodyMode) escape(k string) string {
	switch m {
	case bodyJSONString, bodyJSONValue:
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false)
		enc.Encode(k)
		s := strings.TrimSuffix(b.String(), "\n")
		if m == bodyJSONString {
			s = s[1 : len(s)-1]
		}
		return s
	case bodyForm:
		return url.QueryEscape(k)
	}
	return k
}

func raw(k string) string { return k }

// pointer is a parsed RFC 6901 JSON pointer.
type pointer struct {
	src    string
	tokens []string
}

func parsePointer(s string) (pointer, error) {
	p := pointer{src: s}
	if s == "" {
		return p, nil
	}
	if s[0] != '/' {
		return p, fmt.Errorf("%q is not a JSON pointer (RFC 6901): it must start with /", s)
	}
	for _, tok := range strings.Split(s[1:], "/") {
		for i := 0; i < len(tok); i++ {
			if tok[i] == '~' && (i+1 == len(tok) || (tok[i+1] != '0' && tok[i+1] != '1')) {
				return p, fmt.Errorf("%q is not a JSON pointer (RFC 6901): ~ must be followed by 0 or 1", s)
			}
		}
		p.tokens = append(p.tokens, strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~"))
	}
	return p, nil
}

// resolve finds the value the pointer names, or says why there is none
// without quoting the document.
func (p pointer) resolve(doc any) (any, error) {
	cur := doc
	for i, tok := range p.tokens {
		at := "/" + strings.Join(escapeTokens(p.tokens[:i]), "/")
		switch v := cur.(type) {
		case map[string]any:
			next, ok := v[tok]
			if !ok {
				return nil, fmt.Errorf("no member %q in the object at %s", tok, at)
			}
			cur = next
		case []any:
			n, ok := arrayIndex(tok)
			if !ok || n >= len(v) {
				return nil, fmt.Errorf("no element %q in the array at %s", tok, at)
			}
			cur = v[n]
		default:
			return nil, fmt.Errorf("%s is a %s, not an object or array", at, jsonKind(cur))
		}
	}
	return cur, nil
}

func escapeTokens(toks []string) []string {
	out := make([]string, len(toks))
	for i, t := range toks {
		out[i] = strings.ReplaceAll(strings.ReplaceAll(t, "~", "~0"), "/", "~1")
	}
	return out
}

func arrayIndex(tok string) (int, bool) {
	if tok == "" || len(tok) > 9 || (len(tok) > 1 && tok[0] == '0') {
		return 0, false
	}
	n := 0
	for _, c := range tok {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case json.Number, float64:
		return "number"
	case string:
		return "string"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", v)
}
