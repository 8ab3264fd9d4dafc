// Package e2e holds end-to-end stories of the engine (package rotation)
// on a real Vault dev server (internal/vaulttest) with test servers
// speaking each integration's protocol: what only a whole rotation on
// Vault shows. The engine's logic tests run on the in-memory store in
// package rotation; the command line's stories are cmd/rekey's testscripts.
package e2e
