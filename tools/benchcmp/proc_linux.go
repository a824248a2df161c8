package main

import (
	"os/exec"
	"syscall"
)

// setDeathSignal kills the child if the driver dies without cleaning up
// (SIGKILL, a crash), so that no process is left behind.
func setDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
