package agent_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/whiskercam/whisker/agent/homeassistant"
	"github.com/whiskercam/whisker/agent/homeassistant/hatest"
	"github.com/whiskercam/whisker/agent/protocol"
	"github.com/whiskercam/whisker/internal/testenv"
)

var updateGolden = flag.Bool("update", false, "rewrite golden files")

// recorder keeps every message published on some topics, in order, as
// Home Assistant receives them.
type recorder struct {
	mu     sync.Mutex
	msgs   []recorded
	notify chan struct{}
	c      paho.Client
}

type recorded struct {
	topic    string
	payload  []byte
	retained bool
}

func record(t *testing.T, url string, filters ...string) *recorder {
	t.Helper()
	r := &recorder{notify: make(chan struct{}, 1)}
	subs := map[string]byte{}
	for _, f := range filters {
		subs[f] = 1
	}
	opts := paho.NewClientOptions().AddBroker(url).SetClientID(fmt.Sprintf("rec-%d", time.Now().UnixNano())).
		SetOrderMatters(true).
		SetOnConnectHandler(func(c paho.Client) {
			c.SubscribeMultiple(subs, func(_ paho.Client, m paho.Message) {
				r.mu.Lock()
				r.msgs = append(r.msgs, recorded{m.Topic(), slices.Clone(m.Payload()), m.Retained()})
				r.mu.Unlock()
				select {
				case r.notify <- struct{}{}:
				default:
				}
			})
		})
	r.c = paho.NewClient(opts)
	if tok := r.c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	t.Cleanup(func() { r.c.Disconnect(100) })
	return r
}

// wait waits until cond holds for the messages so far and returns them.
func (r *recorder) wait(t *testing.T, what string, cond func([]recorded) bool) []recorded {
	t.Helper()
	deadline := time.After(60 * time.Second)
	for {
		r.mu.Lock()
		msgs := slices.Clone(r.msgs)
		r.mu.Unlock()
		if cond(msgs) {
			return msgs
		}
		select {
		case <-r.notify:
		case <-deadline:
			var topics []string
			for _, m := range msgs {
				topics = append(topics, fmt.Sprintf("%s (%d bytes)", m.topic, len(m.payload)))
			}
			t.Fatalf("%s: not seen within 60 s; have %v", what, topics)
		}
	}
}

func (r *recorder) publish(t *testing.T, topic, payload string) {
	t.Helper()
	if tok := r.c.Publish(topic, 1, false, payload); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

// last is the last message on a topic (nil: none).
func last(msgs []recorded, topic string) []byte {
	for i := len(msgs) - 1; i >= 0; i-- {
		if msgs[i].topic == topic {
			return msgs[i].payload
		}
	}
	return nil
}

const deviceTopic = "homeassistant/device/whisker_porch/config"

type component = map[string]any

// deviceConfigs are the device configs among msgs, each checked against
// Home Assistant's schemas.
func deviceConfigs(t *testing.T, msgs []recorded) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, m := range msgs {
		if m.topic != deviceTopic {
			continue
		}
		cfg, errs := hatest.DevicePayload(m.payload)
		for _, err := range errs {
			t.Errorf("device config: %v", err)
		}
		out = append(out, cfg)
	}
	return out
}

// petParts maps a pet's label to its components' unique_ids, sorted, and
// to its pet id.
func petParts(cfg map[string]any) (ids map[string][]string, petID map[string]string) {
	ids, petID = map[string][]string{}, map[string]string{}
	for key, v := range cfg["components"].(map[string]any) {
		c := v.(component)
		topic, _ := c["state_topic"].(string)
		if image, ok := c["image_topic"].(string); ok {
			topic = image
		}
		_, rest, isPet := strings.Cut(topic, "/pet/")
		if !isPet {
			continue
		}
		id, _, _ := strings.Cut(rest, "/")
		name := c["name"].(string)
		label, _, _ := strings.Cut(name, " ")
		ids[label] = append(ids[label], c["unique_id"].(string))
		petID[label] = id
		if !strings.HasPrefix(key, id+"_") {
			panic(key)
		}
	}
	for _, l := range ids {
		slices.Sort(l)
	}
	return ids, petID
}

