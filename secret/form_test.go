package secret

import (
	"strings"
	"testing"
)

func TestFormSamples(t *testing.T) {
	for _, f := range []Form{
		{Alphabet: "0123456789abcdef", MinLen: 32, MaxLen: 32},
		{Alphabet: "ab", MinLen: 5, MaxLen: 9},
		{Alphabet: `abc'"$\`, MinLen: 4, MaxLen: 4}, // longer than MaxLen: pairs
		{Alphabet: "xyz", MinLen: 1, MaxLen: 1},
	} {
		samples := f.Samples()
		if len(samples) == 0 {
			t.Fatalf("%v: no samples", f)
		}
		first, last := map[byte]bool{}, map[byte]bool{}
		pairs := map[[2]byte]bool{}
		lens := map[int]bool{}
		for _, k := range samples {
			if !f.Fits(k) {
				t.Errorf("%v: sample of %d bytes does not fit the form", f, k.Len())
			}
			v := k.Reveal()
			first[v[0]], last[v[len(v)-1]], lens[len(v)] = true, true, true
			for i := 0; i < len(v); i++ {
				for j := 0; j < len(v); j++ {
					pairs[[2]byte{v[i], v[j]}] = true
				}
			}
		}
		if !lens[f.MinLen] || !lens[f.MaxLen] {
			t.Errorf("%v: lengths %v miss MinLen or MaxLen", f, lens)
		}
		for i := 0; i < len(f.Alphabet); i++ {
			c := f.Alphabet[i]
			if !first[c] || !last[c] {
				t.Errorf("%v: %q never starts or ends a sample", f, c)
			}
			for j := 0; j < len(f.Alphabet); j++ {
				if f.MaxLen >= 2 && !pairs[[2]byte{c, f.Alphabet[j]}] {
					t.Errorf("%v: %q and %q are never in one sample", f, c, f.Alphabet[j])
				}
			}
		}
	}
}

func TestFormFitsAndValid(t *testing.T) {
	hex32 := Form{Alphabet: "0123456789abcdef", MinLen: 32, MaxLen: 32}
	for _, c := range []struct {
		key  string
		fits bool
	}{
		{strings.Repeat("0f", 16), true},
		{strings.Repeat("0F", 16), false},
		{strings.Repeat("0f", 15), false},
		{strings.Repeat("0f", 17), false},
		{"", false},
	} {
		if got := hex32.Fits(New(c.key)); got != c.fits {
			t.Errorf("Fits(%d bytes) = %v, want %v", len(c.key), got, c.fits)
		}
	}
	for _, f := range []Form{{}, {Alphabet: "aa", MinLen: 1, MaxLen: 2}, {Alphabet: "a", MinLen: 0, MaxLen: 2}, {Alphabet: "a", MinLen: 3, MaxLen: 2}} {
		if f.Valid() || f.Samples() != nil {
			t.Errorf("%#v is valid or has samples", f)
		}
	}
	if got := hex32.String(); got != `32 characters of "0123456789abcdef"` {
		t.Errorf("String() = %s", got)
	}
}
