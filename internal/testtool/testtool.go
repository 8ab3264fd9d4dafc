// Package testtool finds the system programs some tests run against (a
// real OpenSSH sshd, the real promtool, a real Chromium). A missing one
// skips the test with the Debian package to install, except where the run
// must prove everything ran (scripts/test and CI set REKEY_REQUIRE_TOOLS=1,
// and CI=true counts too): there a missing tool fails the test, so a green
// run means every test ran.
package testtool

import (
	"os"
	"os/exec"
)

// T is the part of a *testing.T (or *testing.B) Find uses; this package
// does not import testing, so that a program (the demo) may use what
// uses it.
type T interface {
	Helper()
	Fatal(args ...any)
	Skip(args ...any)
}

// Required reports whether a missing tool fails the test instead of
// skipping it.
func Required() bool {
	return os.Getenv("REKEY_REQUIRE_TOOLS") == "1" || os.Getenv("CI") == "true"
}

// Find returns the path of the first of names found on $PATH or as an
// absolute path, or, when none is, skips t (or fails it when Required)
// naming pkg, the Debian package that provides it.
func Find(t T, pkg string, names ...string) string {
	t.Helper()
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	msg := names[0] + " not found: install it with `apt-get install -y " + pkg + "` (scripts/test does so when it runs as root)"
	if Required() {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}
