//go:build !unix

package credstore

import "os/exec"

// killProcessGroup leaves the default (kill the process) where process
// groups are not available.
func killProcessGroup(*exec.Cmd) {}
