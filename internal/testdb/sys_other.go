//go:build !unix

package testdb

import "os/exec"

// osUser is the OS account that initdb and postgres run as. Outside Unix the
// tests' own account is always used, so it is always nil.
type osUser struct{ name string }

// serverOSUser returns nil: the current user runs the server.
func serverOSUser() (*osUser, error) { return nil, nil }

// apply does nothing: the current user runs the server.
func (u *osUser) apply(*exec.Cmd) {}

// chown does nothing: the current user runs the server.
func (u *osUser) chown(string) error { return nil }

// suffix returns "": the current user runs the server.
func (u *osUser) suffix() string { return "" }

// processAlive reports true, so that stale clusters are never swept where
// liveness cannot be checked cheaply.
func processAlive(int) bool { return true }

// lockFile does not lock: installing packages is for Debian only.
func lockFile(string) (func(), error) { return func() {}, nil }
