package load

import (
	"os/exec"
	"syscall"
)

// dieWithParent has the kernel end the child if the harness dies first, so
// a crashed or killed run leaves no server behind.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
