package fleet_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/whiskercam/whisker/agent/protocol"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/whiskercam/whisker/firmware/attest"
	"github.com/whiskercam/whisker/firmware/bundle"
	"github.com/whiskercam/whisker/firmware/fleet"
	"github.com/whiskercam/whisker/internal/testenv"
)

// build makes a whisker binary of the given version with the project's
// build settings.
func build(t *testing.T, version, dir string) string {
	t.Helper()
	cmd := exec.Command("make", "-s", "build", "BIN="+dir, "VERSION="+version)
	cmd.Dir = testenv.Root(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", version, err, out)
	}
	return filepath.Join(dir, "whisker")
}

// supervise runs `whisker boot` as systemd would: restarted after a
// failure, until the test ends.
type supervised struct {
	mu      sync.Mutex
	cmd     *exec.Cmd
	stopped bool
	done    chan struct{}
}

func supervise(t *testing.T, bin, config, logPath string) *supervised {
	s := &supervised{done: make(chan struct{})}
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(s.done)
		defer logf.Close()
		for {
			s.mu.Lock()
			if s.stopped {
				s.mu.Unlock()
				return
			}
			cmd := exec.Command(bin, "boot", "--config", config)
			cmd.Stdout, cmd.Stderr = logf, logf
			if err := cmd.Start(); err != nil {
				s.mu.Unlock()
				fmt.Fprintln(logf, "supervisor:", err)
				return
			}
			s.cmd = cmd
			s.mu.Unlock()
			err := cmd.Wait()
			fmt.Fprintf(logf, "supervisor: exited: %v\n", err)
			s.mu.Lock()
			stopped := s.stopped
			s.mu.Unlock()
			if stopped || err == nil {
				return
			}
			time.Sleep(300 * time.Millisecond) // RestartSec
		}
	}()
	t.Cleanup(func() {
		s.mu.Lock()
		s.stopped = true
		if s.cmd != nil && s.cmd.Process != nil {
			s.cmd.Process.Signal(syscall.SIGTERM)
		}
		s.mu.Unlock()
		select {
		case <-s.done:
		case <-time.After(20 * time.Second):
			s.mu.Lock()
			s.cmd.Process.Kill()
			s.mu.Unlock()
			<-s.done
		}
	})
	return s
}

func statuses(t *testing.T, broker string) func() map[string]protocol.Status {
	var mu sync.Mutex
	seen := map[string]protocol.Status{}
	c := paho.NewClient(paho.NewClientOptions().AddBroker(broker).SetClientID("fleet-test-watch").
		SetOnConnectHandler(func(c paho.Client) {
			c.Subscribe("whisker/+/status", 1, func(_ paho.Client, m paho.Message) {
				var st protocol.Status
				if json.Unmarshal(m.Payload(), &st) == nil {
					mu.Lock()
					seen[strings.Split(m.Topic(), "/")[1]] = st
					mu.Unlock()
				}
			})
		}))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return func() map[string]protocol.Status {
		mu.Lock()
		defer mu.Unlock()
		out := map[string]protocol.Status{}
		for k, v := range seen {
			out[k] = v
		}
		return out
	}
}

