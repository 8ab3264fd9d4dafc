package secret

import (
	"fmt"
	"strings"
)

// Form is what a provider says its keys look like, without any key: made
// of the bytes of Alphabet only, MinLen to MaxLen bytes long. Before the
// owner is told to click, when no new key exists yet, rekey asks each
// target that cannot hold every key (integrations.Acceptor) whether it
// would take keys of the form, using Samples.
type Form struct {
	Alphabet       string
	MinLen, MaxLen int
}

// Valid reports whether f says something: a non-empty alphabet of
// distinct bytes and 1 <= MinLen <= MaxLen.
func (f Form) Valid() bool {
	if f.Alphabet == "" || f.MinLen < 1 || f.MaxLen < f.MinLen {
		return false
	}
	var seen [256]bool
	for i := 0; i < len(f.Alphabet); i++ {
		if seen[f.Alphabet[i]] {
			return false
		}
		seen[f.Alphabet[i]] = true
	}
	return true
}

// String describes the form: "32 characters of 0123456789abcdef".
func (f Form) String() string {
	n := fmt.Sprint(f.MinLen)
	if f.MaxLen != f.MinLen {
		n = fmt.Sprintf("%d to %d", f.MinLen, f.MaxLen)
	}
	return fmt.Sprintf("%s characters of %q", n, f.Alphabet)
}

// Samples returns keys of the form that between them put every byte of
// the alphabet at the start, at the end and alone, every pair of bytes
// together, and reach both lengths, so that a target refusing some key
// of the form refuses one of them: a key made of the whole alphabet
// (repeated to MinLen when it is shorter); when the alphabet is longer
// than MaxLen, one key for each pair of bytes instead; and for each byte,
// keys of MinLen and of MaxLen made of it alone. They are made up, not
// secrets. An invalid form has none.
func (f Form) Samples() []Key {
	if !f.Valid() {
		return nil
	}
	a := f.Alphabet
	var out []Key
	if len(a) <= f.MaxLen {
		s := a
		for len(s) < f.MinLen {
			s += a
		}
		out = append(out, New(s[:max(len(a), f.MinLen)]))
	} else if f.MaxLen >= 2 {
		// Too long for one key: every pair side by side, in both orders
		// (a quote before a '$' and after it), padded with the first.
		for i := 0; i < len(a); i++ {
			for j := 0; j < len(a); j++ {
				if i == j {
					continue
				}
				s := string([]byte{a[i], a[j]})
				if len(s) < f.MinLen {
					s += strings.Repeat(string(a[i]), f.MinLen-len(s))
				}
				out = append(out, New(s))
			}
		}
	}
	for i := 0; i < len(a); i++ {
		out = append(out, New(strings.Repeat(string(a[i]), f.MinLen)))
		if f.MaxLen != f.MinLen {
			out = append(out, New(strings.Repeat(string(a[i]), f.MaxLen)))
		}
	}
	return out
}

// Fits reports whether k is of the form.
func (f Form) Fits(k Key) bool {
	if !f.Valid() || k.Len() < f.MinLen || k.Len() > f.MaxLen {
		return false
	}
	for i := 0; i < len(k.v); i++ {
		if strings.IndexByte(f.Alphabet, k.v[i]) < 0 {
			return false
		}
	}
	return true
}
