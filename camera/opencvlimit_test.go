package camera

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"gocv.io/x/gocv"
)

// TestMain lets the test binary double as a child process that hands a
// file straight to OpenCV, for the tests that show what OpenCV itself does
// with hostile images (the child may abort).
func TestMain(m *testing.M) {
	if mode := os.Getenv("WHISKER_TEST_OPENCV_CHILD"); mode != "" {
		os.Exit(openCVChild(mode, os.Getenv("WHISKER_TEST_OPENCV_FILE")))
	}
	os.Exit(m.Run())
}

func openCVChild(mode, file string) int {
	switch mode {
	case "setenv":
		// Too late: OpenCV read the variable when it was loaded.
		os.Setenv(OpenCVPixelLimitEnv, strconv.Itoa(OpenCVPixelLimit))
	case "exec":
		if err := ExecWithOpenCVLimit(); err != nil {
			fmt.Println("exec:", err) // and go on, as whisker does
		}
	}
	ok, err := OpenCVLimitInEffect()
	fmt.Printf("limit in effect: %v %v\n", ok, err)
	data, err := os.ReadFile(file)
	if err != nil {
		fmt.Println(err)
		return 2
	}
	m, err := gocv.IMDecode(data, gocv.IMReadColor) // no sizing: what OpenCV alone does
	if err != nil {
		fmt.Println("imdecode:", err)
		return 0
	}
	fmt.Printf("imdecode returned: empty %v, %dx%d\n", m.Empty(), m.Cols(), m.Rows())
	m.Close()
	return 0
}

// selfCommand runs this test binary again, through the emulator the tests
// run under, if any (WHISKER_TEST_EXEC, as make cross-test sets it).
func selfCommand(args ...string) *exec.Cmd {
	if w := strings.Fields(os.Getenv("WHISKER_TEST_EXEC")); len(w) > 0 {
		return exec.Command(w[0], append(append(w[1:], os.Args[0]), args...)...)
	}
	return exec.Command(os.Args[0], args...)
}

// rawDecode decodes a fixture with OpenCV alone in a child process, with
// or without OpenCV's pixel limit in its starting environment, and
// returns the child's output and whether OpenCV aborted it.
func rawDecode(t *testing.T, mode, fixture string, withLimit bool) (string, bool) {
	t.Helper()
	cmd := selfCommand("-test.run=^$")
	env := []string{"WHISKER_TEST_OPENCV_CHILD=" + mode, "WHISKER_TEST_OPENCV_FILE=" + fixtureDir + "/" + fixture}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, OpenCVPixelLimitEnv+"=") && !strings.HasPrefix(kv, reexecMark+"=") {
			env = append(env, kv)
		}
	}
	if withLimit {
		env = append(env, OpenCVPixelLimitEnv+"="+strconv.Itoa(OpenCVPixelLimit))
	}
	cmd.Env = env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var ee *exec.ExitError
	aborted := errors.As(err, &ee) && strings.Contains(out.String(), "SIGABRT")
	if err != nil && !aborted {
		t.Fatalf("child: %v\n%s", err, out.String())
	}
	return out.String(), aborted
}

// Headers that make OpenCV 4.6 throw where nothing catches it abort the
// whole process; DecodeImage refuses the same files before OpenCV sees
// them (in this process, which is still running to check).
func TestHostileHeadersAbortOpenCVButNotDecodeImage(t *testing.T) {
	for _, tc := range []struct{ fixture, opencv string }{
		{"bmp-height-int-min.bmp", "size.height > 0"},
		{"bmp-wide.bmp", "<= CV_IO_MAX_IMAGE_WIDTH"},
	} {
		out, aborted := rawDecode(t, "plain", tc.fixture, false)
		if !aborted || !strings.Contains(out, tc.opencv) {
			t.Fatalf("%s: OpenCV alone was expected to abort on %q; it did not:\n%s", tc.fixture, tc.opencv, out)
		}
		if _, err := DecodeImage(readFixture(t, tc.fixture)); !errors.Is(err, ErrImageTooLarge) {
			t.Fatalf("%s: DecodeImage: %v", tc.fixture, err)
		}
	}
}

