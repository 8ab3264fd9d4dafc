package file

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"
)

// A dotenv file is read the way python-dotenv, godotenv, docker compose and
// a shell that sources it agree on:
//
//	# comment
//	NAME=value            unquoted: up to a '#' that follows a blank, or the end of the line
//	export NAME=value     "export " is allowed
//	NAME = value          blanks around '=' are allowed
//	NAME='value'          single quotes: literal
//	NAME="value"          double quotes: \\ \" \n \r \t are escapes; may span lines
//	NAME=value # comment
//
// Lines end with LF or CRLF. A line that is none of these is kept as it is.

// dotenvEntry is one assignment.
type dotenvEntry struct {
	name  string
	value span // the value's token, quotes included; empty at the '=' for an empty value
	quote byte // 0, '\'' or '"'
	bad   bool // an opening quote that is never closed
}

var dotenvNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.-]*$`)

func isBlank(c byte) bool { return c == ' ' || c == '\t' }

func isNameByte(c byte) bool {
	return c == '_' || c == '.' || c == '-' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func skipBlanks(b []byte, i int) int {
	for i < len(b) && isBlank(b[i]) {
		i++
	}
	return i
}

// lineAfter returns the index just past the line break at or after i.
func lineAfter(b []byte, i int) int {
	if j := bytes.IndexByte(b[i:], '\n'); j >= 0 {
		return i + j + 1
	}
	return len(b)
}

// parseDotenv finds every assignment in b.
func parseDotenv(b []byte) []dotenvEntry {
	var entries []dotenvEntry
	for i := 0; i < len(b); {
		j := skipBlanks(b, i)
		if bytes.HasPrefix(b[j:], []byte("export")) && j+6 < len(b) && isBlank(b[j+6]) {
			j = skipBlanks(b, j+6)
		}
		n0 := j
		for j < len(b) && isNameByte(b[j]) {
			j++
		}
		name := string(b[n0:j])
		eq := skipBlanks(b, j)
		if !dotenvNameRE.MatchString(name) || eq >= len(b) || b[eq] != '=' {
			i = lineAfter(b, i)
			continue
		}
		after := eq + 1
		v := skipBlanks(b, after)
		if v < len(b) && (b[v] == '\'' || b[v] == '"') {
			end, ok := scanQuoted(b, v)
			if !ok {
				entries = append(entries, dotenvEntry{name: name, value: span{v, v}, bad: true})
				i = lineAfter(b, v)
				continue
			}
			entries = append(entries, dotenvEntry{name: name, value: span{v, end}, quote: b[v]})
			i = lineAfter(b, end)
			continue
		}
		e := v
		if v == after || v >= len(b) || b[v] != '#' { // "NAME= #x" is empty with a comment
			for e < len(b) && b[e] != '\n' && !(b[e] == '#' && e > v && isBlank(b[e-1])) {
				e++
			}
		}
		for e > v && (isBlank(b[e-1]) || b[e-1] == '\r') {
			e--
		}
		if e == v {
			v, e = after, after
		}
		entries = append(entries, dotenvEntry{name: name, value: span{v, e}})
		i = lineAfter(b, v)
	}
	return entries
}

// scanQuoted returns the index just past the quote that closes the one at
// b[start]. In double quotes a backslash escapes the next byte.
func scanQuoted(b []byte, start int) (int, bool) {
	q := b[start]
	for i := start + 1; i < len(b); i++ {
		switch {
		case b[i] == q:
			return i + 1, true
		case q == '"' && b[i] == '\\':
			i++
		}
	}
	return 0, false
}

// dotenvValue decodes an entry's value.
func dotenvValue(b []byte, e dotenvEntry) string {
	tok := b[e.value.start:e.value.end]
	switch e.quote {
	case '\'':
		return string(tok[1 : len(tok)-1])
	case '"':
		in := tok[1 : len(tok)-1]
		var sb strings.Builder
		for i := 0; i < len(in); i++ {
			if in[i] != '\\' || i+1 == len(in) {
				sb.WriteByte(in[i])
				continue
			}
			i++
			switch in[i] {
			case 'n':
				sb.WriteByte('\n')
			case 'r':
				sb.WriteByte('\r')
			case 't':
				sb.WriteByte('\t')
			case '\\', '"':
				sb.WriteByte(in[i])
			default:
				sb.WriteByte('\\')
				sb.WriteByte(in[i])
			}
		}
		return sb.String()
	}
	return string(tok)
}

// dotenvPlainRE is what may stand unquoted: safe for every dotenv parser
// and for a shell that sources the file.
var dotenvPlainRE = regexp.MustCompile(`^[A-Za-z0-9_./:=@%+,-]+$`)

// A value is written so that every common reader of .env files takes it
// literally, byte for byte: a shell that sources the file (sh, bash),
// docker compose, python-dotenv, node's dotenv, godotenv and systemd's
// EnvironmentFile. Three forms qualify:
//
//   - unquoted, when the value is made of dotenvPlainRE's characters only;
//   - single quotes, when the value holds no single quote and no
//     backslash (python-dotenv reads \\ and \' as escapes even there);
//   - double quotes, when the value holds no backslash, double quote, '$'
//     or backtick (escapes, expansion and command substitution in sh, and
//     escapes or interpolation in every dotenv reader).
//
// A value that fits none (one holding a backslash, or a single quote
// together with a double quote, '$' or backtick) has no form every reader
// takes literally: it is refused for the file, which stays as it was.
func singleQuoteSafe(v string) bool { return !strings.ContainsAny(v, `'\`) }

