package main

import "github.com/rogpeppe/go-internal/testscript"

// serveCmds are testscript commands for the serve stories.
var serveCmds = map[string]func(ts *testscript.TestScript, neg bool, args []string){}
