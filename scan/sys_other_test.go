//go:build !unix

package scan

import (
	"errors"
	"time"
)

func mkfifo(string) error { return errors.New("no FIFOs here") }

func cpuTime() (time.Duration, bool) { return 0, false }
