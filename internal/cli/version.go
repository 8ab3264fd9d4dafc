package cli

import (
	"fmt"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// VersionInfo is what `rekey version` says: the module version and the VCS
// revision the binary was built from, as Go records them in the build
// info.
type VersionInfo struct {
	Version  string `json:"version"`            // v1.2.3, or (devel) for a build from a checkout
	Revision string `json:"revision,omitempty"` // the commit
	Time     string `json:"time,omitempty"`     // the commit's time
	Modified bool   `json:"modified,omitempty"` // built with uncommitted changes
	Go       string `json:"go,omitempty"`
}

// versionInfo reads the build info with read (debug.ReadBuildInfo).
func versionInfo(read func() (*debug.BuildInfo, bool)) VersionInfo {
	v := VersionInfo{Version: "unknown"}
	bi, ok := read()
	if !ok {
		return v
	}
	v.Go = bi.GoVersion
	if bi.Main.Version != "" {
		v.Version = bi.Main.Version
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Revision = s.Value
		case "vcs.time":
			v.Time = s.Value
		case "vcs.modified":
			v.Modified = s.Value == "true"
		}
	}
	return v
}

// String is the one line `rekey version` and `rekey --version` print.
func (v VersionInfo) String() string {
	s := "rekey " + v.Version
	switch {
	case v.Revision == "":
		s += " (revision unknown: built without VCS information)"
	default:
		s += " (revision " + v.Revision
		if v.Time != "" {
			s += ", " + v.Time
		}
		if v.Modified {
			s += ", with uncommitted changes"
		}
		s += ")"
	}
	if v.Go != "" {
		s += " " + v.Go
	}
	return s
}

// NewCmdVersion builds `rekey version`.
func NewCmdVersion(g *GlobalOptions, s Streams) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print rekey's version and the VCS revision it was built from",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			v := versionInfo(debug.ReadBuildInfo)
			if g.Output == "json" {
				return writeJSON(s.Out, v)
			}
			fmt.Fprintln(s.Out, v.String())
			return nil
		},
	}
}
