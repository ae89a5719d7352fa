package agent_test

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/whiskercam/whisker/agent"
	"github.com/whiskercam/whisker/agent/config"
	"github.com/whiskercam/whisker/agent/ota"
	"github.com/whiskercam/whisker/agent/protocol"
	"github.com/whiskercam/whisker/firmware/attest"
	"github.com/whiskercam/whisker/firmware/bundle"
	"github.com/whiskercam/whisker/firmware/update"
	"github.com/whiskercam/whisker/internal/testenv"
)

// These tests attack a real agent over a real mosquitto, with only what a
// stranger on the broker has: the update command.

// updateKit is a camera's update setup: a fleet key it trusts, its own
// device key, and a directory it reads bundles from.
type updateKit struct {
	dir    string
	local  string // update.local_dir
	key    ed25519.PrivateKey
	pub    string // the fleet key's file
	layout update.Layout
	keys   attest.Keyring // the camera's enrolled key, as a rollout has it
}

func newUpdateKit(t *testing.T, cfg *config.Config) *updateKit {
	t.Helper()
	k := &updateKit{dir: t.TempDir(), layout: ota.Layout(cfg.StateDir)}
	k.local = filepath.Join(k.dir, "bundles")
	os.Mkdir(k.local, 0o755)
	k.pub = filepath.Join(k.dir, "fleet.pub")
	if _, err := bundle.GenerateKeys(filepath.Join(k.dir, "fleet.key"), k.pub); err != nil {
		t.Fatal(err)
	}
	k.key, _ = bundle.LoadPrivateKey(filepath.Join(k.dir, "fleet.key"))
	// Enrolled at install (whisker keys gen --device).
	os.MkdirAll(k.layout.Dir, 0o755)
	devPub, err := attest.GenerateDeviceKey(k.layout.DeviceKeyPath(), k.layout.DevicePubPath(), cfg.Device)
	if err != nil {
		t.Fatal(err)
	}
	k.keys = attest.Keyring{cfg.Device: devPub}
	cfg.Update.TrustedKeys = []string{k.pub}
	cfg.Update.LocalDir = k.local
	// No camera: these tests need only the broker, and the CPU is better
	// left to the agent's answers.
	cfg.Camera.Source = filepath.Join(k.dir, "no-camera")
	cfg.Log.Level = "warn"
	return k
}

// bundle writes a signed bundle of version into the local directory.
func (k *updateKit) bundle(t *testing.T, name, version string) (string, string) {
	t.Helper()
	bin := filepath.Join(k.dir, "whisker-"+version)
	os.WriteFile(bin, []byte("#!/bin/sh\nexit 0\n"), 0o755)
	p := filepath.Join(k.local, name)
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bundle.Create(f, []bundle.Input{{Kind: bundle.KindAgent, Path: bin}}, bundle.CreateOptions{Version: version, Key: k.key}); err != nil {
		t.Fatal(err)
	}
	f.Close()
	sha, _ := bundle.FileSHA256(p)
	return p, sha
}

// slots fakes what earlier updates left: slot directories, the current
// link (none for "") and the state.
func (k *updateKit) slots(t *testing.T, current string, st *update.State) {
	t.Helper()
	for _, s := range []string{update.SlotA, update.SlotB} {
		os.MkdirAll(filepath.Join(k.layout.Dir, "slots", s), 0o755)
	}
	if current != "" {
		if err := os.Symlink(filepath.Join("slots", current), filepath.Join(k.layout.Dir, "current")); err != nil {
			t.Fatal(err)
		}
	}
	if err := k.layout.WriteState(st); err != nil {
		t.Fatal(err)
	}
}

// verify checks a report against the camera's enrolled key.
func (k *updateKit) verify(t *testing.T, device string, env *attest.Envelope) *attest.Report {
	t.Helper()
	r, err := k.keys.Verify(device, env)
	if err != nil {
		t.Fatalf("update_report: %v", err)
	}
	return r
}

// finalAnswer sends an update request and returns its last answer: the
// refusal, or the outcome that follows "started".
func finalAnswer(t *testing.T, cl *client, id, path, sha string) protocol.Result {
	t.Helper()
	r := cl.request(protocol.TopicCmd, []byte(fmt.Sprintf(`{"request_id":%q,"cmd":"update","path":%q,"sha256":%q}`, id, path, sha)), id)
	if !r.Ok {
		return r
	}
	if r.Update == nil || r.Update.State != "started" {
		t.Fatalf("%s: first answer %+v", id, r)
	}
	return cl.waitResult(id, 60*time.Second)
}

