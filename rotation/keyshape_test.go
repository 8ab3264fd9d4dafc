package rotation

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/rekey-dev/rekey/internal/leakcheck"
	"github.com/rekey-dev/rekey/secret"
)

// A key that is not valid UTF-8, or holds a control character, white
// space inside, or an invisible format character, is refused before
// anything is written, and the refusal never quotes it.
func TestMalformedKeysAreRefused(t *testing.T) {
	old := secret.New("old-key-aaaaaaaaaaaa")
	const base = "abcdefghij0123456789"
	cases := []struct{ name, key, want string }{
		{"invalid UTF-8", base + "\xff\xfe", "not valid UTF-8"},
		{"tab inside", base[:10] + "\t" + base[10:], "white space"},
		{"space inside", base[:10] + " " + base[10:], "white space"},
		{"no-break space inside", base[:10] + "\u00a0" + base[10:], "white space"},
		{"escape", base + "\x1b[2J", "control character"},
		{"DEL", base + "\x7f", "control character"},
		{"C1 control (CSI)", base + "\u009b2J", "control character"},
		{"next line (C1)", base[:10] + "\u0085" + base[10:], "white space"},
		{"zero-width space", base[:10] + "\u200b" + base[10:], "invisible"},
		{"byte order mark", "\ufeff" + base, "invisible"},
	}
	store, _ := setup(t, old)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := &memTarget{id: "m", held: old}
			_, err := (&Engine{Store: store}).Rotate(context.Background(), job(m), secret.New(c.key))
			var re *RefusedError
			if !errors.As(err, &re) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want a refusal saying %q", err, c.want)
			}
			if m.attempts != 0 {
				t.Fatal("an integration was touched")
			}
			if cur, _ := store.ReadKey(context.Background(), "an/main"); cur.Version != 1 {
				t.Fatalf("Vault at version %d after a refused key", cur.Version)
			}
			leakcheck.Assert(t, "error", []byte(err.Error()), c.key, base)
		})
	}
	// Checked before Vault is asked anything.
	if _, _, err := (&Engine{}).Check(context.Background(), job(), secret.New(base+"\n")); err == nil {
		t.Fatal("a key with a newline was not refused without a store")
	}
}
