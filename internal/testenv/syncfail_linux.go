package testenv

import (
	"errors"
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// FailSyncs makes every fsync and fdatasync of this process fail with
// EIO from now on, in every thread, for good: a seccomp filter, installed
// with no way back. Run it only in a child process a test started. It
// shows whether code syncs: a store that syncs its commits fails them
// afterwards, one that does not, does not notice.
func FailSyncs() error {
	var arch uint32
	switch runtime.GOARCH {
	case "amd64":
		arch = unix.AUDIT_ARCH_X86_64
	case "arm64":
		arch = unix.AUDIT_ARCH_AARCH64
	default:
		return fmt.Errorf("FailSyncs: no seccomp architecture for %s", runtime.GOARCH)
	}
	const (
		ldW  = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
		jeq  = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
		ret  = unix.BPF_RET | unix.BPF_K
		nrAt = 0 // offsetof(struct seccomp_data, nr)
		arAt = 4 // offsetof(struct seccomp_data, arch)
	)
	prog := []unix.SockFilter{
		{Code: ldW, K: arAt},
		{Code: jeq, K: arch, Jt: 1},
		{Code: ret, K: unix.SECCOMP_RET_ALLOW}, // another ABI: leave it alone
		{Code: ldW, K: nrAt},
		{Code: jeq, K: unix.SYS_FSYNC, Jt: 1},
		{Code: jeq, K: unix.SYS_FDATASYNC, Jf: 1},
		{Code: ret, K: unix.SECCOMP_RET_ERRNO | uint32(unix.EIO)},
		{Code: ret, K: unix.SECCOMP_RET_ALLOW},
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("FailSyncs: no_new_privs: %w", err)
	}
	_, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&fprog)))
	if errno != 0 {
		return fmt.Errorf("FailSyncs: %w: %w", ErrNoSeccomp, errno)
	}
	runtime.KeepAlive(prog)
	return nil
}

// ErrNoSeccomp is returned by FailSyncs where it cannot work.
var ErrNoSeccomp = errors.New("seccomp filters are not available")
