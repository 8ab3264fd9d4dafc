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

// rewriteRaw replaces the content between leading and trailing white
// space with value. A value with white space around it would not read
// back, and is refused.
func rewriteRaw(content []byte, value string) ([]byte, error) {
	if value == "" {
		return nil, fmt.Errorf("the key is empty: %w", errBadValue)
	}
	if isSpace(value[0]) || isSpace(value[len(value)-1]) {
		return nil, fmt.Errorf("the key has white space around it: %w", errBadValue)
	}
	sp := rawSpan(content)
	if string(content[sp.start:sp.end]) == value {
		return content, nil
	}
	return splice(content, []span{sp}, [][]byte{[]byte(value)}), nil
}
