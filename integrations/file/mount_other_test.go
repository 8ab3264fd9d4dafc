//go:build !linux

package file

import "testing"

func tmpfs(t *testing.T, opts string) string {
	t.Skip("tmpfs mounts are for Linux")
	return ""
}

func remountReadOnly(t *testing.T, dir string) {}
