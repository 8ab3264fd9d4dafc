package rotation

import (
	"fmt"
	"unicode"
	"unicode/utf8"

	"github.com/rekey-dev/rekey/secret"
)

// BadShape says why key cannot be an API key as it was pasted, or "" when
// it can: it is not valid UTF-8, or holds a control character, white space
// inside (the surrounding white space was trimmed when it was read: inside
// it means two things were pasted, or a line was broken), or an invisible
// formatting character (a zero-width space, a byte order mark), any of
// which a target would store mangled or a shell would read otherwise. The
// reason gives a byte offset, never the key or a character of it.
func BadShape(key secret.Key) string {
	v := key.Reveal() // inspected here, never shown
	if !utf8.ValidString(v) {
		for i := 0; i < len(v); {
			r, n := utf8.DecodeRuneInString(v[i:])
			if r == utf8.RuneError && n <= 1 {
				return fmt.Sprintf("it is not valid UTF-8 (at byte %d); paste the key as the provider shows it", i)
			}
			i += n
		}
	}
	for i, r := range v {
		switch {
		case unicode.IsSpace(r):
			return fmt.Sprintf("it holds white space inside (at byte %d): two things pasted, or a broken line?", i)
		case unicode.IsControl(r):
			return fmt.Sprintf("it holds a control character (at byte %d); paste the key as the provider shows it", i)
		case unicode.Is(unicode.Cf, r):
			return fmt.Sprintf("it holds an invisible formatting character (at byte %d), as copied from a web page or document", i)
		}
	}
	return ""
}
