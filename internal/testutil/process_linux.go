package testutil

import "syscall"

// setDeathSignal has the kernel SIGKILL the child when the process that
// started it dies.
func setDeathSignal(a *syscall.SysProcAttr) { a.Pdeathsig = syscall.SIGKILL }
