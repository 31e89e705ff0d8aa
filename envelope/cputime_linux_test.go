package envelope_test

import (
	"syscall"
	"time"
	"unsafe"
)

// cpuTime returns the CPU time this process has used so far, all threads
// (the garbage collector's included), from CLOCK_PROCESS_CPUTIME_ID: exact
// to the scheduler's accounting, unlike getrusage's ticks.
func cpuTime() time.Duration {
	const clockProcessCPUTimeID = 2
	var ts syscall.Timespec
	if _, _, errno := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, clockProcessCPUTimeID, uintptr(unsafe.Pointer(&ts)), 0); errno != 0 {
		return 0
	}
	return time.Duration(ts.Nano())
}
