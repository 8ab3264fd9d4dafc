package file

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// A YAML file is parsed with gopkg.in/yaml.v3 into nodes; a node gives the
// line and column where its scalar starts, and the scalar's token is found
// there and checked against what the parser read before anything is
// replaced. After a rewrite the whole file is parsed again and must give
// the new value at the path, else the rewrite is refused (errUnsupported).
// Plain, single- and double-quoted scalars can be rewritten; block
// scalars (| and >), aliases and empty values cannot.

// parseYAML parses a file that holds one YAML document. yaml.v3 has
// panicked on hostile input before; a panic is a syntax error here.
func parseYAML(content []byte) (doc *yaml.Node, err error) {
	if bytes.HasPrefix(content, []byte{0xFF, 0xFE}) || bytes.HasPrefix(content, []byte{0xFE, 0xFF}) {
		return nil, fmt.Errorf("UTF-16 YAML: %w", errUnsupported)
	}
	defer func() {
		if recover() != nil {
			doc, err = nil, fmt.Errorf("not valid YAML: %w", errSyntax)
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(content))
	var n yaml.Node
	if err := dec.Decode(&n); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("empty YAML document: %w", errNoField)
		}
		return nil, yamlSyntax(err)
	}
	var more yaml.Node
	switch err := dec.Decode(&more); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, yamlSyntax(err)
	default:
		return nil, fmt.Errorf("more than one YAML document; rekey edits files that hold one: %w", errUnsupported)
	}
	return &n, nil
}

var yamlLineRE = regexp.MustCompile(`line (\d+)`)

// yamlSyntax reports a parse error by its line only: yaml.v3's messages
// can quote the file.
func yamlSyntax(err error) error {
	if m := yamlLineRE.FindStringSubmatch(err.Error()); m != nil {
		return fmt.Errorf("not valid YAML (line %s): %w", m[1], errSyntax)
	}
	return fmt.Errorf("not valid YAML: %w", errSyntax)
}

// yamlMatch is one node the path names, with whether it sits inside a
// flow collection ({...} or [...]).
type yamlMatch struct {
	node     *yaml.Node
	inFlow   bool
	viaAlias bool
}

// yamlFind returns the nodes path names: the value of each mapping entry
// with that key (every one, when a key is given twice), the element with
// that index in a sequence.
func yamlFind(doc *yaml.Node, field string) ([]yamlMatch, error) {
	steps, err := splitPath(field)
	if err != nil {
		return nil, err
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return nil, fmt.Errorf("field %s: %w", field, errNoField)
	}
	cur := []yamlMatch{{node: doc.Content[0]}}
	for _, step := range steps {
		var next []yamlMatch
		for _, m := range cur {
			n, alias := m.node, m.viaAlias
			if n.Kind == yaml.AliasNode && n.Alias != nil {
				n, alias = n.Alias, true
			}
			flow := m.inFlow || n.Style&yaml.FlowStyle != 0
			switch n.Kind {
			case yaml.MappingNode:
				for i := 0; i+1 < len(n.Content); i += 2 {
					k := n.Content[i]
					if k.Kind == yaml.ScalarNode && k.Value == step {
						next = append(next, yamlMatch{node: n.Content[i+1], inFlow: flow, viaAlias: alias})
					}
				}
			case yaml.SequenceNode:
				if idx, ok := listIndex(step); ok && idx < len(n.Content) {
					next = append(next, yamlMatch{node: n.Content[idx], inFlow: flow, viaAlias: alias})
				}
			}
		}
		cur = lastOccurrences(next)
	}
	if len(cur) == 0 {
		return nil, fmt.Errorf("field %s: %w", field, errNoField)
	}
	return cur, nil
}

// lastOccurrences drops every match that comes again later in ms. Through
// an alias the same node can be reached more than once, and a mapping
// that repeats a key and aliases itself ("a: &x\n  b: *x\n  b: *x") would
// otherwise double the matches at every step of a long path. The last
// match, which a read takes, stays the same node.
func lastOccurrences(ms []yamlMatch) []yamlMatch {
	seen := make(map[yamlMatch]bool, len(ms))
	out := make([]yamlMatch, 0, len(ms))
	for i := len(ms) - 1; i >= 0; i-- {
		if !seen[ms[i]] {
			seen[ms[i]] = true
			out = append(out, ms[i])
		}
	}
	slices.Reverse(out)
	return out
}