func TestStagedRollout(t *testing.T) {
	mosq := testenv.StartMosquitto(t)
	dir := t.TempDir()
	factory := build(t, "1.0.0", filepath.Join(dir, "factory"))
	good := build(t, "1.1.0", filepath.Join(dir, "good"))
	bad := filepath.Join(dir, "bad-whisker")
	// A new version that crashes as soon as it starts.
	os.WriteFile(bad, []byte("#!/bin/sh\necho 'cannot start' >&2\nexit 1\n"), 0o755)

	keyBase := filepath.Join(dir, "fleet")
	if _, err := bundle.GenerateKeys(keyBase+".key", keyBase+".pub"); err != nil {
		t.Fatal(err)
	}
	key, _ := bundle.LoadPrivateKey(keyBase + ".key")
	makeBundle := func(version, bin string) string {
		path := filepath.Join(dir, version+".wsk")
		f, _ := os.Create(path)
		defer f.Close()
		if _, err := bundle.Create(f, []bundle.Input{{Kind: bundle.KindAgent, Path: bin}}, bundle.CreateOptions{Version: version, Key: key}); err != nil {
			t.Fatal(err)
		}
		return path
	}
	goodBundle, badBundle := makeBundle("1.1.0", good), makeBundle("1.2.0", bad)
	// The factory version, validly signed: once 1.1.0 is committed it is an
	// old bundle that must not be installed again.
	replay := makeBundle("1.0.0", factory)

	camera := filepath.Join(dir, "camera")
	os.Mkdir(camera, 0o755)
	for _, p := range []string{"chelsea.png", "grass.png"} {
		data, _ := os.ReadFile(testenv.Photo(t, p))
		os.WriteFile(filepath.Join(camera, p), data, 0o644)
	}
	devices := []string{"cam1", "cam2", "cam3"}
	logs := map[string]string{}
	enrolled := filepath.Join(dir, "devices")
	os.Mkdir(enrolled, 0o755)
	for _, d := range devices {
		cfg := fmt.Sprintf(`device: %s
state_dir: %s
backbone: %s
camera: {source: %s, loop: true, folder_fps: 4}
mqtt: {broker: %s}
http: {listen: "127.0.0.1:0"}
update: {trusted_keys: [%s], health_timeout: 30s, min_sightings: 2, max_attempts: 2}
homeassistant: {enabled: false}
`, d, filepath.Join(dir, d), testenv.BackboneManifest(t), camera, mosq.URL(), keyBase+".pub")
		path := filepath.Join(dir, d+".yaml")
		os.WriteFile(path, []byte(cfg), 0o644)
		// Enrolled at install: the camera makes its key, and its public
		// half is copied to the rollout machine as DEVICE.pub.
		if out, err := exec.Command(factory, "keys", "gen", "--device", "--config", path).CombinedOutput(); err != nil {
			t.Fatalf("keys gen --device on %s: %v\n%s", d, err, out)
		}
		pub, err := os.ReadFile(filepath.Join(dir, d, "firmware", "device.pub"))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(enrolled, d+".pub"), pub, 0o644)
		logs[d] = filepath.Join(dir, d+".log")
		supervise(t, factory, path, logs[d])
	}
	keys, err := attest.LoadKeyring(enrolled)
	if err != nil {
		t.Fatal(err)
	}
	dump := func() string {
		var b strings.Builder
		for _, d := range devices {
			data, _ := os.ReadFile(logs[d])
			lines := strings.Split(string(data), "\n")
			b.WriteString("--- " + d + "\n" + strings.Join(lines[max(0, len(lines)-25):], "\n"))
		}
		return b.String()
	}
	seen := statuses(t, mosq.URL())
	deadline := time.Now().Add(60 * time.Second)
	for {
		online := 0
		for _, st := range seen() {
			if st.State == "online" {
				online++
			}
		}
		if online == len(devices) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("devices not online:\n%s", dump())
		}
		time.Sleep(200 * time.Millisecond)
	}

	// The rollout believes a camera only from a report signed by its
	// enrolled key.
	rollout := func(path string) ([]fleet.Result, string, error) {
		var out bytes.Buffer
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		res, err := fleet.Rollout(ctx, fleet.Options{
			Broker: mosq.URL(), Bundle: path, Serve: "127.0.0.1:0", Canary: 1, Batch: 2,
			Timeout: 90 * time.Second, Discover: time.Second, Out: &out, DeviceKeys: keys,
		})
		var table bytes.Buffer
		fleet.WriteTable(&table, res)
		t.Logf("rollout of %s:\n%s\n%s", filepath.Base(path), out.String(), table.String())
		return res, out.String(), err
	}

	// Dry run: a plan, nothing sent.
	var plan bytes.Buffer
	res, err := fleet.Rollout(context.Background(), fleet.Options{Broker: mosq.URL(), Bundle: goodBundle, DryRun: true, Discover: time.Second, Out: &plan, DeviceKeys: keys})
	if err != nil || len(res) != 3 || res[0].Result != "dry run" || res[0].Stage != 1 || res[2].Stage != 2 {
		t.Fatalf("dry run: %v %+v", err, res)
	}

	// A good version reaches every device, canary first.
	res, _, err = rollout(goodBundle)
	if err != nil {
		t.Fatalf("rollout: %v\n%s", err, dump())
	}
	for _, r := range res {
		if r.Result != "ok" || r.OldVersion != "1.0.0" || r.NewVersion != "1.1.0" {
			t.Errorf("%+v", r)
		}
	}
	goodSHA, _ := bundle.FileSHA256(goodBundle)
	for _, d := range devices {
		if st := seen()[d]; st.Firmware == nil || st.Firmware.Version != "1.1.0" || st.Version != "1.1.0" {
			t.Errorf("%s runs %+v %+v", d, st.Firmware, st.Version)
		}
	}
	// cam1's status carries its signed report of that update.
	genuine := seen()["cam1"].UpdateReport
	if r, err := keys.Verify("cam1", genuine); err != nil || r.Event != attest.EventCommitted || r.Bundle != goodSHA {
		t.Fatalf("cam1's report of the update: %+v %v", r, err)
	}

	// The replayed 1.0.0: the canary refuses it, the rollout stops, and
	// every camera still runs 1.1.0.
	res, _, err = rollout(replay)
	if !errors.Is(err, fleet.ErrStopped) || !strings.Contains(res[0].Result, "not newer") || res[1].Result != "skipped" {
		t.Fatalf("replay of 1.0.0: %v %+v\n%s", err, res, dump())
	}
	for _, d := range devices {
		if st := seen()[d]; st.Firmware == nil || st.Firmware.Version != "1.1.0" {
			t.Errorf("%s after the replay: %+v", d, st.Firmware)
		}
	}

	// A version that crashes: the canary rolls back by itself and the
	// rollout stops before the other devices. Meanwhile a stranger on the
	// broker says the canary committed it, with an unsigned answer and
	// with cam1's genuine report of the last update in a forged status:
	// believed, either would take the crashing version to cam2 and cam3.
	forged := make(chan struct{})
	stranger := paho.NewClient(paho.NewClientOptions().AddBroker(mosq.URL()).SetClientID("stranger"))
	if tok := stranger.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer stranger.Disconnect(100)
	var forgeOnce sync.Once
	stranger.Subscribe("whisker/cam1/cmd", 1, func(c paho.Client, m paho.Message) {
		var req protocol.CmdRequest
		if json.Unmarshal(m.Payload(), &req) != nil || req.Cmd != "update" {
			return
		}
		forgeOnce.Do(func() {
			go func() {
				defer close(forged)
				claim := &protocol.UpdateStatus{State: "committed", Version: "1.2.0", Bundle: req.SHA256}
				answer, _ := json.Marshal(protocol.Result{RequestID: req.RequestID, Ok: true, Topic: "cmd", Cmd: "update", Update: claim})
				status, _ := json.Marshal(protocol.Status{State: "online", Device: "cam1", Version: "1.2.0",
					Firmware: &protocol.FirmwareStatus{Slot: "b", Version: "1.2.0", Bundle: req.SHA256}, Update: claim, UpdateReport: genuine})
				c.Publish("whisker/cam1/result", 1, false, answer).WaitTimeout(10 * time.Second)
				c.Publish("whisker/cam1/status", 1, true, status).WaitTimeout(10 * time.Second)
			}()
		})
	}).WaitTimeout(10 * time.Second)
	res, out, err := rollout(badBundle)
	if !errors.Is(err, fleet.ErrStopped) {
		t.Fatalf("rollout of a bad version: %v\n%s", err, dump())
	}
	if !strings.Contains(res[0].Result, "rolled back") || res[1].Result != "skipped" || res[2].Result != "skipped" {
		t.Fatalf("results %+v", res)
	}
	select {
	case <-forged:
	case <-time.After(30 * time.Second):
		t.Fatal("the stranger never saw the update command")
	}
	if !strings.Contains(out, "cam1: a claim of success ignored") {
		t.Errorf("the forged claims were not seen and ignored:\n%s", out)
	}
	// Every device comes back online on the version it had.
	back := func() bool {
		for _, d := range devices {
			st := seen()[d]
			if st.State != "online" || st.Firmware == nil || st.Firmware.Version != "1.1.0" {
				return false
			}
		}
		return true
	}
	for deadline := time.Now().Add(30 * time.Second); !back(); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			for _, d := range devices {
				st := seen()[d]
				t.Errorf("%s after the failed rollout: %+v %+v", d, st.State, st.Firmware)
			}
			t.Fatalf("not every device is back on 1.1.0 within 30 s\n%s", dump())
		}
	}
}