// hasPets says whether the last device config has exactly these pets,
// each with its five components.
func hasPets(t *testing.T, want ...string) func([]recorded) bool {
	return func(msgs []recorded) bool {
		payload := last(msgs, deviceTopic)
		var cfg map[string]any
		if json.Unmarshal(payload, &cfg) != nil {
			return false
		}
		ids, _ := petParts(cfg)
		if len(ids) != len(want) {
			return false
		}
		for _, w := range want {
			if len(ids[w]) != 5 {
				return false
			}
		}
		return true
	}
}

// goldenConfig compares the last device config with a golden file, the
// pet ids and the web page's port written as placeholders.
func goldenConfig(t *testing.T, name string, payload []byte, petID map[string]string, port int) {
	t.Helper()
	text := string(payload)
	for label, id := range petID {
		text = strings.ReplaceAll(text, id, "PET_"+strings.ToUpper(label))
	}
	text = strings.ReplaceAll(text, fmt.Sprintf(":%d/", port), ":PORT/")
	// Decoded and encoded again, so the components are in the order of
	// their placeholder names, not of the random ids they replaced.
	var doc any
	if err := json.Unmarshal([]byte(text), &doc); err != nil {
		t.Fatal(err)
	}
	var pretty bytes.Buffer
	enc := json.NewEncoder(&pretty)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(doc); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("testdata", "homeassistant", name)
	if *updateGolden {
		os.MkdirAll(filepath.Dir(path), 0o755)
		if err := os.WriteFile(path, pretty.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test -run HomeAssistant ./agent -update writes it)", err)
	}
	if !bytes.Equal(want, pretty.Bytes()) {
		t.Errorf("%s differs from the golden file (go test -run HomeAssistant ./agent -update rewrites it):\n%s", path, pretty.String())
	}
}

