package cli

import (
	"bytes"
	"encoding/json"
	"runtime/debug"
	"strings"
	"testing"
)

func TestVersionFromBuildInfo(t *testing.T) {
	built := func() (*debug.BuildInfo, bool) {
		return &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "github.com/rekey-dev/rekey", Version: "v1.4.0"},
			Settings: []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"},
				{Key: "vcs.time", Value: "2026-01-02T03:04:05Z"}, {Key: "vcs.modified", Value: "true"}}}, true
	}
	got := versionInfo(built).String()
	want := "rekey v1.4.0 (revision 0123456789abcdef0123456789abcdef01234567, 2026-01-02T03:04:05Z, with uncommitted changes) go1.26.8"
	if got != want {
		t.Errorf("version = %q\nwant      %q", got, want)
	}
	if got := versionInfo(func() (*debug.BuildInfo, bool) { return nil, false }).String(); got != "rekey unknown (revision unknown: built without VCS information)" {
		t.Errorf("without build info: %q", got)
	}
}

// `rekey version` and `rekey --version` print the same line, from this
// binary's own build info; --output json gives the same facts.
func TestVersionCommands(t *testing.T) {
	run := func(args ...string) string {
		var out, errs bytes.Buffer
		if code := Main(args, Streams{Out: &out, Err: &errs}); code != 0 {
			t.Fatalf("rekey %s: exit %d: %s", strings.Join(args, " "), code, errs.String())
		}
		return out.String()
	}
	want := versionInfo(debug.ReadBuildInfo).String() + "\n"
	if got := run("version"); got != want {
		t.Errorf("rekey version = %q, want %q", got, want)
	}
	if got := run("--version"); got != want {
		t.Errorf("rekey --version = %q, want %q", got, want)
	}
	var v VersionInfo
	if err := json.Unmarshal([]byte(run("version", "--output", "json")), &v); err != nil || v.Version == "" {
		t.Errorf("rekey version --output json: %+v, %v", v, err)
	}
}
