package scan

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"gopkg.in/yaml.v3"

	"github.com/rekey-dev/rekey/secret"
)

// Formats in Suggestion.Format: those of the file integration.
const (
	FormatDotenv = "dotenv"
	FormatJSON   = "json"
	FormatYAML   = "yaml"
	FormatRaw    = "raw"
)

// Suggestion says how a file that holds a key could be managed by a
// `file` integration. It holds no key text.
type Suggestion struct {
	Path   string // absolute when it could be made so
	Format string // a Format constant
	Field  string // dotenv variable or JSON/YAML dotted path; "" for raw
}

// Suggest works out, for a raw finding, the format of the file and the
// field whose whole value is the key, so that rekey can print a file
// integration entry. content is the file's content and key the finding's
// needle's key (needles[f.Needle].Key). The format comes from the name (.json, .yaml/.yml, .env
// and .env.*, *.env), else raw when the whole file is the key, else dotenv
// when every line is a NAME=value assignment or a comment. The field is
// the one on the finding's line whose value is exactly the key (first one
// if several). ok is false for a base64 finding, for a key embedded in a
// longer value (a URL, a connection string) and for any other format:
// rewriting the whole value there would break the file.
func Suggest(f Finding, key secret.Key, content []byte) (s Suggestion, ok bool) {
	if f.Encoding != EncodingRaw || key.IsZero() || !utf8.ValidString(f.Path) {
		return Suggestion{}, false
	}
	// The key is needed to find where it sits; it never leaves this function.
	v := key.Reveal()
	s.Path = f.Path
	if abs, err := filepath.Abs(f.Path); err == nil {
		s.Path = abs
	}
	name := filepath.Base(f.Path)
	switch ext := strings.ToLower(filepath.Ext(name)); {
	case ext == ".json":
		s.Format = FormatJSON
		s.Field, ok = jsonField(content, v, f.Line)
	case ext == ".yaml" || ext == ".yml":
		s.Format = FormatYAML
		s.Field, ok = yamlField(content, v, f.Line)
	case name == ".env" || strings.HasPrefix(name, ".env.") || ext == ".env":
		s.Format = FormatDotenv
		s.Field, ok = dotenvField(content, v, f.Line)
	case string(bytes.TrimSpace(content)) == v:
		s.Format, ok = FormatRaw, true
	case looksDotenv(content):
		s.Format = FormatDotenv
		s.Field, ok = dotenvField(content, v, f.Line)
	}
	if !ok {
		return Suggestion{}, false
	}
	return s, true
}

// Entry renders the suggestion as a YAML list item for the integrations
// section, on one line, with an id made from the path. For /srv/www/.env
// and the key actionnetwork-main it is the second line of
//
//	integrations:
//	- {id: srv-www-env, key: actionnetwork-main, type: file, path: "/srv/www/.env", format: dotenv, field: "ACTION_NETWORK_API_KEY"}
//
// The path and the field come from the file system and the file's
// content, so they are double-quoted: YAML reads them back exactly, line
// breaks and all, and every character a terminal would act on is written
// as an escape (\n, \e, \u202E). A path that is not UTF-8 has no entry:
// YAML cannot hold it, and Suggest declines it.
func (s Suggestion) Entry(keyID string) string {
	m := &yaml.Node{Kind: yaml.MappingNode, Style: yaml.FlowStyle}
	add := func(k, v string, style yaml.Style) {
		m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: k}, &yaml.Node{Kind: yaml.ScalarNode, Value: v, Style: style})
	}
	add("id", pathID(s.Path), 0)
	add("key", keyID, 0)
	add("type", "file", 0)
	add("path", s.Path, yaml.DoubleQuotedStyle)
	add("format", s.Format, 0)
	if s.Field != "" {
		add("field", s.Field, yaml.DoubleQuotedStyle)
	}
	var b strings.Builder
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	// Marshalling strings cannot fail.
	_ = enc.Encode(&yaml.Node{Kind: yaml.SequenceNode, Content: []*yaml.Node{m}})
	_ = enc.Close()
	return escapeUnprintable(strings.TrimSuffix(b.String(), "\n"))
}

// escapeUnprintable writes the characters YAML counts as printable but a
// terminal acts on (bidirectional overrides, line and paragraph
// separators, other format characters) as \u escapes. yaml.v3 emits them
// as they are; they can only stand in the double-quoted scalars, where the
// escape reads back as the same character.
func escapeUnprintable(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case unicode.IsPrint(r):
			b.WriteRune(r)
		case r <= 0xffff:
			fmt.Fprintf(&b, `\u%04X`, r)
		default:
			fmt.Fprintf(&b, `\U%08X`, r)
		}
	}
	return b.String()
}

// pathID makes an integration id from the last three parts of a path:
// /srv/www/.env -> srv-www-env, /home/u/sites/www/.env -> sites-www-env;
// of a very long one, its last maxID characters.
func pathID(p string) string {
	parts := strings.FieldsFunc(p, func(r rune) bool { return r == '/' })
	if len(parts) > 3 {
		parts = parts[len(parts)-3:]
	}
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(strings.Join(parts, "/")) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			if dash && b.Len() > 0 {
				b.WriteByte('-')
			}
			b.WriteRune(r)
			dash = false
		} else {
			dash = true
		}
	}
	id := b.String()
	if len(id) > maxID {
		// Ids are at most 100 characters; the end names the file.
		id = strings.TrimLeft(id[len(id)-maxID:], "-")
	}
	if id == "" {
		return "file"
	}
	return id
}

