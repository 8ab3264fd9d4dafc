package secret

// Shape is the form of a key without its value: its length and the
// classes of characters it is made of. rekey uses it to recognise a key
// typed where it does not belong (a command-line argument, a note) even
// before that key is stored: a new key has the shape of the old ones.
type Shape struct {
	Len     int
	Classes uint16
}

// Character classes of a Shape.
const (
	ClassLower      uint16 = 1 << iota // a-z
	ClassUpper                         // A-Z
	ClassDigit                         // 0-9
	ClassNonHex                        // a letter beyond f/F
	ClassDash                          // -
	ClassUnderscore                    // _
	ClassDot                           // .
	ClassBase64                        // + or /
	ClassEquals                        // =
	ClassOther                         // anything else, white space included
)

// Shape returns the key's shape.
func (k Key) Shape() Shape { return ShapeOf(k.v) }

// ShapeOf returns the shape of s.
func ShapeOf(s string) Shape {
	sh := Shape{Len: len(s)}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z':
			sh.Classes |= ClassLower
			if c > 'f' {
				sh.Classes |= ClassNonHex
			}
		case c >= 'A' && c <= 'Z':
			sh.Classes |= ClassUpper
			if c > 'F' {
				sh.Classes |= ClassNonHex
			}
		case c >= '0' && c <= '9':
			sh.Classes |= ClassDigit
		case c == '-':
			sh.Classes |= ClassDash
		case c == '_':
			sh.Classes |= ClassUnderscore
		case c == '.':
			sh.Classes |= ClassDot
		case c == '+' || c == '/':
			sh.Classes |= ClassBase64
		case c == '=':
			sh.Classes |= ClassEquals
		default:
			sh.Classes |= ClassOther
		}
	}
	return sh
}
