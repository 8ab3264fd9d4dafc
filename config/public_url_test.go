package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPublicURL(t *testing.T) {
	for _, tc := range []struct{ url, want string }{
		{"", ""},
		{"https://rekey.greens.example", ""},
		{"https://greens.example/rekey/", ""},
		{"rekey.greens.example", "serve: field public_url: \"rekey.greens.example\" is not an http(s) URL"},
		{"https://rekey.example/#x", "no query or fragment"},
		{"https://ops:s3cr3tpassw0rd@rekey.example", "no user or password"},
	} {
		p := filepath.Join(t.TempDir(), "rekey.yaml")
		os.WriteFile(p, []byte("serve: {public_url: \""+tc.url+"\"}\n"), 0o600)
		c, err := Load(p)
		switch {
		case tc.want == "" && (err != nil || c.Serve.PublicURL != tc.url):
			t.Errorf("%q: %v", tc.url, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%q: %v, want %q", tc.url, err, tc.want)
		case err != nil && strings.Contains(err.Error(), "s3cr3t"):
			t.Errorf("the error repeats the password: %v", err)
		}
	}
}