// maxID is the longest id pathID makes.
const maxID = 64

// dotenvAssign parses one dotenv line: optional "export ", NAME, "=",
// then a value that is double-quoted, single-quoted, or bare up to a '#'
// after a blank, as integrations/file reads it. A double-quoted value with
// escapes does not equal the key and gets no suggestion.
func dotenvAssign(line string) (name, value string, ok bool) {
	line = strings.TrimSpace(strings.TrimSuffix(line, "\r"))
	line = strings.TrimPrefix(line, "export ")
	name, value, ok = strings.Cut(line, "=")
	name = strings.TrimSpace(name)
	if !ok || !isEnvName(name) {
		return "", "", false
	}
	value = strings.TrimSpace(value)
	if len(value) > 0 && (value[0] == '"' || value[0] == '\'') {
		end := strings.IndexByte(value[1:], value[0])
		if end < 0 {
			return "", "", false
		}
		return name, value[1 : 1+end], true
	}
	for i := 1; i < len(value); i++ {
		if value[i] == '#' && (value[i-1] == ' ' || value[i-1] == '\t') {
			value = strings.TrimSpace(value[:i])
			break
		}
	}
	return name, value, true
}

func isEnvName(s string) bool {
	if s == "" || s[0] >= '0' && s[0] <= '9' {
		return false
	}
	for _, r := range s {
		if !(r == '_' || r == '.' || r == '-' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

func dotenvField(content []byte, key string, line int) (string, bool) {
	lines := strings.Split(string(content), "\n")
	if line < 1 || line > len(lines) {
		return "", false
	}
	name, value, ok := dotenvAssign(lines[line-1])
	if !ok || value != key {
		return "", false
	}
	return name, true
}

// looksDotenv reports whether every line is blank, a comment, or an
// assignment, and at least one is an assignment.
func looksDotenv(content []byte) bool {
	n := 0
	for l := range strings.SplitSeq(string(content), "\n") {
		t := strings.TrimSpace(l)
		if t == "" || t[0] == '#' {
			continue
		}
		if _, _, ok := dotenvAssign(t); !ok {
			return false
		}
		n++
	}
	return n > 0
}

// joinPath makes a dotted path, or fails when a segment holds a dot and
// the path could not be read back.
func joinPath(segs []string) (string, bool) {
	for _, s := range segs {
		if s == "" || strings.Contains(s, ".") {
			return "", false
		}
	}
	return strings.Join(segs, "."), len(segs) > 0
}

// jsonField walks the JSON token stream keeping the path, and returns the
// path of the first string on line that equals key.
func jsonField(content []byte, key string, line int) (string, bool) {
	if !json.Valid(content) {
		return "", false // the file integration could not rewrite it either
	}
	type frame struct {
		obj  bool
		key  string // current member name (objects)
		idx  int    // next element index (arrays)
		name bool   // an object expects a member name next
	}
	var stack []frame
	path := func() []string {
		segs := make([]string, len(stack))
		for i, f := range stack {
			if f.obj {
				segs[i] = f.key
			} else {
				segs[i] = strconv.Itoa(f.idx)
			}
		}
		return segs
	}
	// valueDone moves the parent past a value just read.
	valueDone := func() {
		if len(stack) == 0 {
			return
		}
		if top := &stack[len(stack)-1]; top.obj {
			top.name = true
		} else {
			top.idx++
		}
	}
	dec := json.NewDecoder(bytes.NewReader(content))
	dec.UseNumber()
	for {
		tok, err := dec.Token()
		if err != nil { // io.EOF included: not found
			return "", false
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{':
				stack = append(stack, frame{obj: true, name: true})
			case '[':
				stack = append(stack, frame{})
			default:
				stack = stack[:len(stack)-1]
				valueDone()
			}
		case string:
			if n := len(stack); n > 0 && stack[n-1].obj && stack[n-1].name {
				stack[n-1].key, stack[n-1].name = t, false
				continue
			}
			// A JSON string holds no raw newline: its end is on its line.
			if t == key && 1+bytes.Count(content[:dec.InputOffset()], newline) == line {
				if p, ok := joinPath(path()); ok {
					return p, true
				}
			}
			valueDone()
		default:
			valueDone()
		}
	}
}

// yamlField returns the dotted path of the first scalar on line, in the
// first document, whose value is key.
func yamlField(content []byte, key string, line int) (string, bool) {
	var doc yaml.Node
	if err := yaml.Unmarshal(content, &doc); err != nil || len(doc.Content) == 0 {
		return "", false
	}
	var walk func(n *yaml.Node, segs []string) (string, bool)
	walk = func(n *yaml.Node, segs []string) (string, bool) {
		switch n.Kind {
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				if p, ok := walk(n.Content[i+1], append(segs, n.Content[i].Value)); ok {
					return p, true
				}
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				if p, ok := walk(c, append(segs, strconv.Itoa(i))); ok {
					return p, true
				}
			}
		case yaml.ScalarNode:
			if n.Value == key && n.Line == line {
				return joinPath(segs)
			}
		}
		return "", false
	}
	return walk(doc.Content[0], nil)
}
