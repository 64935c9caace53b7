package redistest

import (
	"os/exec"
	"syscall"
)

// dieWithTest makes the kernel end the server when the test binary ends,
// even by a panic or a timeout that skips every cleanup.
func dieWithTest(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