// The agent announces a device with two pets to Home Assistant through a
// real broker; renaming one keeps every unique_id, forgetting the other
// removes its entities; every discovery payload matches Home Assistant's
// schemas and the golden files; Home Assistant's birth message and
// commands are answered, and the metrics follow.
func TestHomeAssistantEndToEnd(t *testing.T) {
	mosq := testenv.StartMosquitto(t)
	cfg := testConfig(t, mosq.URL(), "porch")
	cfg.Camera.MaxFPS = 2
	port := testenv.FreePort(t)
	cfg.HTTP.Listen = fmt.Sprintf("127.0.0.1:%d", port)
	cfg.HomeAssistant.SuggestedArea = "Garden"
	rec := record(t, mosq.URL(), "homeassistant/#", "whisker/porch/ha/#", "whisker/porch/pet/#", "whisker/porch/result", "whisker/porch/status")
	cl := newClient(t, mosq.URL(), "whisker/porch/")
	a := startAgent(t, cfg)
	cl.waitStatus("online")

	// Two pets, and frames without one.
	for i, l := range []struct{ photo, label string }{{"chelsea.png", "Tigger"}, {"dog.jpg", "Misty"}, {"grass.png", "neither"}} {
		r := cl.requestJSON(protocol.TopicLabel, map[string]string{"request_id": fmt.Sprintf("l%d", i), "image": photoBase64(t, l.photo), "label": l.label})
		if !r.Ok {
			t.Fatalf("label %s: %+v", l.label, r)
		}
	}
	msgs := rec.wait(t, "a device with both pets", hasPets(t, "Misty", "Tigger"))
	cfgs := deviceConfigs(t, msgs)
	before, petID := petParts(cfgs[len(cfgs)-1])
	goldenConfig(t, "two-pets.json", last(msgs, deviceTopic), petID, port)

	// Rename Tigger to Tiger: the same entities under the new name.
	r := cl.requestJSON(protocol.TopicCmd, map[string]string{"request_id": "c-ren", "cmd": "rename", "label": "Tigger", "to": "Tiger"})
	if !r.Ok {
		t.Fatalf("rename: %+v", r)
	}
	msgs = rec.wait(t, "Tigger renamed Tiger", hasPets(t, "Misty", "Tiger"))
	cfgs = deviceConfigs(t, msgs)
	after, renamedID := petParts(cfgs[len(cfgs)-1])
	if !slices.Equal(after["Tiger"], before["Tigger"]) || renamedID["Tiger"] != petID["Tigger"] || !slices.Equal(after["Misty"], before["Misty"]) {
		t.Fatalf("unique_ids changed by the rename:\nbefore %v\nafter  %v", before, after)
	}
	goldenConfig(t, "renamed.json", last(msgs, deviceTopic), map[string]string{"Tiger": renamedID["Tiger"], "Misty": renamedID["Misty"]}, port)

	// Forget Misty: her components are removed (sent with their platform
	// alone), then the config is sent without them; her state is emptied.
	r = cl.requestJSON(protocol.TopicCmd, map[string]string{"request_id": "c-fgt", "cmd": "forget", "label": "Misty"})
	if !r.Ok {
		t.Fatalf("forget: %+v", r)
	}
	misty := petID["Misty"]
	msgs = rec.wait(t, "Misty forgotten", func(m []recorded) bool {
		return hasPets(t, "Tiger")(m) && slices.ContainsFunc(m, func(x recorded) bool {
			return x.topic == "whisker/porch/pet/"+misty && len(x.payload) == 0
		})
	})
	cfgs = deviceConfigs(t, msgs)
	removal := cfgs[len(cfgs)-2]["components"].(map[string]any)
	for _, rm := range homeassistant.PetRemoved(misty) {
		if c, ok := removal[rm.Key].(component); !ok || len(c) != 1 || c["platform"] != rm.Platform {
			t.Errorf("removal of %s: %v", rm.Key, removal[rm.Key])
		}
	}
	goldenConfig(t, "forgotten.json", last(msgs, deviceTopic), map[string]string{"Tiger": renamedID["Tiger"]}, port)
	if n := len(cfgs); n < 4 {
		t.Errorf("%d device configs published", n)
	}

	// Home Assistant restarts: its birth message brings everything again.
	seen := len(cfgs)
	rec.publish(t, "homeassistant/status", "online")
	msgs = rec.wait(t, "discovery after the birth message", func(m []recorded) bool {
		n := 0
		for _, x := range m {
			if x.topic == deviceTopic {
				n++
			}
		}
		return n > seen
	})
	deviceConfigs(t, msgs)

	// Commands from Home Assistant, as its number, switch and button send them.
	haResult := func(topic string, after int) protocol.Result {
		t.Helper()
		var res protocol.Result
		rec.wait(t, "the answer on "+topic, func(m []recorded) bool {
			for _, x := range m[after:] {
				if x.topic == "whisker/porch/result" && json.Unmarshal(x.payload, &res) == nil && res.Topic == topic {
					return true
				}
			}
			return false
		})
		return res
	}
	count := func() int { rec.mu.Lock(); defer rec.mu.Unlock(); return len(rec.msgs) }
	n := count()
	rec.publish(t, "whisker/porch/ha/threshold", "0.42")
	if res := haResult(homeassistant.TopicThreshold, n); !res.Ok || res.Threshold != 0.42 || !strings.HasPrefix(res.RequestID, "ha-threshold-") {
		t.Fatalf("threshold from Home Assistant: %+v", res)
	}
	rec.wait(t, "the threshold in the device state", func(m []recorded) bool {
		var st homeassistant.DeviceState
		return json.Unmarshal(last(m, "whisker/porch/ha/state"), &st) == nil && st.Threshold == 0.42
	})
	n = count()
	rec.publish(t, "whisker/porch/ha/threshold", "7")
	if res := haResult(homeassistant.TopicThreshold, n); res.Ok || !strings.Contains(res.Error, "not between 0 and 1") {
		t.Fatalf("a bad threshold from Home Assistant: %+v", res)
	}

	// The switch pauses recognition: frames still arrive, none is inferred.
	n = count()
	rec.publish(t, "whisker/porch/ha/recognition", "OFF")
	if res := haResult(homeassistant.TopicRecognition, n); !res.Ok || res.Paused == nil || !*res.Paused {
		t.Fatalf("pause from Home Assistant: %+v", res)
	}
	stats := func() protocol.PipelineStats {
		st, err := a.Stats()
		if err != nil {
			t.Fatal(err)
		}
		return st.Pipeline
	}
	waitStats := func(what string, cond func(protocol.PipelineStats) bool) protocol.PipelineStats {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			if st := stats(); cond(st) {
				return st
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 60 s; %+v", what, stats())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	// No frame is on its way through the backbone once every frame taken
	// is accounted for.
	drained := waitStats("paused and drained", func(p protocol.PipelineStats) bool {
		return p.Paused > 0 && p.Taken == p.Still+p.Paused+p.Inferred+p.Errors
	})
	later := waitStats("more paused frames", func(p protocol.PipelineStats) bool { return p.Paused >= drained.Paused+4 })
	if later.Inferred != drained.Inferred {
		t.Fatalf("frames inferred while paused: %d, then %d", drained.Inferred, later.Inferred)
	}
	if st, _ := a.Stats(); !st.Paused {
		t.Error("stats do not say paused")
	}
	rec.wait(t, "paused in the status", func(m []recorded) bool {
		var st protocol.Status
		return json.Unmarshal(last(m, "whisker/porch/status"), &st) == nil && st.Paused
	})
	rec.wait(t, "the switch off", func(m []recorded) bool {
		var st homeassistant.DeviceState
		return json.Unmarshal(last(m, "whisker/porch/ha/state"), &st) == nil && st.Recognition == "OFF"
	})
	settings, err := os.ReadFile(filepath.Join(cfg.StateDir, "settings.json"))
	if err != nil || !strings.Contains(string(settings), `"paused":true`) {
		t.Fatalf("settings.json: %s %v", settings, err)
	}
	n = count()
	rec.publish(t, "whisker/porch/ha/recognition", "ON")
	if res := haResult(homeassistant.TopicRecognition, n); !res.Ok {
		t.Fatalf("resume from Home Assistant: %+v", res)
	}
	waitStats("inferring again", func(p protocol.PipelineStats) bool { return p.Inferred > later.Inferred })

	n = count()
	rec.publish(t, "whisker/porch/ha/retrain", "PRESS")
	if res := haResult(homeassistant.TopicRetrain, n); !res.Ok || res.Train == nil || len(res.Train.Classes) != 2 {
		t.Fatalf("retrain from Home Assistant: %+v", res)
	}

	// Metrics: no series of the renamed or forgotten labels.
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, gone := range []string{`label="Tigger"`, `label="Misty"`} {
		if bytes.Contains(body, []byte(gone)) {
			t.Errorf("/metrics still has %s:\n%s", gone, grep(body, gone))
		}
	}
	for _, want := range []string{`whisker_samples{label="Tiger"} 1`, `whisker_samples{label="neither"} 1`, `whisker_firmware_info{`,
		`whisker_frames_skipped_total{reason="motion_gate"}`, `whisker_frames_skipped_total{reason="paused"}`,
		`whisker_requests_total{outcome="ok",topic="ha/threshold"} 1`, `whisker_requests_total{outcome="refused",topic="ha/threshold"} 1`,
		`whisker_training_runs_total{outcome="ok"}`, `whisker_recognition_paused 0`} {
		if !bytes.Contains(body, []byte(want)) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	// The device links to the agent's page.
	cfgs = deviceConfigs(t, msgs)
	dev := cfgs[len(cfgs)-1]["device"].(map[string]any)
	if dev["configuration_url"] != fmt.Sprintf("http://127.0.0.1:%d/", port) || dev["suggested_area"] != "Garden" {
		t.Errorf("device %v", dev)
	}
}

func grep(body []byte, s string) string {
	var out []string
	for _, line := range strings.Split(string(body), "\n") {
		if strings.Contains(line, s) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}
