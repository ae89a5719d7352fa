package fleet_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/whiskercam/whisker/agent/protocol"
	"github.com/whiskercam/whisker/firmware/attest"
	"github.com/whiskercam/whisker/firmware/bundle"
	"github.com/whiskercam/whisker/firmware/fleet"
	"github.com/whiskercam/whisker/internal/testenv"
)

// These tests speak the agent's update protocol with small simulated
// cameras on a real mosquitto, so that a camera can be honest, silent, or
// impersonated by a stranger on the broker.

// camera is a simulated camera: it answers update commands as the agent
// does, with reports signed by its own key.
type camera struct {
	t       *testing.T
	id      string
	signer  *attest.Signer
	c       paho.Client
	mu      sync.Mutex
	version string
	bundle  string
	last    []byte // the last status payload it published
}

func mqttClient(t *testing.T, broker, id string) paho.Client {
	t.Helper()
	c := paho.NewClient(paho.NewClientOptions().AddBroker(broker).SetClientID(id).SetCleanSession(true))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect %s: %v", id, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}

func publish(t *testing.T, c paho.Client, topic string, retained bool, v any) []byte {
	t.Helper()
	payload, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if tok := c.Publish(topic, 1, retained, payload); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", topic, tok.Error())
	}
	return payload
}

