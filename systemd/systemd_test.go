package systemd_test

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/whiskercam/whisker/internal/testenv"
)

// verify runs systemd-analyze verify on a unit whose ExecStart binary is
// replaced by an existing one; any complaint fails the test.
func verify(t *testing.T, unit, binary string) {
	t.Helper()
	analyze := testenv.Command(t, "systemd-analyze", "systemd")
	data, err := os.ReadFile(unit)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.ReplaceAll(string(data), "ExecStart=/usr/local/bin/whisker", "ExecStart="+binary)
	if !strings.Contains(text, "ExecStart="+binary) {
		t.Fatalf("%s has no ExecStart=/usr/local/bin/whisker", unit)
	}
	copyPath := filepath.Join(t.TempDir(), "whisker.service")
	if err := os.WriteFile(copyPath, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", copyPath).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

func directives(t *testing.T, unit string) map[string][]string {
	t.Helper()
	f, err := os.Open(unit)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			out[k] = append(out[k], v)
		}
	}
	return out
}

func TestUnitVerifiesAndIsHardened(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	verify(t, "whisker.service", self)
	d := directives(t, "whisker.service")
	for key, want := range map[string]string{
		"Type": "notify", "Restart": "on-failure", "ProtectSystem": "strict", "NoNewPrivileges": "yes",
		"DevicePolicy": "closed", "User": "whisker", "StateDirectory": "whisker",
	} {
		if len(d[key]) != 1 || d[key][0] != want {
			t.Errorf("%s=%v, want %s", key, d[key], want)
		}
	}
	if len(d["WatchdogSec"]) != 1 || len(d["DeviceAllow"]) == 0 || !strings.Contains(strings.Join(d["DeviceAllow"], " "), "/dev/video0") {
		t.Errorf("WatchdogSec %v, DeviceAllow %v", d["WatchdogSec"], d["DeviceAllow"])
	}
	if len(d["PrivateDevices"]) != 0 {
		t.Error("PrivateDevices would hide the camera")
	}
	if env := strings.Join(d["Environment"], " "); !strings.Contains(env, "OPENCV_IO_MAX_IMAGE_PIXELS=67108864") {
		t.Errorf("Environment=%q does not set OpenCV's pixel limit to camera.OpenCVPixelLimit", env)
	}
}

// make install into a staging directory installs binary, library, model,
// configuration and unit, and the installed unit verifies.
func TestMakeInstall(t *testing.T) {
	root := testenv.Root(t)
	dest := t.TempDir()
	cmd := exec.Command("make", "-s", "install", "DESTDIR="+dest)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make install: %v\n%s", err, out)
	}
	for _, f := range []string{
		"usr/local/bin/whisker", "usr/local/lib/whisker/libtensorflowlite_c.so",
		"usr/local/share/whisker/models/backbone.tflite", "usr/local/share/whisker/models/backbone.manifest.json",
		"usr/local/share/whisker/models/backbone-detect.tflite", "usr/local/share/whisker/models/backbone-detect.manifest.json",
		"etc/whisker/whisker.yaml", "etc/systemd/system/whisker.service", "usr/lib/sysusers.d/whisker.conf",
	} {
		if _, err := os.Stat(filepath.Join(dest, f)); err != nil {
			t.Errorf("not installed: %s", f)
		}
	}
	// The configuration can hold a password and password hashes: the
	// whisker group reads it, other users do not.
	if st, err := os.Stat(filepath.Join(dest, "etc/whisker/whisker.yaml")); err != nil || st.Mode().Perm() != 0o640 {
		t.Errorf("installed config: mode %v (%v), want 0640", st.Mode().Perm(), err)
	}
	bin := filepath.Join(dest, "usr/local/bin/whisker")
	verify(t, filepath.Join(dest, "etc/systemd/system/whisker.service"), bin)
	// The installed configuration is valid and points at the installed model.
	cfg, err := os.ReadFile(filepath.Join(dest, "etc/whisker/whisker.yaml"))
	if err != nil || !strings.Contains(string(cfg), "/usr/local/share/whisker/models/backbone-detect.manifest.json") {
		t.Fatalf("installed config: %v\n%s", err, cfg)
	}
	// The binary runs against the installed library (found through its
	// rpath once installed; here through LD_LIBRARY_PATH).
	check := exec.Command(bin, "config", "check", filepath.Join(dest, "etc/whisker/whisker.yaml"))
	check.Env = append(os.Environ(), "LD_LIBRARY_PATH="+filepath.Join(dest, "usr/local/lib/whisker"))
	if out, err := check.CombinedOutput(); err != nil {
		t.Fatalf("installed whisker config check: %v\n%s", err, out)
	}
}
