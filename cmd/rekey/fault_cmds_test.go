package main

import "github.com/rogpeppe/go-internal/testscript"

// faultCmds are testscript commands for the fault stories.
var faultCmds = map[string]func(ts *testscript.TestScript, neg bool, args []string){}
