//go:build !unix

package secret

import "os"

func openKeyFile(path string) (*os.File, error) { return os.Open(path) }
