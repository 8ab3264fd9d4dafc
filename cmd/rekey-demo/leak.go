package main

import "github.com/rekey-dev/rekey/internal/ansim"

// leakDemo shows a leak response once `rekey leak` exists.
func leakDemo(dir string, sim *ansim.Sim, current string, rekey func(args ...string) int) error {
	return nil
}