// yamlScalarValue is what a read gives for a node, or why it gives nothing.
func yamlScalarValue(n *yaml.Node, field string) (string, error) {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n.Kind != yaml.ScalarNode {
		return "", fmt.Errorf("field %s is not a scalar: %w", field, errUnsupported)
	}
	if n.ShortTag() == "!!null" {
		return "", fmt.Errorf("field %s is null: %w", field, errNoValue)
	}
	v := n.Value
	if n.Style&(yaml.LiteralStyle|yaml.FoldedStyle) != 0 {
		v = strings.TrimRight(v, "\n")
	}
	if v == "" {
		return "", fmt.Errorf("field %s is empty: %w", field, errNoValue)
	}
	return v, nil
}

// readYAML returns the scalar at the dotted path field (the last one, when
// a key is given twice).
func readYAML(content []byte, field string) (string, error) {
	doc, err := parseYAML(content)
	if err != nil {
		return "", err
	}
	ms, err := yamlFind(doc, field)
	if err != nil {
		return "", err
	}
	return yamlScalarValue(ms[len(ms)-1].node, field)
}

// rewriteYAML sets the scalar at the dotted path field to value, replacing
// only the bytes of its token and keeping its quoting style where the
// value allows (else double quotes). The field must exist.
func rewriteYAML(content []byte, field, value string) ([]byte, error) {
	if err := checkText(value); err != nil {
		return nil, err
	}
	doc, err := parseYAML(content)
	if err != nil {
		return nil, err
	}
	ms, err := yamlFind(doc, field)
	if err != nil {
		return nil, err
	}
	lines := yamlLineStarts(content)
	var spans []span
	var styles []yaml.Style
	for _, m := range ms {
		n := m.node
		if n.Kind == yaml.AliasNode || m.viaAlias {
			return nil, fmt.Errorf("field %s goes through an alias: %w", field, errUnsupported)
		}
		if n.Kind != yaml.ScalarNode {
			return nil, fmt.Errorf("field %s is not a scalar: %w", field, errUnsupported)
		}
		block := n.Style&(yaml.LiteralStyle|yaml.FoldedStyle) != 0
		if n.ShortTag() == "!!str" && (n.Value == value || block && strings.TrimRight(n.Value, "\n") == value) {
			continue
		}
		if block {
			return nil, fmt.Errorf("field %s is a block scalar (| or >): %w", field, errUnsupported)
		}
		if n.Value == "" && n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) == 0 {
			return nil, fmt.Errorf("field %s has no value; give it a placeholder such as \"\": %w", field, errUnsupported)
		}
		sp, err := yamlLocate(content, lines, n, m.inFlow)
		if err != nil {
			return nil, fmt.Errorf("field %s (line %d): %w", field, n.Line, err)
		}
		spans = append(spans, sp)
		styles = append(styles, n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle))
	}
	if len(spans) == 0 {
		return content, nil
	}
	// Spans come in document order, which is byte order.
	for i := 1; i < len(spans); i++ {
		if spans[i].start < spans[i-1].end {
			return nil, fmt.Errorf("field %s: values overlap: %w", field, errUnsupported)
		}
	}
	for _, forceDouble := range []bool{false, true} {
		repl := make([][]byte, len(spans))
		for i := range spans {
			style := styles[i]
			if forceDouble {
				style = yaml.DoubleQuotedStyle
			}
			repl[i] = yamlToken(style, value)
		}
		out := splice(content, spans, repl)
		if yamlHolds(out, field, value) {
			return out, nil
		}
	}
	return nil, fmt.Errorf("field %s: the new value does not read back: %w", field, errUnsupported)
}

// yamlHolds reports whether every node at field in content is the string value.
func yamlHolds(content []byte, field, value string) bool {
	doc, err := parseYAML(content)
	if err != nil {
		return false
	}
	ms, err := yamlFind(doc, field)
	if err != nil {
		return false
	}
	for _, m := range ms {
		if m.node.Kind != yaml.ScalarNode || m.node.ShortTag() != "!!str" || m.node.Value != value {
			return false
		}
	}
	return true
}

