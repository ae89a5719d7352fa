package agent_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/whiskercam/whisker/agent/protocol"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/whiskercam/whisker/agent"
	"github.com/whiskercam/whisker/camera"
	"github.com/whiskercam/whisker/internal/testenv"
	"github.com/whiskercam/whisker/learner"
)

// retained collects the retained state of some topics, as Home Assistant
// would see it.
type retained struct {
	mu   sync.Mutex
	msgs map[string][]byte
}

func watchRetained(t *testing.T, url string, filters ...string) *retained {
	r := &retained{msgs: map[string][]byte{}}
	subs := map[string]byte{}
	for _, f := range filters {
		subs[f] = 1
	}
	opts := paho.NewClientOptions().AddBroker(url).SetClientID(fmt.Sprintf("ha-%d", time.Now().UnixNano())).
		SetOnConnectHandler(func(c paho.Client) {
			c.SubscribeMultiple(subs, func(_ paho.Client, m paho.Message) {
				r.mu.Lock()
				r.msgs[m.Topic()] = append([]byte(nil), m.Payload()...)
				r.mu.Unlock()
			})
		})
	c := paho.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return r
}

// wait polls until cond holds for the collected messages.
func (r *retained) wait(t *testing.T, what string, cond func(map[string][]byte) bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		r.mu.Lock()
		ok := cond(r.msgs)
		r.mu.Unlock()
		if ok {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	topics := make([]string, 0, len(r.msgs))
	for k, v := range r.msgs {
		topics = append(topics, fmt.Sprintf("%s (%d bytes)", k, len(v)))
	}
	t.Fatalf("%s: not seen within 20 s; have %v", what, topics)
}

// petComponents counts the components of a pet in the retained device
// config (those named after it).
func petComponents(msgs map[string][]byte, device, label string) int {
	var cfg struct {
		Components map[string]struct {
			Name *string `json:"name"`
		} `json:"components"`
	}
	if json.Unmarshal(msgs["homeassistant/device/whisker_"+device+"/config"], &cfg) != nil {
		return -1
	}
	n := 0
	for _, c := range cfg.Components {
		if c.Name != nil && (*c.Name == label || strings.HasPrefix(*c.Name, label+" ")) {
			n++
		}
	}
	return n
}

func photoBase64(t *testing.T, name string) string {
	data, err := os.ReadFile(testenv.Photo(t, name))
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(data)
}

func TestCommandsDiscoveryAndOperations(t *testing.T) {
	mosq := testenv.StartMosquitto(t)
	cfg := testConfig(t, mosq.URL(), "svc")
	cfg.Camera.MaxFPS = 2
	cl := newClient(t, mosq.URL(), "whisker/svc/")
	ha := watchRetained(t, mosq.URL(), "homeassistant/#", "whisker/svc/pet/#", "whisker/svc/snapshot/latest")
	a := startAgent(t, cfg)
	cl.waitStatus("online")

	// The device is there from the start; pets appear when labelled.
	ha.wait(t, "device config", func(m map[string][]byte) bool { return len(m["homeassistant/device/whisker_svc/config"]) > 0 })
	r := cl.requestJSON(protocol.TopicLabel, map[string]string{"request_id": "l1", "image": photoBase64(t, "chelsea.png"), "label": "Tigger"})
	if !r.Ok {
		t.Fatalf("label: %+v", r)
	}
	r = cl.requestJSON(protocol.TopicLabel, map[string]string{"request_id": "l2", "image": photoBase64(t, "dog.jpg"), "label": "Misty"})
	if !r.Ok {
		t.Fatalf("label: %+v", r)
	}
	ha.wait(t, "entities of both pets", func(m map[string][]byte) bool {
		return petComponents(m, "svc", "Tigger") == 5 && petComponents(m, "svc", "Misty") == 5
	})

	// Rename, applied once however often it is retried.
	rename := map[string]string{"request_id": "c-rename", "cmd": "rename", "label": "Misty", "to": "Rex"}
	r = cl.requestJSON(protocol.TopicCmd, rename)
	if !r.Ok || r.Changed != 1 || r.To != "Rex" || r.Duplicate {
		t.Fatalf("rename: %+v", r)
	}
	r = cl.requestJSON(protocol.TopicCmd, rename)
	if !r.Ok || !r.Duplicate || r.Changed != 1 {
		t.Fatalf("retried rename: %+v", r)
	}
	ha.wait(t, "Misty's entities renamed Rex", func(m map[string][]byte) bool {
		return petComponents(m, "svc", "Misty") == 0 && petComponents(m, "svc", "Rex") == 5
	})
	r = cl.requestJSON(protocol.TopicCmd, map[string]string{"request_id": "c-labels", "cmd": "labels"})
	if !r.Ok || len(r.Labels) != 2 || r.Labels[0].Label != "Rex" || r.Labels[1].Label != "Tigger" {
		t.Fatalf("labels: %+v", r)
	}

	// Threshold: set, persisted, retried once.
	thr := []byte(`{"request_id":"c-thr","cmd":"threshold","value":0.9}`)
	r = cl.request(protocol.TopicCmd, thr, "c-thr")
	if !r.Ok || r.Threshold != 0.9 {
		t.Fatalf("threshold: %+v", r)
	}
	if r = cl.request(protocol.TopicCmd, thr, "c-thr"); !r.Ok || !r.Duplicate {
		t.Fatalf("retried threshold: %+v", r)
	}
	settings, err := os.ReadFile(filepath.Join(cfg.StateDir, "settings.json"))
	if err != nil || !strings.Contains(string(settings), `"threshold":0.9`) {
		t.Fatalf("settings.json: %s %v", settings, err)
	}

	// Capture now, and the snapshot of that sighting.
	r = cl.requestJSON(protocol.TopicCmd, map[string]string{"request_id": "c-cap", "cmd": "capture"})
	if !r.Ok || r.Sighting == nil || r.Sighting.ID == "" {
		t.Fatalf("capture: %+v", r)
	}
	images := make(chan []byte, 1)
	if tok := cl.c.Subscribe("whisker/svc/snapshot/"+r.Sighting.ID, 1, func(_ paho.Client, m paho.Message) { images <- m.Payload() }); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe to the snapshot: %v", tok.Error())
	}
	r = cl.requestJSON(protocol.TopicCmd, map[string]string{"request_id": "c-snap", "cmd": "snapshot", "sighting_id": r.Sighting.ID})
	if !r.Ok || r.Bytes == 0 {
		t.Fatalf("snapshot: %+v", r)
	}
	select {
	case jpeg := <-images:
		if f, err := camera.DecodeImage(jpeg); err != nil || f.Width == 0 {
			t.Fatalf("snapshot is not an image: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("snapshot not delivered")
	}

	// Forget one sample, then a label: Rex's entities go.
	r = cl.requestJSON(protocol.TopicCmd, map[string]string{"request_id": "c-f1", "cmd": "forget", "label": "Rex"})
	if !r.Ok || r.Changed != 1 {
		t.Fatalf("forget label: %+v", r)
	}
	ha.wait(t, "Rex's entities removed", func(m map[string][]byte) bool { return petComponents(m, "svc", "Rex") == 0 })
	r = cl.request(protocol.TopicCmd, []byte(`{"request_id":"c-f2","cmd":"forget","sample_id":1}`), "c-f2")
	if !r.Ok || r.Label != "Tigger" {
		t.Fatalf("forget sample: %+v", r)
	}
	r = cl.request(protocol.TopicCmd, []byte(`{"request_id":"c-f3","cmd":"forget","sample_id":1}`), "c-f3")
	if r.Ok || !strings.Contains(r.Error, "no such sample") {
		t.Fatalf("forget a forgotten sample: %+v", r)
	}

	// Operations endpoints.
	resp, err := http.Get("http://" + a.HTTPAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, name := range []string{"whisker_frames_captured_total", "whisker_frames_dropped_total", "whisker_inference_seconds_bucket",
		"whisker_sightings_total", "whisker_training_runs_total", "whisker_training_seconds", "whisker_mqtt_reconnects_total",
		`whisker_requests_total{outcome="ok",topic="cmd"}`} {
		if !bytes.Contains(body, []byte(name)) {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	resp, err = http.Get("http://" + a.HTTPAddr() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	var h agent.Health
	json.NewDecoder(resp.Body).Decode(&h)
	resp.Body.Close()
	if resp.StatusCode != 200 || !h.OK || !h.MQTTConnected || !h.CameraUp {
		t.Fatalf("/healthz %d %+v", resp.StatusCode, h)
	}
}

// Labels stream in at QoS 1 while the broker is killed and restarted ten
// times; the client retries what was not answered, with the same ids.
// Every label is stored exactly once.
func TestLabelsSurviveBrokerRestarts(t *testing.T) {
	const total, restarts = 500, 10
	mosq := testenv.StartMosquitto(t)
	cfg := testConfig(t, mosq.URL(), "storm")
	cfg.Camera.MaxFPS = 5
	cfg.Learner.Recent = 10000
	cfg.Learner.RetrainDelay = time.Second
	cfg.Log.Level = "warn"
	a, stopAgent := startAgentStop(t, cfg)

	// A persistent-session client, as a careful user's would be.
	results := make(chan protocol.Result, 4*total)
	sightings := make(chan string, 64)
	opts := paho.NewClientOptions().AddBroker(mosq.URL()).SetClientID("storm-client").
		SetCleanSession(false).SetAutoReconnect(true).SetConnectRetry(true).
		SetConnectRetryInterval(100 * time.Millisecond).SetMaxReconnectInterval(500 * time.Millisecond).
		SetOnConnectHandler(func(c paho.Client) {
			c.SubscribeMultiple(map[string]byte{"whisker/storm/result": 1, "whisker/storm/sighting": 0}, func(_ paho.Client, m paho.Message) {
				if strings.HasSuffix(m.Topic(), "/sighting") {
					var s protocol.Sighting
					if json.Unmarshal(m.Payload(), &s) == nil {
						select {
						case sightings <- s.ID:
						default:
						}
					}
					return
				}
				var r protocol.Result
				if json.Unmarshal(m.Payload(), &r) == nil {
					results <- r
				}
			})
		})
	c := paho.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer c.Disconnect(100)
	var ids []string
	for len(ids) < 20 {
		select {
		case id := <-sightings:
			ids = append(ids, id)
		case <-time.After(30 * time.Second):
			t.Fatal("no sightings")
		}
	}

	payload := func(i int) []byte {
		b, _ := json.Marshal(map[string]string{
			"request_id": fmt.Sprintf("storm-%03d", i), "sighting_id": ids[i%len(ids)], "label": fmt.Sprintf("pet%d", i%3),
		})
		return b
	}
	acked := map[string]bool{}
	collect := func(d time.Duration) {
		deadline := time.After(d)
		for {
			select {
			case r := <-results:
				if !r.Ok {
					t.Errorf("refused: %+v", r)
				}
				acked[r.RequestID] = true
			case <-deadline:
				return
			}
		}
	}
	// The storm: publish while a goroutine restarts the broker.
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range restarts {
			time.Sleep(700 * time.Millisecond)
			if i%2 == 0 {
				mosq.Kill()
			} else {
				mosq.Stop()
			}
			time.Sleep(300 * time.Millisecond)
			mosq.Start()
		}
	}()
	for i := range total {
		c.Publish("whisker/storm/label", 1, false, payload(i)) // not waited for: the broker may be down
		time.Sleep(8 * time.Millisecond)
		if i%50 == 0 {
			collect(0)
		}
	}
	wg.Wait()
	// Retry what was not answered, with the same request ids, until all are.
	for round := 0; len(acked) < total && round < 20; round++ {
		collect(3 * time.Second)
		for i := range total {
			if !acked[fmt.Sprintf("storm-%03d", i)] {
				c.Publish("whisker/storm/label", 1, false, payload(i))
			}
		}
	}
	collect(2 * time.Second)
	if len(acked) != total {
		t.Fatalf("%d of %d labels acknowledged", len(acked), total)
	}
	t.Logf("broker restarted %d times; %d labels acknowledged; agent saw %d reconnects", restarts, len(acked), a.Bus().Reconnects())

	// Stop the agent and read its store: each request stored exactly once.
	stopAgent()
	store, err := learner.OpenStore(filepath.Join(cfg.StateDir, "samples.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	stored := map[string]int{}
	store.ForEach(false, func(s learner.Sample) error {
		stored[s.RequestID]++
		return nil
	})
	for id := range acked {
		if stored[id] != 1 {
			t.Errorf("request %s stored %d times", id, stored[id])
		}
	}
	if len(stored) != total {
		t.Errorf("%d distinct requests stored, want %d", len(stored), total)
	}
}

// selfSigned makes a CA and a server certificate for 127.0.0.1.
func selfSigned(t *testing.T, dir, name string) (caFile, certFile, keyFile string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name + " CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	srvKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	srv := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature,
	}
	caCert, _ := x509.ParseCertificate(caDER)
	srvDER, err := x509.CreateCertificate(rand.Reader, srv, caCert, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	write := func(file, kind string, der []byte) string {
		p := filepath.Join(dir, file)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	keyDER, _ := x509.MarshalECPrivateKey(srvKey)
	return write(name+"-ca.pem", "CERTIFICATE", caDER), write(name+"-server.pem", "CERTIFICATE", srvDER), write(name+"-server.key", "EC PRIVATE KEY", keyDER)
}

// logBuffer collects an agent's log lines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) count(substr string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.buf.String(), substr)
}

func TestTLSAndPasswordFailuresAreLoggedAndRetried(t *testing.T) {
	dir := t.TempDir()
	caFile, certFile, keyFile := selfSigned(t, dir, "good")
	wrongCA, _, _ := selfSigned(t, dir, "other")
	passwd := filepath.Join(dir, "passwd")
	cmd := exec.Command(testenv.Command(t, "mosquitto_passwd", "mosquitto"), "-c", "-b", passwd, "whisker", "s3cret")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_passwd: %v %s", err, out)
	}
	mosq := testenv.StartMosquittoListeners(t, func(port int, _ string) []string {
		return []string{
			"per_listener_settings true",
			fmt.Sprintf("listener %d 127.0.0.1", port),
			"cafile " + caFile, "certfile " + certFile, "keyfile " + keyFile,
			"allow_anonymous false", "password_file " + passwd,
		}
	})
	url := fmt.Sprintf("ssl://127.0.0.1:%d", mosq.Port)

	run := func(name string, tls protocol.TLSConfig, user, pass string) (*logBuffer, *agent.Agent, context.CancelFunc) {
		cfg := testConfig(t, url, name)
		cfg.MQTT.TLS, cfg.MQTT.Username, cfg.MQTT.Password = tls, user, pass
		logs := &logBuffer{}
		a, err := agent.New(cfg, slog.New(slog.NewTextHandler(logs, nil)), "test")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { a.Run(ctx); close(done) }()
		return logs, a, func() { cancel(); <-done }
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 30 s", what)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	logs, _, stop := run("wrongca", protocol.TLSConfig{CAFile: wrongCA}, "whisker", "s3cret")
	waitFor("two failed attempts with the wrong CA", func() bool { return logs.count("check mqtt.tls.ca_file") >= 2 })
	stop()
	if logs.count("certificate") == 0 {
		t.Errorf("log does not say what was wrong:\n%s", logs.buf.String())
	}

	logs, _, stop = run("wrongpass", protocol.TLSConfig{CAFile: caFile}, "whisker", "wrong")
	waitFor("two failed attempts with the wrong password", func() bool { return logs.count("check mqtt.username and mqtt.password") >= 2 })
	stop()

	logs, a, stop := run("good", protocol.TLSConfig{CAFile: caFile}, "whisker", "s3cret")
	waitFor("connected with the right CA and password", func() bool { return a.Bus() != nil && a.Bus().Connected() })
	stop()
}
