//go:build !linux

package camera

import "runtime"

// NiceThread locks the calling goroutine to its OS thread; lowering its
// priority is only done on Linux.
func NiceThread(n int) error {
	runtime.LockOSThread()
	return nil
}