// yamlPlainRE is what may stand as a plain scalar: no indicator, no blank,
// nothing a YAML 1.1 or 1.2 reader would take as a number, date or null.
var yamlPlainRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_./+=@%-]*$`)

var yaml11Words = map[string]bool{
	"y": true, "n": true, "yes": true, "no": true, "on": true, "off": true,
	"true": true, "false": true, "null": true,
}

// yamlToken encodes value in style (0 for plain), or in double quotes
// when style cannot hold it. The plain form holds no flow indicator, so it
// is safe inside {...} and [...] too.
func yamlToken(style yaml.Style, value string) []byte {
	switch style {
	case 0:
		if yamlPlainRE.MatchString(value) && !yaml11Words[strings.ToLower(value)] {
			return []byte(value)
		}
	case yaml.SingleQuotedStyle:
		return []byte("'" + strings.ReplaceAll(value, "'", "''") + "'")
	}
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`)
	return []byte(`"` + r.Replace(value) + `"`)
}

// yamlLineStarts returns the byte offset where each line starts, counting
// line breaks as yaml.v3 does (CR LF, CR, LF, NEL, LS, PS), after a BOM.
func yamlLineStarts(b []byte) []int {
	start := 0
	if bytes.HasPrefix(b, utf8BOM) {
		start = len(utf8BOM)
	}
	lines := []int{start}
	for i := start; i < len(b); {
		if w := yamlBreak(b, i); w > 0 {
			i += w
			lines = append(lines, i)
			continue
		}
		i++
	}
	return lines
}

// yamlBreak returns the length of the line break at b[i], or 0.
func yamlBreak(b []byte, i int) int {
	switch {
	case b[i] == '\r' && i+1 < len(b) && b[i+1] == '\n':
		return 2
	case b[i] == '\r' || b[i] == '\n':
		return 1
	case b[i] == 0xC2 && i+1 < len(b) && b[i+1] == 0x85:
		return 2
	case b[i] == 0xE2 && i+2 < len(b) && b[i+1] == 0x80 && (b[i+2] == 0xA8 || b[i+2] == 0xA9):
		return 3
	}
	return 0
}

// yamlLocate finds the bytes of a scalar node's token and checks that they
// read as the node's value.
func yamlLocate(b []byte, lines []int, n *yaml.Node, inFlow bool) (span, error) {
	bad := fmt.Errorf("cannot locate its value in the file: %w", errUnsupported)
	if n.Line < 1 || n.Line > len(lines) || n.Column < 1 {
		return span{}, bad
	}
	p := lines[n.Line-1]
	for col := 1; col < n.Column; col++ { // columns count characters
		if p >= len(b) || yamlBreak(b, p) > 0 {
			return span{}, bad
		}
		_, w := utf8.DecodeRune(b[p:])
		p += w
	}
	// Skip an anchor (&a) and a tag (!!str) in front of the scalar.
	for p < len(b) && (b[p] == '&' || b[p] == '!') {
		for p < len(b) && !isBlank(b[p]) && yamlBreak(b, p) == 0 {
			p++
		}
		for p < len(b) && (isBlank(b[p]) || yamlBreak(b, p) > 0) {
			p++
		}
	}
	if p >= len(b) {
		return span{}, bad
	}
	var end int
	switch {
	case n.Style&yaml.DoubleQuotedStyle != 0:
		if b[p] != '"' {
			return span{}, bad
		}
		e, ok := scanQuoted(b, p)
		if !ok {
			return span{}, bad
		}
		end = e
		var v string
		if err := yamlUnmarshalString(b[p:end], &v); err != nil || v != n.Value {
			return span{}, bad
		}
	case n.Style&yaml.SingleQuotedStyle != 0:
		if b[p] != '\'' {
			return span{}, bad
		}
		e := -1
		for i := p + 1; i < len(b); i++ {
			if b[i] == '\'' {
				if i+1 < len(b) && b[i+1] == '\'' {
					i++
					continue
				}
				e = i + 1
				break
			}
		}
		if e < 0 {
			return span{}, bad
		}
		end = e
		var v string
		if err := yamlUnmarshalString(b[p:end], &v); err != nil || v != n.Value {
			return span{}, bad
		}
	default:
		e := p
		for e < len(b) && yamlBreak(b, e) == 0 {
			if b[e] == '#' && e > p && isBlank(b[e-1]) {
				break
			}
			if inFlow && strings.IndexByte(",[]{}", b[e]) >= 0 {
				break
			}
			e++
		}
		for e > p && isBlank(b[e-1]) {
			e--
		}
		end = e
		if string(b[p:end]) != n.Value {
			return span{}, bad
		}
	}
	return span{p, end}, nil
}

// yamlUnmarshalString decodes one quoted scalar token, without panicking.
func yamlUnmarshalString(tok []byte, v *string) (err error) {
	defer func() {
		if recover() != nil {
			err = errSyntax
		}
	}()
	return yaml.Unmarshal(tok, v)
}