var hexRun = regexp.MustCompile(`[0-9a-f]{12,}`)

// The file oracle, through the agent: /etc/shadow, /dev/zero and FIFOs,
// outside update.local_dir and led to from inside it, are refused; every
// path inside that does not hold the bundle gets one answer, the paths
// outside get another; no answer, status or signed report names a hash
// but the bundle's asked for; nothing is copied; the FIFO holds nothing up.
// Why a path failed is in the camera's own log only.
func TestLocalPathsDoNotLeakOverMQTT(t *testing.T) {
	t.Setenv(ota.EnvBooted, "1")
	t.Setenv(ota.EnvSlot, "")
	mosq := testenv.StartMosquitto(t)
	cfg := testConfig(t, mosq.URL(), "oracle")
	k := newUpdateKit(t, &cfg)
	good, sha := k.bundle(t, "good.wsk", "2.0.0")
	os.WriteFile(filepath.Join(k.local, "other.wsk"), []byte("another file"), 0o644)
	os.Mkdir(filepath.Join(k.local, "dir.wsk"), 0o755)
	for _, p := range []string{filepath.Join(k.local, "fifo.wsk"), filepath.Join(k.dir, "fifo")} {
		if err := syscall.Mkfifo(p, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.Symlink("/etc/shadow", filepath.Join(k.local, "shadow.wsk"))
	os.Symlink("/dev/zero", filepath.Join(k.local, "zero.wsk"))
	// /dev/zero's own device node inside the directory (1, 5), where the
	// test may make one.
	devZero := syscall.Mknod(filepath.Join(k.local, "dev-zero.wsk"), syscall.S_IFCHR|0o644, 1<<8|5) == nil
	// What the camera must never give away: the shadow file's hash.
	secret := strings.Repeat("0", 64)
	if data, err := os.ReadFile("/etc/shadow"); err == nil {
		h := sha256.Sum256(data)
		secret = hex.EncodeToString(h[:])
	}

	_, logs := startAgentLogged(t, cfg)
	cl := newClient(t, mosq.URL(), "whisker/oracle/")
	cl.waitStatus("online")

	check := func(t *testing.T, id, asked string, r protocol.Result) {
		t.Helper()
		if r.Ok {
			t.Fatalf("%s: accepted: %+v", id, r)
		}
		for _, text := range []string{r.Error, reportReason(t, k, r)} {
			rest := strings.ReplaceAll(strings.ReplaceAll(text, asked, ""), asked[:16], "")
			if hexRun.MatchString(rest) || (asked != secret && strings.Contains(text, secret[:12])) {
				t.Errorf("%s: names a hash: %q", id, text)
			}
		}
		entries, _ := os.ReadDir(k.layout.Downloads())
		for _, e := range entries {
			t.Errorf("%s: %s was left in the downloads", id, e.Name())
		}
	}
	var last string // the last answer
	answers := func(t *testing.T, cases [][2]string) string {
		t.Helper()
		var first string
		for i, c := range cases {
			id := fmt.Sprintf("%s-%d", strings.ReplaceAll(t.Name(), "/", "-"), i)
			asked := sha
			if c[1] != "" {
				asked = c[1]
			}
			r := finalAnswer(t, cl, id, c[0], asked)
			check(t, id, asked, r)
			last = r.Error
			for len(cl.status) > 0 { // keep room for the statuses to come
				<-cl.status
			}
			t.Logf("%-40s %s", c[0], r.Error)
			if i == 0 {
				first = r.Error
			} else if r.Error != first {
				t.Errorf("%s: answers differ, so they tell files apart: %q and %q", c[0], first, r.Error)
			}
		}
		return first
	}

	var inside, outside string
	t.Run("outside local_dir", func(t *testing.T) {
		outside = answers(t, [][2]string{
			{"/etc/shadow", ""},
			{"/dev/zero", ""},
			{filepath.Join(k.dir, "fifo"), ""},
			{"file:///etc/shadow", ""},
			{filepath.Join(k.local, "..", "..", "etc", "shadow"), ""},
		})
		if !strings.Contains(outside, "not inside update.local_dir") {
			t.Errorf("answer %q", outside)
		}
	})
	t.Run("inside local_dir", func(t *testing.T) {
		cases := [][2]string{
			{filepath.Join(k.local, "missing.wsk"), ""},
			{filepath.Join(k.local, "fifo.wsk"), ""},
			{filepath.Join(k.local, "shadow.wsk"), ""},
			{filepath.Join(k.local, "zero.wsk"), ""},
			{filepath.Join(k.local, "other.wsk"), ""},
			{filepath.Join(k.local, "dir.wsk"), ""},
			{"missing.wsk", ""},
			// The bundle itself, asked for with the shadow file's hash:
			// the camera does not say what the file's hash is instead.
			{good, secret},
		}
		if devZero {
			cases = append(cases, [2]string{filepath.Join(k.local, "dev-zero.wsk"), ""})
		} else {
			t.Log("no device node made (mknod needs root): /dev/zero is tried through a link only")
		}
		inside = answers(t, cases)
		if inside != "update failed: "+update.ErrNoLocalBundle.Error() {
			t.Errorf("answer %q", inside)
		}
	})
	if inside == outside {
		t.Errorf("inside and outside answered alike: %q", inside)
	}
	// The status says no more than the answer (the last one's status
	// follows it).
	st := cl.waitStatus("online")
	for st.Update == nil || "update failed: "+st.Update.Error != last {
		st = cl.waitStatus("online")
	}
	// The cause of each miss stays on the camera.
	if logs.count("not a regular file") == 0 || logs.count("path escapes") == 0 {
		t.Errorf("the agent's log lacks the causes of the local misses")
	}
}

// reportReason checks the signed report of a refused update and returns
// its reason ("" when the answer carries none).
func reportReason(t *testing.T, k *updateKit, r protocol.Result) string {
	t.Helper()
	if r.UpdateReport == nil {
		t.Errorf("%s: no signed report", r.RequestID)
		return ""
	}
	rep := k.verify(t, "oracle", r.UpdateReport)
	if rep.Event != attest.EventFailed || rep.RequestID != r.RequestID || "update failed: "+rep.Reason != r.Error {
		t.Errorf("%s: report %+v for answer %q", r.RequestID, rep, r.Error)
	}
	return rep.Reason
}

// A camera with a new version on probation refuses the next update at
// once, with the reason, before fetching anything, and changes nothing.
func TestUpdateOnProbationIsRefusedOverMQTT(t *testing.T) {
	mosq := testenv.StartMosquitto(t)
	cfg := testConfig(t, mosq.URL(), "probation")
	cfg.Update.HealthTimeout = time.Hour // probation lasts through the test
	k := newUpdateKit(t, &cfg)
	next, sha := k.bundle(t, "1.2.0.wsk", "1.2.0")
	committed := strings.Repeat("a1", 32)
	k.slots(t, update.SlotB, &update.State{Committed: update.SlotA,
		Slots:   map[string]update.SlotInfo{update.SlotA: {Version: "1.0.0", Bundle: committed}, update.SlotB: {Version: "1.1.0", Bundle: strings.Repeat("b2", 32)}},
		Pending: &update.Pending{Slot: update.SlotB, Previous: update.SlotA, Version: "1.1.0", Bundle: strings.Repeat("b2", 32), Since: time.Now()}})
	before, _ := os.ReadFile(filepath.Join(k.layout.Dir, "state.json"))
	t.Setenv(ota.EnvBooted, "1")
	t.Setenv(ota.EnvSlot, update.SlotB)
	startAgent(t, cfg)
	cl := newClient(t, mosq.URL(), "whisker/probation/")
	if st := cl.waitStatus("online"); st.Update == nil || st.Update.State != "probation" {
		t.Fatalf("status %+v", st.Update)
	}
	// A newer release, and the committed one: both wait for probation.
	for id, s := range map[string]string{"next": sha, "back": committed} {
		r := cl.request(protocol.TopicCmd, []byte(fmt.Sprintf(`{"request_id":%q,"cmd":"update","path":%q,"sha256":%q}`, id, next, s)), id)
		if r.Ok || !strings.Contains(r.Error, "on probation") || !strings.Contains(r.Error, "1.1.0 in slot b") {
			t.Fatalf("%s: %+v", id, r)
		}
		t.Logf("%s: %s", id, r.Error)
	}
	if entries, _ := os.ReadDir(k.layout.Downloads()); len(entries) > 0 {
		t.Errorf("fetched %d files while on probation", len(entries))
	}
	if after, _ := os.ReadFile(filepath.Join(k.layout.Dir, "state.json")); string(after) != string(before) {
		t.Errorf("the state changed:\n%s", after)
	}
}

// Asked for the bundle it already runs, committed, a camera fetches
// nothing and answers with a report signed by its key that a rollout
// counts; no fallback is in force, and the metric says so.
func TestUpdateToTheRunningBundleIsAttested(t *testing.T) {
	mosq := testenv.StartMosquitto(t)
	cfg := testConfig(t, mosq.URL(), "current")
	k := newUpdateKit(t, &cfg)
	sha := strings.Repeat("c3", 32)
	k.slots(t, update.SlotB, &update.State{Committed: update.SlotB,
		Slots: map[string]update.SlotInfo{update.SlotB: {Version: "1.1.0", Bundle: sha}}})
	t.Setenv(ota.EnvBooted, "1")
	t.Setenv(ota.EnvSlot, update.SlotB)
	a := startAgent(t, cfg)
	cl := newClient(t, mosq.URL(), "whisker/current/")
	st := cl.waitStatus("online")
	if st.Firmware == nil || st.Firmware.Fallback != nil || st.Firmware.Bundle != sha {
		t.Fatalf("firmware %+v", st.Firmware)
	}
	r := finalAnswer(t, cl, "again", filepath.Join(k.local, "not-there.wsk"), sha)
	if !r.Ok || r.Update == nil || r.Update.State != "current" || r.Update.Version != "1.1.0" {
		t.Fatalf("answer %+v", r)
	}
	if rep := k.verify(t, "current", r.UpdateReport); !rep.Succeeded("again", sha) || rep.Event != attest.EventCurrent {
		t.Fatalf("report %+v", rep)
	}
	if entries, _ := os.ReadDir(k.layout.Downloads()); len(entries) > 0 {
		t.Errorf("fetched %d files for the bundle it runs", len(entries))
	}
	if got := metric(t, a, "whisker_firmware_fallback"); got != "0" {
		t.Errorf("whisker_firmware_fallback %s, want 0", got)
	}
}

// While boot runs the installed binary instead of a slot that does not
// verify, the agent says so: an error in its log at start, firmware.fallback
// on the status, and the metric at 1.
func TestBootFallbackIsLoud(t *testing.T) {
	mosq := testenv.StartMosquitto(t)
	cfg := testConfig(t, mosq.URL(), "fallback")
	k := newUpdateKit(t, &cfg)
	reason := "slot b does not verify: slot b, part head: signed by a key this device does not trust (key 4de1507197371e14)"
	k.slots(t, "", &update.State{Committed: update.SlotB,
		Slots:    map[string]update.SlotInfo{update.SlotB: {Version: "1.3.2", Bundle: strings.Repeat("d4", 32)}},
		Fallback: &update.Fallback{From: update.SlotB, Version: "1.3.2", Reason: reason, UntrustedKeys: []string{"4de1507197371e14"}, At: time.Now()}})
	t.Setenv(ota.EnvBooted, "1")
	t.Setenv(ota.EnvSlot, "")
	a, logs := startAgentLogged(t, cfg)
	cl := newClient(t, mosq.URL(), "whisker/fallback/")
	st := cl.waitStatus("online")
	fb := st.Firmware.Fallback
	if fb == nil || fb.From != "b" || fb.To != "" || fb.Version != "1.3.2" || fb.Reason != reason || len(fb.UntrustedKeys) != 1 {
		t.Fatalf("firmware %+v, fallback %+v", st.Firmware, fb)
	}
	if logs.count("level=ERROR") == 0 || logs.count("firmware fallback") == 0 {
		t.Error("no error logged for the fallback")
	}
	if got := metric(t, a, "whisker_firmware_fallback"); got != "1" {
		t.Errorf("whisker_firmware_fallback %s, want 1", got)
	}
}

// metric reads one unlabelled metric's value from /metrics.
func metric(t *testing.T, a *agent.Agent, name string) string {
	t.Helper()
	resp, err := http.Get("http://" + a.HTTPAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return v
		}
	}
	t.Fatalf("/metrics lacks %s", name)
	return ""
}