// startCamera starts an honest camera running version.
func startCamera(t *testing.T, broker, id, version string, signer *attest.Signer) *camera {
	cam := &camera{t: t, id: id, signer: signer, version: version}
	cam.c = mqttClient(t, broker, "cam-"+id)
	cam.status(nil, nil)
	tok := cam.c.Subscribe("whisker/"+id+"/cmd", 1, func(_ paho.Client, m paho.Message) {
		var req struct {
			RequestID string `json:"request_id"`
			Cmd       string `json:"cmd"`
			SHA256    string `json:"sha256"`
		}
		if json.Unmarshal(m.Payload(), &req) != nil || req.Cmd != "update" {
			return
		}
		go cam.update(req.RequestID, req.SHA256)
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	return cam
}

// update installs "the bundle" at once and commits it, as a healthy agent
// would, signing the outcome.
func (cam *camera) update(reqID, sha string) {
	publish(cam.t, cam.c, "whisker/"+cam.id+"/result", false, protocol.Result{RequestID: reqID, Ok: true, Topic: "cmd", Cmd: "update",
		Update: &protocol.UpdateStatus{State: "started", Bundle: sha}})
	cam.mu.Lock()
	cam.version, cam.bundle = "1.1.0", sha
	cam.mu.Unlock()
	env, err := cam.signer.Sign(attest.Report{RequestID: reqID, Event: attest.EventCommitted, Bundle: sha, Version: "1.1.0",
		Running: attest.Running{Slot: "b", Version: "1.1.0", Bundle: sha}})
	if err != nil {
		cam.t.Error(err)
		return
	}
	cam.status(&protocol.UpdateStatus{State: "committed", Version: "1.1.0", Bundle: sha}, env)
}

func (cam *camera) status(u *protocol.UpdateStatus, env *attest.Envelope) {
	cam.mu.Lock()
	st := protocol.Status{State: "online", Device: cam.id, Version: cam.version,
		Firmware: &protocol.FirmwareStatus{Slot: "b", Version: cam.version, Bundle: cam.bundle}, Update: u, UpdateReport: env}
	cam.mu.Unlock()
	payload := publish(cam.t, cam.c, "whisker/"+cam.id+"/status", true, st)
	cam.mu.Lock()
	cam.last = payload
	cam.mu.Unlock()
}

// startForger is a stranger on the broker: whenever one of the targets is
// asked to update, claim answers for it.
func startForger(t *testing.T, broker string, targets []string, claim func(c paho.Client, dev, reqID, sha string)) {
	c := mqttClient(t, broker, "stranger")
	for _, dev := range targets {
		tok := c.Subscribe("whisker/"+dev+"/cmd", 1, func(c paho.Client, m paho.Message) {
			var req struct {
				RequestID string `json:"request_id"`
				SHA256    string `json:"sha256"`
			}
			if json.Unmarshal(m.Payload(), &req) == nil {
				go claim(c, dev, req.RequestID, req.SHA256)
			}
		})
		if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatal(tok.Error())
		}
	}
}

// unsignedCommitted is the forged retained status that used to advance a
// rollout, and a result to match.
func unsignedCommitted(t *testing.T, c paho.Client, dev, reqID, sha string) {
	publish(t, c, "whisker/"+dev+"/result", false, protocol.Result{RequestID: reqID, Ok: true, Topic: "cmd", Cmd: "update",
		Update: &protocol.UpdateStatus{State: "committed", Version: "1.1.0", Bundle: sha}})
	publish(t, c, "whisker/"+dev+"/status", true, protocol.Status{State: "online", Device: dev, Version: "1.1.0",
		Firmware: &protocol.FirmwareStatus{Slot: "b", Version: "1.1.0", Bundle: sha},
		Update:   &protocol.UpdateStatus{State: "committed", Version: "1.1.0", Bundle: sha}})
}

type fleetKit struct {
	dir     string
	broker  string
	bundle  string
	keys    attest.Keyring
	signers map[string]*attest.Signer
}

func newFleetKit(t *testing.T, devices ...string) *fleetKit {
	k := &fleetKit{dir: t.TempDir(), signers: map[string]*attest.Signer{}}
	k.broker = testenv.StartMosquitto(t).URL()
	enrolled := filepath.Join(k.dir, "devices")
	os.Mkdir(enrolled, 0o755)
	for _, d := range devices {
		// Made on the camera at install; only the public key leaves it.
		priv := filepath.Join(k.dir, d+".key")
		if _, err := attest.GenerateDeviceKey(priv, filepath.Join(enrolled, d+".pub"), d); err != nil {
			t.Fatal(err)
		}
		s, err := attest.LoadSigner(priv)
		if err != nil {
			t.Fatal(err)
		}
		k.signers[d] = s
	}
	var err error
	if k.keys, err = attest.LoadKeyring(enrolled); err != nil {
		t.Fatal(err)
	}
	keyBase := filepath.Join(k.dir, "fleet")
	bundle.GenerateKeys(keyBase+".key", keyBase+".pub")
	key, _ := bundle.LoadPrivateKey(keyBase + ".key")
	bin := filepath.Join(k.dir, "whisker")
	os.WriteFile(bin, []byte("#!/bin/sh\nexit 0\n"), 0o755)
	k.bundle = filepath.Join(k.dir, "1.1.0.wsk")
	f, _ := os.Create(k.bundle)
	if _, err := bundle.Create(f, []bundle.Input{{Kind: bundle.KindAgent, Path: bin}}, bundle.CreateOptions{Version: "1.1.0", Key: key}); err != nil {
		t.Fatal(err)
	}
	f.Close()
	return k
}

func (k *fleetKit) rollout(t *testing.T, o fleet.Options) ([]fleet.Result, error) {
	t.Helper()
	var out bytes.Buffer
	o.Broker, o.Bundle, o.Serve, o.Out = k.broker, k.bundle, "127.0.0.1:0", &out
	if o.Canary == 0 {
		o.Canary, o.Batch = 1, 2
	}
	if o.Timeout == 0 {
		o.Timeout = 2 * time.Second
	}
	o.Discover = 500 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := fleet.Rollout(ctx, o)
	var table bytes.Buffer
	fleet.WriteTable(&table, res)
	t.Logf("%s\n%s", out.String(), table.String())
	return res, err
}

// The forged canary result: cam1 is off (its last status still says
// online), and a stranger answers for it with a retained "committed"
// status and a matching result. Trusting the broker, the rollout believes
// it and goes on to every other camera; with enrolled keys it does not,
// and stops at the canary.
func TestForgedCanaryIsNotBelieved(t *testing.T) {
	k := newFleetKit(t, "cam1", "cam2", "cam3")
	stranger := mqttClient(t, k.broker, "stranger-status")
	publish(t, stranger, "whisker/cam1/status", true, protocol.Status{State: "online", Device: "cam1", Version: "1.0.0"})
	startCamera(t, k.broker, "cam2", "1.0.0", k.signers["cam2"])
	startCamera(t, k.broker, "cam3", "1.0.0", k.signers["cam3"])
	startForger(t, k.broker, []string{"cam1"}, func(c paho.Client, dev, reqID, sha string) { unsignedCommitted(t, c, dev, reqID, sha) })
	devices := []string{"cam1", "cam2", "cam3"}

	res, err := k.rollout(t, fleet.Options{Devices: devices, DeviceKeys: k.keys})
	if !errors.Is(err, fleet.ErrStopped) {
		t.Fatalf("rollout past a forged canary: %v", err)
	}
	if !strings.Contains(res[0].Result, "no report signed by cam1's key") || !strings.Contains(res[0].Result, "ignored") ||
		res[1].Result != "skipped" || res[2].Result != "skipped" {
		t.Fatalf("results %+v", res)
	}

	// The control: the same forgery fools a rollout that trusts the broker.
	res, err = k.rollout(t, fleet.Options{Devices: devices, TrustBroker: true})
	if err != nil || res[0].Result != "ok" {
		t.Fatalf("trusting the broker: %v %+v (the forgery should have been believed)", err, res)
	}
}

// Genuine reports move a rollout on; replayed, borrowed and re-signed ones
// do not.
func TestOnlyFreshSignedReportsCount(t *testing.T) {
	k := newFleetKit(t, "cam1", "cam2", "cam3")
	cams := map[string]*camera{}
	for _, d := range []string{"cam1", "cam2", "cam3"} {
		cams[d] = startCamera(t, k.broker, d, "1.0.0", k.signers[d])
	}
	res, err := k.rollout(t, fleet.Options{DeviceKeys: k.keys})
	if err != nil || len(res) != 3 {
		t.Fatalf("honest rollout: %v %+v", err, res)
	}
	for _, r := range res {
		if r.Result != "ok" {
			t.Fatalf("honest rollout: %+v", res)
		}
	}
	// cam1's genuine status, with its signed report of that update.
	cams["cam1"].mu.Lock()
	genuine := append([]byte(nil), cams["cam1"].last...)
	cams["cam1"].mu.Unlock()
	var cam3Status protocol.Status
	cams["cam3"].mu.Lock()
	json.Unmarshal(cams["cam3"].last, &cam3Status)
	cams["cam3"].mu.Unlock()

	// Now cam1 is off, and a stranger answers for it three ways.
	cams["cam1"].c.Unsubscribe("whisker/cam1/cmd").Wait()
	_, strangerKey, _ := ed25519.GenerateKey(nil)
	strangerSigner, _ := attest.NewSigner("cam1", strangerKey)
	for _, tc := range []struct {
		name  string
		claim func(c paho.Client, dev, reqID, sha string)
	}{
		{"cam1's own earlier report, replayed", func(c paho.Client, dev, reqID, sha string) {
			c.Publish("whisker/cam1/status", 1, true, genuine).Wait()
		}},
		{"cam3's report, published as cam1's", func(c paho.Client, dev, reqID, sha string) {
			st := cam3Status
			st.Device = "cam1"
			publish(t, c, "whisker/cam1/status", true, st)
		}},
		{"a report for this request signed by a stranger", func(c paho.Client, dev, reqID, sha string) {
			env, _ := strangerSigner.Sign(attest.Report{RequestID: reqID, Event: attest.EventCommitted, Bundle: sha,
				Running: attest.Running{Slot: "b", Bundle: sha}})
			publish(t, c, "whisker/cam1/result", false, protocol.Result{RequestID: reqID, Ok: true, Topic: "cmd", UpdateReport: env})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stranger := mqttClient(t, k.broker, "stranger")
			var once sync.Once
			tok := stranger.Subscribe("whisker/cam1/cmd", 1, func(c paho.Client, m paho.Message) {
				var req struct {
					RequestID string `json:"request_id"`
					SHA256    string `json:"sha256"`
				}
				if json.Unmarshal(m.Payload(), &req) == nil {
					once.Do(func() { go tc.claim(c, "cam1", req.RequestID, req.SHA256) })
				}
			})
			tok.Wait()
			res, err := k.rollout(t, fleet.Options{Devices: []string{"cam1", "cam2"}, DeviceKeys: k.keys})
			if !errors.Is(err, fleet.ErrStopped) || !strings.Contains(res[0].Result, "no report signed") || res[1].Result != "skipped" {
				t.Fatalf("%v %+v", err, res)
			}
			stranger.Unsubscribe("whisker/cam1/cmd").Wait()
		})
	}
}

// A failure is believed from anyone: a forged one can only stop a rollout,
// and its words are printed as one line without terminal escapes. A
// rollout without keys or leave to trust the broker does not start.
func TestRolloutRefusals(t *testing.T) {
	k := newFleetKit(t, "cam1", "cam2")
	startCamera(t, k.broker, "cam2", "1.0.0", k.signers["cam2"])
	stranger := mqttClient(t, k.broker, "stranger-status")
	publish(t, stranger, "whisker/cam1/status", true, protocol.Status{State: "online", Device: "cam1", Version: "1.0.0"})
	startForger(t, k.broker, []string{"cam1"}, func(c paho.Client, dev, reqID, sha string) {
		publish(t, c, "whisker/"+dev+"/result", false, protocol.Result{RequestID: reqID, Ok: false, Topic: "cmd", Error: "update failed: disk full\x1b[2J\ncam2: ok"})
	})
	res, err := k.rollout(t, fleet.Options{Devices: []string{"cam1", "cam2"}, DeviceKeys: k.keys, Timeout: 30 * time.Second})
	if !errors.Is(err, fleet.ErrStopped) || res[0].Result != "failed: update failed: disk full?[2J?cam2: ok" {
		t.Fatalf("forged failure: %v %+v", err, res)
	}
	if _, err := k.rollout(t, fleet.Options{}); !errors.Is(err, fleet.ErrNoTrust) {
		t.Fatalf("no keys, no trust: %v", err)
	}
	if _, err := k.rollout(t, fleet.Options{Devices: []string{"cam9"}, DeviceKeys: k.keys}); !errors.Is(err, attest.ErrNotEnrolled) {
		t.Fatalf("a device without a key: %v", err)
	}
	// Discovered devices without a key are left out.
	publish(t, stranger, "whisker/cam7/status", true, protocol.Status{State: "online", Device: "cam7"})
	res, err = k.rollout(t, fleet.Options{DeviceKeys: k.keys, DryRun: true})
	if err != nil || len(res) != 2 {
		t.Fatalf("dry run: %v %+v", err, res)
	}
}
