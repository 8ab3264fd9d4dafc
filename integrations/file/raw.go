package file

import "fmt"

// A raw file is the key: its content, without the white space around it,
// which is kept as it is (a trailing newline stays a trailing newline).

// rawSpan is the content between leading and trailing white space.
func rawSpan(content []byte) span {
	s, e := 0, len(content)
	for s < e && isSpace(content[s]) {
		s++
	}
	if s == e {
		return span{0, 0} // all white space: the key goes in front of it
	}
	for isSpace(content[e-1]) {
		e--
	}
	return span{s, e}
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}

// readRaw returns the file's content without surrounding white space.
func readRaw(content []byte) (string, error) {
	sp := rawSpan(content)
	if sp.start == sp.end {
		return "", fmt.Errorf("the file is empty: %w", errNoValue)
	}
	return string(content[sp.start:sp.end]), nil
}

// checkRaw refuses a value a raw file cannot hold: one with white space
// around it would not read back, and one with a line break (or another
// control character) would be read as several lines by whatever reads
// the file (`$(cat key)`, a first-line reader), as checkText refuses it
// for every structured format.
func checkRaw(value string) error {
	if value != "" && (isSpace(value[0]) || isSpace(value[len(value)-1])) {
		return fmt.Errorf("the key has white space around it: %w", errBadValue)
	}
	return checkText(value)
}

// rewriteRaw replaces the content between leading and trailing white
// space with value, one checkRaw takes.
func rewriteRaw(content []byte, value string) ([]byte, error) {
	if err := checkRaw(value); err != nil {
		return nil, err
	}
	sp := rawSpan(content)
	if string(content[sp.start:sp.end]) == value {
		return content, nil
	}
	return splice(content, []span{sp}, [][]byte{[]byte(value)}), nil
}
