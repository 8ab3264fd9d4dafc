package main

import "github.com/rogpeppe/go-internal/testscript"

// leakCmds are testscript commands for the leak stories.
var leakCmds = map[string]func(ts *testscript.TestScript, neg bool, args []string){}
