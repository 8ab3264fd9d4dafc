package cli

import "testing"

func TestPrintable(t *testing.T) {
	for in, want := range map[string]string{
		"/srv/www/.env":            "/srv/www/.env",
		"/srv/日本語 a/.env":          "/srv/日本語 a/.env",
		"/srv/a\nb":                `/srv/a\nb`,
		"/srv/\x1b[2J\r\t\x00\x7f": `/srv/\x1b[2J\r\t\x00\x7f`,
		"/srv/\u202etxt":           `/srv/\u202etxt`,
		"/srv/\xff\xfe":            `/srv/\xff\xfe`,
		`/srv/back\slash`:          `/srv/back\\slash`,
		"/srv/back\\slash\n":       `/srv/back\\slash\n`,
		"/srv/\U000e0001tag":       `/srv/\U000e0001tag`,
	} {
		if got := printable(in); got != want {
			t.Errorf("printable(%q) = %q, want %q", in, got, want)
		}
	}
}