func doubleQuoteSafe(v string) bool { return !strings.ContainsAny(v, "\\\"$`") }

// dotenvToken encodes value in the quoting style the line already has
// (none, single or double quotes) when that style keeps the value literal, else
// in another that does: unquoted, then single quotes, then double quotes
// for an unquoted line; the other quote for a quoted one.
func dotenvToken(quote byte, value string) ([]byte, error) {
	single := func() []byte { return []byte("'" + value + "'") }
	double := func() []byte { return []byte(`"` + value + `"`) }
	switch {
	case quote == 0 && dotenvPlainRE.MatchString(value):
		return []byte(value), nil
	case quote == '"' && doubleQuoteSafe(value):
		return double(), nil
	case singleQuoteSafe(value):
		return single(), nil
	case doubleQuoteSafe(value):
		return double(), nil
	}
	what := "a single quote together with a double quote, '$' or backtick"
	if strings.Contains(value, `\`) {
		what = "a backslash"
	}
	return nil, fmt.Errorf("the key holds %s: no quoting keeps it literal for a shell and every dotenv reader: %w", what, errBadValue)
}

// acceptsDotenv refuses a value rewriteDotenv refuses whatever the file
// holds: one checkText refuses, or one no quoting keeps literal (whichever
// quoting a line has, rewriteDotenv falls back to the others, so a value
// is written when any of them takes it).
func acceptsDotenv(value string) error {
	if err := checkText(value); err != nil {
		return err
	}
	_, err := dotenvToken(0, value)
	return err
}

func checkDotenvField(field string) error {
	if !dotenvNameRE.MatchString(field) {
		return fmt.Errorf("variable name %q: use letters, digits, '_', '.' and '-', not starting with a digit: %w", field, errNoField)
	}
	return nil
}

// readDotenv returns the value of variable field: the last assignment, as
// every parser takes it.
func readDotenv(content []byte, field string) (string, error) {
	if err := checkDotenvField(field); err != nil {
		return "", err
	}
	var last *dotenvEntry
	entries := parseDotenv(content)
	for i := range entries {
		if entries[i].name == field {
			last = &entries[i]
		}
	}
	switch {
	case last == nil:
		return "", fmt.Errorf("variable %s: %w", field, errNoField)
	case last.bad:
		return "", fmt.Errorf("variable %s: quote never closed: %w", field, errSyntax)
	}
	v := dotenvValue(content, *last)
	if v == "" {
		return "", fmt.Errorf("variable %s: %w", field, errNoValue)
	}
	return v, nil
}

// rewriteDotenv sets variable field to value. A file with a quote that is
// never closed is refused. Every assignment of the variable is rewritten (an earlier duplicate would otherwise keep the old
// key in the file); only the bytes of each value change, in the quoting
// style it had where the value allows. A variable that is not there is
// appended on a line of its own, in the file's line ending, with "export "
// when the file's first assignment has it.
func rewriteDotenv(content []byte, field, value string) ([]byte, error) {
	if err := checkDotenvField(field); err != nil {
		return nil, err
	}
	if err := checkText(value); err != nil {
		return nil, err
	}
	entries := parseDotenv(content)
	for _, e := range entries {
		// A quote no later byte closes would be closed by a quote the
		// rewrite puts after it, and swallow what follows.
		if e.bad {
			return nil, fmt.Errorf("variable %s: quote never closed: %w", e.name, errSyntax)
		}
	}
	var spans []span
	var repl [][]byte
	found := false
	for _, e := range entries {
		if e.name != field {
			continue
		}
		found = true
		if dotenvValue(content, e) == value {
			continue
		}
		tok, err := dotenvToken(e.quote, value)
		if err != nil {
			return nil, fmt.Errorf("variable %s: %w", field, err)
		}
		spans = append(spans, e.value)
		repl = append(repl, tok)
	}
	if !found {
		tok, err := dotenvToken(0, value)
		if err != nil {
			return nil, fmt.Errorf("variable %s: %w", field, err)
		}
		return appendDotenv(content, entries, field, tok), nil
	}
	if len(spans) == 0 {
		return content, nil
	}
	return splice(content, spans, repl), nil
}

func appendDotenv(content []byte, entries []dotenvEntry, field string, tok []byte) []byte {
	eol := "\n"
	if i := bytes.IndexByte(content, '\n'); i > 0 && content[i-1] == '\r' {
		eol = "\r\n"
	}
	prefix := ""
	if len(entries) > 0 {
		line := content[:entries[0].value.start]
		if k := bytes.LastIndexByte(line, '\n'); k >= 0 {
			line = line[k+1:]
		}
		if bytes.HasPrefix(bytes.TrimLeft(line, " \t"), []byte("export")) {
			prefix = "export "
		}
	}
	out := make([]byte, 0, len(content)+len(field)+len(tok)+8)
	out = append(out, content...)
	if len(out) > 0 && out[len(out)-1] != '\n' {
		out = append(out, eol...)
	}
	out = append(out, prefix+field+"="...)
	out = append(out, tok...)
	return append(out, eol...)
}
