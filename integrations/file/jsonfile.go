package file

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

var utf8BOM = []byte("\xEF\xBB\xBF")

// jsonSpans finds the value tokens that path names in a JSON document: the
// member with that name in an object (every one, when a name is given
// twice), the element with that index in an array.
func jsonSpans(content []byte, field string) ([]span, error) {
	steps, err := splitPath(field)
	if err != nil {
		return nil, err
	}
	start := 0
	if bytes.HasPrefix(content, utf8BOM) {
		start = len(utf8BOM)
	}
	if !json.Valid(content[start:]) {
		var raw json.RawMessage
		err := json.Unmarshal(content[start:], &raw)
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return nil, fmt.Errorf("not valid JSON (at byte %d): %w", int64(start)+se.Offset, errSyntax)
		}
		return nil, fmt.Errorf("not valid JSON: %w", errSyntax)
	}
	s := jsonScanner{b: content}
	var spans []span
	s.walk(s.ws(start), steps, &spans)
	if len(spans) == 0 {
		return nil, fmt.Errorf("field %s: %w", field, errNoField)
	}
	return spans, nil
}

// jsonScanner walks a document that json.Valid accepted.
type jsonScanner struct{ b []byte }

func (s jsonScanner) ws(i int) int {
	for i < len(s.b) && (s.b[i] == ' ' || s.b[i] == '\t' || s.b[i] == '\n' || s.b[i] == '\r') {
		i++
	}
	return i
}

// walk looks for steps inside the value at i and returns the index just
// past that value.
func (s jsonScanner) walk(i int, steps []string, out *[]span) int {
	if len(steps) == 0 {
		end := s.skip(i)
		*out = append(*out, span{i, end})
		return end
	}
	switch s.b[i] {
	case '{':
		i = s.ws(i + 1)
		if s.b[i] == '}' {
			return i + 1
		}
		for {
			kEnd := s.skip(i)
			var name string
			_ = json.Unmarshal(s.b[i:kEnd], &name)
			i = s.ws(kEnd)
			i = s.ws(i + 1) // ':'
			if name == steps[0] {
				i = s.walk(i, steps[1:], out)
			} else {
				i = s.skip(i)
			}
			i = s.ws(i)
			if s.b[i] == '}' {
				return i + 1
			}
			i = s.ws(i + 1) // ','
		}
	case '[':
		want, isIndex := listIndex(steps[0])
		i = s.ws(i + 1)
		if s.b[i] == ']' {
			return i + 1
		}
		for n := 0; ; n++ {
			if isIndex && n == want {
				i = s.walk(i, steps[1:], out)
			} else {
				i = s.skip(i)
			}
			i = s.ws(i)
			if s.b[i] == ']' {
				return i + 1
			}
			i = s.ws(i + 1) // ','
		}
	}
	return s.skip(i)
}

// skip returns the index just past the value at i.
func (s jsonScanner) skip(i int) int {
	switch s.b[i] {
	case '"':
		for i++; s.b[i] != '"'; i++ {
			if s.b[i] == '\\' {
				i++
			}
		}
		return i + 1
	case '{', '[':
		depth := 0
		for ; ; i++ {
			switch s.b[i] {
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			case '"':
				i = s.skip(i) - 1
			}
		}
	}
	for i < len(s.b) && !strings.ContainsRune(",]} \t\r\n", rune(s.b[i])) {
		i++
	}
	return i
}

// jsonString decodes a string token; ok is false for any other token.
func jsonString(tok []byte) (string, bool) {
	if len(tok) == 0 || tok[0] != '"' {
		return "", false
	}
	var v string
	if err := json.Unmarshal(tok, &v); err != nil {
		return "", false
	}
	return v, true
}

// readJSON returns the string at the dotted path field (the last one, when
// a member name is given twice, as encoding/json takes it).
func readJSON(content []byte, field string) (string, error) {
	spans, err := jsonSpans(content, field)
	if err != nil {
		return "", err
	}
	last := spans[len(spans)-1]
	tok := content[last.start:last.end]
	if string(tok) == "null" {
		return "", fmt.Errorf("field %s is null: %w", field, errNoValue)
	}
	v, ok := jsonString(tok)
	if !ok {
		return "", fmt.Errorf("field %s is not a string: %w", field, errUnsupported)
	}
	if v == "" {
		return "", fmt.Errorf("field %s is empty: %w", field, errNoValue)
	}
	return v, nil
}

// rewriteJSON sets the string at the dotted path field to value, replacing
// only the bytes of its token (a string or null); every other byte,
// including white space and member order, is kept. The field must exist.
func rewriteJSON(content []byte, field, value string) ([]byte, error) {
	if err := checkText(value); err != nil {
		return nil, err
	}
	spans, err := jsonSpans(content, field)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(value); err != nil {
		return nil, fmt.Errorf("field %s: %w", field, errBadValue)
	}
	token := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))

	var change []span
	var repl [][]byte
	for _, sp := range spans {
		tok := content[sp.start:sp.end]
		cur, isString := jsonString(tok)
		switch {
		case isString && cur == value:
			continue
		case !isString && string(tok) != "null":
			return nil, fmt.Errorf("field %s is not a string: %w", field, errUnsupported)
		}
		change = append(change, sp)
		repl = append(repl, token)
	}
	if len(change) == 0 {
		return content, nil
	}
	return splice(content, change, repl), nil
}
