package camera

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// OpenCV 4.6 has its own limit on the pixels of an image it decodes, read
// from the environment variable OPENCV_IO_MAX_IMAGE_PIXELS (default 2^30).
// It reads the variable once, while libopencv_imgcodecs is being loaded,
// before any Go code runs: setting it from Go (in an init function, with
// os.Setenv) changes nothing for the running process. It has to be in the
// environment the process starts with; ExecWithOpenCVLimit restarts the
// program with it when it is not.
//
// OpenCV's limit is a backstop, not a refusal: an image over it makes
// imdecode throw where nothing catches the exception, and the process
// aborts. SizeImage refuses such images before OpenCV sees them; the
// backstop turns a bypass of those checks into an immediate abort instead
// of an allocation of gigabytes that takes the device down with it.

// OpenCVPixelLimitEnv is the variable OpenCV reads its pixel limit from.
const OpenCVPixelLimitEnv = "OPENCV_IO_MAX_IMAGE_PIXELS"

// OpenCVPixelLimit is the value the agent runs OpenCV with: 2^26 pixels,
// above every ImageLimits.MaxPixels that Validate allows (so an image
// DecodeImage accepts never reaches it) and 16 times below OpenCV's
// default.
const OpenCVPixelLimit = 1 << 26

// reexecMark is set in the environment of the re-executed program, so that
// a second restart is never tried.
const reexecMark = "WHISKER_OPENCV_LIMIT_REEXEC"

// OpenCVLimitInEffect says whether this process started with
// OpenCVPixelLimitEnv set to OpenCVPixelLimit, which is what OpenCV uses.
// It reads the environment the process started with (/proc/self/environ),
// not the current one, which os.Setenv may have changed.
func OpenCVLimitInEffect() (bool, error) {
	env, err := os.ReadFile("/proc/self/environ")
	if err != nil {
		return false, fmt.Errorf("read the environment the process started with: %w", err)
	}
	want := OpenCVPixelLimitEnv + "=" + strconv.Itoa(OpenCVPixelLimit)
	for _, kv := range bytes.Split(env, []byte{0}) {
		if string(kv) == want {
			return true, nil
		}
	}
	return false, nil
}

// ExecWithOpenCVLimit makes sure OpenCV's pixel limit is in effect. When
// the process started without it, it executes the program again, in place
// (the same process id, arguments and open files, with the variable added
// to the environment), and so does not return. Call it first in main,
// before any goroutine, file or connection is started. It returns an error
// when it cannot tell or cannot restart.
func ExecWithOpenCVLimit() error {
	ok, err := OpenCVLimitInEffect()
	if err != nil || ok {
		return err
	}
	if os.Getenv(reexecMark) != "" {
		return errors.New("restarted with " + OpenCVPixelLimitEnv + " set, but the new process did not start with it")
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("set %s: %w", OpenCVPixelLimitEnv, err)
	}
	env := []string{OpenCVPixelLimitEnv + "=" + strconv.Itoa(OpenCVPixelLimit), reexecMark + "=1"}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, OpenCVPixelLimitEnv+"=") && !strings.HasPrefix(kv, reexecMark+"=") {
			env = append(env, kv)
		}
	}
	err = syscall.Exec(exe, os.Args, env)
	return fmt.Errorf("restart %s with %s set: %w", exe, OpenCVPixelLimitEnv, err)
}
