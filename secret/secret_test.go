package secret

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const raw = "an-0123456789abcdef0123456789abcdef"

func TestKeyNeverPrintsItsValue(t *testing.T) {
	k := New(raw)
	var buf bytes.Buffer
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d"} {
		fmt.Fprintf(&buf, verb+"\n", k)
	}
	fmt.Fprintln(&buf, k.String(), k.GoString())
	j, _ := json.Marshal(struct{ K Key }{k})
	buf.Write(j)
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("x", "key", k)
	slog.New(slog.NewTextHandler(&buf, nil)).Info("x", "key", k)
	if strings.Contains(buf.String(), raw) {
		t.Fatalf("key value printed:\n%s", buf.String())
	}
	if !strings.Contains(buf.String(), k.Fingerprint()) {
		t.Fatalf("fingerprint missing from output:\n%s", buf.String())
	}
}

func TestFingerprint(t *testing.T) {
	// sha256("abc") = ba7816bf8f01cfea...
	if got, want := New("abc").Fingerprint(), "sha256:ba7816bf8f01"; got != want {
		t.Fatalf("Fingerprint = %q, want %q", got, want)
	}
	if New("").Fingerprint() != "" {
		t.Fatal("empty key has a fingerprint")
	}
}

func TestEqual(t *testing.T) {
	if !New("a").Equal(New("a")) || New("a").Equal(New("b")) || New("a").Equal(New("ab")) {
		t.Fatal("Equal is wrong")
	}
}

func TestInputFile(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name, content string
		want          string
		wantErr       bool
	}{
		{"trimmed", "  " + raw + " \n", raw, false},
		{"crlf", raw + "\r\n", raw, false},
		{"empty", "\n  \n", "", true},
		{"nothing", "", "", true},
		{"too long", strings.Repeat("k", MaxKeyBytes+2), "", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "_"))
			if err := os.WriteFile(p, []byte(c.content), 0o600); err != nil {
				t.Fatal(err)
			}
			k, err := Input{File: p}.Read()
			if c.wantErr {
				if err == nil {
					t.Fatalf("want error, got key %v", k)
				}
				if strings.Contains(err.Error(), "kkkk") {
					t.Fatalf("error echoes input: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if k.Reveal() != c.want {
				t.Fatalf("read %v, want the trimmed key", k)
			}
		})
	}
}

func TestInputPipe(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	go func() { w.WriteString(raw + "\nsecond line ignored\n"); w.Close() }()
	k, err := Input{Stdin: r}.Read()
	if err != nil {
		t.Fatal(err)
	}
	if k.Reveal() != raw {
		t.Fatalf("read %v from stdin", k)
	}
}

func TestInputFileErrorDoesNotEchoThePath(t *testing.T) {
	// Someone passes the key itself where the path goes.
	_, err := Input{File: raw}.Read()
	if err == nil || strings.Contains(err.Error(), raw) {
		t.Fatalf("err = %v; want an error without the path", err)
	}
}
