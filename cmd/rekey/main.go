// Command rekey rotates third-party API keys and responds when one leaks.
package main

import (
	"os"

	"github.com/rekey-dev/rekey/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], cli.Streams{In: os.Stdin, Out: os.Stdout, Err: os.Stderr}))
}
