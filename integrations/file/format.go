package file

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Formats a file can have.
const (
	FormatDotenv = "dotenv"
	FormatJSON   = "json"
	FormatYAML   = "yaml"
	FormatRaw    = "raw"
)

// Errors of the pure read and rewrite functions. Their messages name the
// field and a position at most, never any of the file's bytes: the file
// holds a key, maybe a leaked one.
var (
	// errNoField: the field is not in the file.
	errNoField = errors.New("not found")
	// errNoValue: the field is there but holds nothing (empty, null).
	errNoValue = errors.New("holds no value")
	// errSyntax: the file is not valid in its format.
	errSyntax = errors.New("not valid")
	// errUnsupported: the field is there, but rekey cannot read or rewrite
	// it in place (not a string, a block scalar, an alias, ...).
	errUnsupported = errors.New("cannot be rewritten in place")
	// errBadValue: the new value cannot be held by the format.
	errBadValue = errors.New("cannot be written")
)

// format is one file format's pure functions: read gives the field's
// value; rewrite gives the content with only the field's value replaced
// (or, for dotenv, a missing variable appended), and returns content
// itself when the field already holds value; accepts refuses, whatever
// the file holds, a value rewrite would refuse for its shape (errBadValue),
// in rewrite's words.
type format struct {
	read    func(content []byte, field string) (string, error)
	rewrite func(content []byte, field, value string) ([]byte, error)
	accepts func(value string) error
}

var formats = map[string]format{
	FormatDotenv: {readDotenv, rewriteDotenv, acceptsDotenv},
	FormatJSON:   {readJSON, rewriteJSON, checkText},
	FormatYAML:   {readYAML, rewriteYAML, checkText},
	FormatRaw: {
		func(c []byte, _ string) (string, error) { return readRaw(c) },
		func(c []byte, _, v string) ([]byte, error) { return rewriteRaw(c, v) },
		checkRaw,
	},
}

// checkText refuses a value a structured format cannot hold literally:
// empty, invalid UTF-8, or holding a control character (a line break, a
// tab, a NUL, ...). API keys are one line of printable text.
func checkText(value string) error {
	if value == "" {
		return fmt.Errorf("the key is empty: %w", errBadValue)
	}
	if !utf8.ValidString(value) {
		return fmt.Errorf("the key is not valid UTF-8: %w", errBadValue)
	}
	for _, r := range value {
		if unicode.IsControl(r) || r == '\uFEFF' || r == '\u2028' || r == '\u2029' {
			return fmt.Errorf("the key holds a control character or line break: %w", errBadValue)
		}
	}
	return nil
}

// splitPath splits a dotted path ("actionnetwork.api_key", "keys.0.value")
// into its steps. A step made of digits indexes a list when the node it
// is applied to is a list, and names a member otherwise.
func splitPath(field string) ([]string, error) {
	if field == "" {
		return nil, fmt.Errorf("empty path: %w", errNoField)
	}
	steps := strings.Split(field, ".")
	for _, s := range steps {
		if s == "" {
			return nil, fmt.Errorf("path %q has an empty step: %w", field, errNoField)
		}
	}
	return steps, nil
}

// listIndex reads a path step as a list index: decimal digits with no
// leading zero (except "0" itself).
func listIndex(step string) (int, bool) {
	if step == "" || len(step) > 9 || (len(step) > 1 && step[0] == '0') {
		return 0, false
	}
	n := 0
	for i := 0; i < len(step); i++ {
		c := step[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// span is the bytes [start, end) of one value in a file.
type span struct{ start, end int }

// splice replaces each span (sorted, not overlapping) with its
// replacement, keeping every other byte.
func splice(content []byte, spans []span, repl [][]byte) []byte {
	n := len(content)
	for i, s := range spans {
		n += len(repl[i]) - (s.end - s.start)
	}
	out := make([]byte, 0, n)
	at := 0
	for i, s := range spans {
		out = append(out, content[at:s.start]...)
		out = append(out, repl[i]...)
		at = s.end
	}
	return append(out, content[at:]...)
}