// OpenCV's pixel limit works only from the environment the process starts
// with: set there, an image over it aborts the process at once (before
// anything is allocated); set with os.Setenv after start, it is ignored.
// ExecWithOpenCVLimit restarts a process that lacks it, and then it holds.
func TestOpenCVPixelLimitFromStartingEnvironment(t *testing.T) {
	const fx = "png-10000-little-data.png" // over OpenCVPixelLimit, under OpenCV's default; little data to decode
	const limitHit = "pixels <= CV_IO_MAX_IMAGE_PIXELS"

	out, aborted := rawDecode(t, "plain", fx, false)
	if aborted || !strings.Contains(out, "limit in effect: false") {
		t.Fatalf("without the limit OpenCV was expected to try the image (and fail on its data):\n%s", out)
	}
	out, aborted = rawDecode(t, "setenv", fx, false)
	if aborted || !strings.Contains(out, "limit in effect: false") {
		t.Fatalf("a limit set after start was expected to be ignored:\n%s", out)
	}
	out, aborted = rawDecode(t, "plain", fx, true)
	if !aborted || !strings.Contains(out, limitHit) || !strings.Contains(out, "limit in effect: true") {
		t.Fatalf("with the limit in the starting environment OpenCV was expected to abort:\n%s", out)
	}
	out, aborted = rawDecode(t, "exec", fx, false)
	switch {
	case os.Getenv("WHISKER_TEST_EXEC") != "" && strings.Contains(out, "exec format error") && strings.Contains(out, "limit in effect: false"):
		// Under qemu-user without a binfmt handler the kernel cannot
		// start an arm64 binary by itself, so the restart fails: the
		// process says so and goes on (DecodeImage still sizes images
		// first, checked below). On an arm64 device the restart works.
		t.Logf("under the emulator the restart fails, is reported and the process goes on:\n%s", out)
	case !aborted || !strings.Contains(out, limitHit) || !strings.Contains(out, "limit in effect: true"):
		t.Fatalf("after ExecWithOpenCVLimit OpenCV was expected to abort:\n%s", out)
	}
	if _, err := DecodeImage(readFixture(t, fx)); !errors.Is(err, ErrImageTooLarge) {
		t.Fatalf("DecodeImage: %v", err)
	}
}

// The formats SizeImage refuses are ones OpenCV 4.6 here really decodes
// (so the list of refusals is the list of what it would otherwise read),
// except GIF, which it does not read at all. The files are well-formed,
// written by OpenCV itself, so decoding them here is safe.
func TestOpenCVReadsTheRefusedFormats(t *testing.T) {
	for _, fx := range fixtures {
		if !strings.HasPrefix(fx.name, "refused.") || fx.name == "refused.dcm" { // the DICOM file is a bare preamble
			continue
		}
		m, err := gocv.IMDecode(readFixture(t, fx.name), gocv.IMReadColor)
		if err != nil {
			t.Fatal(err)
		}
		decoded := !m.Empty()
		m.Close()
		if want := fx.name != "refused.gif"; decoded != want {
			t.Errorf("%s: OpenCV decoded it: %v, want %v", fx.name, decoded, want)
		}
		if _, err := DecodeImage(readFixture(t, fx.name)); !errors.Is(err, ErrImageFormat) {
			t.Errorf("%s: DecodeImage: %v", fx.name, err)
		}
	}
	// A fill byte before a marker is legal JPEG, and OpenCV reads it: its
	// refusal is a choice, so that no two readers can see different frames.
	m, err := gocv.IMDecode(readFixture(t, "jpeg-fill-small.jpg"), gocv.IMReadColor)
	if err != nil || m.Empty() {
		t.Fatalf("OpenCV did not read the small JPEG with a fill byte: %v", err)
	}
	m.Close()
}
