package sshpool_test

import (
	"os/exec"
	"strconv"
)

func runCmd(name string, args ...string) ([]byte, error) {
	return exec.Command(name, args...).CombinedOutput()
}

func itoa(n int) string { return strconv.Itoa(n) }
