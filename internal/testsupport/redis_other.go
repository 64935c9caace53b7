//go:build !linux

package testsupport

import "os/exec"

func dieWithTest(*exec.Cmd) {}
