package camera

import (
	"runtime"
	"syscall"
)

// NiceThread locks the calling goroutine to its OS thread and makes that
// thread n steps nicer (Linux schedules threads, not processes), so that
// it takes the CPU only when busier work, such as the backbone's threads,
// leaves it idle. The goroutine must not unlock the thread: the thread
// ends with it, and no other goroutine ever runs at that priority.
func NiceThread(n int) error {
	runtime.LockOSThread()
	if n <= 0 {
		return nil
	}
	cur, err := syscall.Getpriority(syscall.PRIO_PROCESS, syscall.Gettid())
	if err != nil {
		return err
	}
	// The raw syscall returns 20 - nice.
	return syscall.Setpriority(syscall.PRIO_PROCESS, syscall.Gettid(), min(20-cur+n, 19))
}
