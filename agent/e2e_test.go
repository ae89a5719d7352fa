package agent_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/whiskercam/whisker/agent/config"
	"github.com/whiskercam/whisker/agent/protocol"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/whiskercam/whisker/agent"
	"github.com/whiskercam/whisker/internal/demo"
	"github.com/whiskercam/whisker/internal/testenv"
)

// TestMain lets the test binary double as an agent process, for tests
// that kill the agent.
func TestMain(m *testing.M) {
	if cfg := os.Getenv("WHISKER_TEST_AGENT_CONFIG"); cfg != "" {
		os.Exit(runChildAgent(cfg))
	}
	os.Exit(m.Run())
}

func runChildAgent(path string) int {
	cfg, err := config.Load(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	// In a mount namespace of its own, the state directory can be a small
	// tmpfs that the agent fills to the last byte.
	if size := os.Getenv("WHISKER_TEST_STATE_TMPFS"); size != "" {
		if err := syscall.Mount("", "/", "", syscall.MS_REC|syscall.MS_PRIVATE, ""); err != nil {
			fmt.Fprintln(os.Stderr, "make mounts private:", err)
			return 2
		}
		if err := syscall.Mount("tmpfs", cfg.StateDir, "tmpfs", 0, "size="+size); err != nil {
			fmt.Fprintln(os.Stderr, "mount the state directory:", err)
			return 2
		}
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	a, err := agent.New(cfg, log, "test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	// A request whose id starts with "poison" kills the process in the
	// middle of its risky step, as an image that crashed the decoder would.
	agent.SetRiskyHook(a, func(id string) {
		if strings.HasPrefix(id, "poison") {
			syscall.Kill(syscall.Getpid(), syscall.SIGKILL)
		}
	})
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	if err := a.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// testConfig is an agent configuration for the demo video and a broker.
func testConfig(t *testing.T, broker, device string) config.Config {
	cfg := config.Default()
	cfg.Device = device
	cfg.StateDir = t.TempDir()
	cfg.Backbone = testenv.BackboneManifest(t)
	cfg.Camera.Source = testenv.DemoVideo(t)
	cfg.Camera.Loop = true
	cfg.Camera.MaxFPS = 0 // the video's own 10 fps; frames it cannot keep up with are dropped
	// The still lawn is labelled too: classify it every second.
	cfg.Camera.Motion.IdleInterval = time.Second
	cfg.MQTT.Broker = broker
	cfg.Learner.RetrainDelay = 100 * time.Millisecond
	cfg.HTTP.Listen = "127.0.0.1:0"
	cfg.Log.Level = "debug"
	return cfg
}

// startAgent runs an agent in this process until the test ends.
func startAgent(t *testing.T, cfg config.Config) *agent.Agent {
	a, _ := startAgentStop(t, cfg)
	return a
}

// startAgentStop also returns a function that stops the agent (at most
// once; the test's end calls it too).
func startAgentStop(t *testing.T, cfg config.Config) (*agent.Agent, func()) {
	return startAgentLog(t, cfg, slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: logLevel(cfg.Log.Level)})))
}

// startAgentLogged runs an agent whose log lines, at every level, are
// also kept, for tests that wait for one.
func startAgentLogged(t *testing.T, cfg config.Config) (*agent.Agent, *logBuffer) {
	logs := &logBuffer{}
	both := slog.NewTextHandler(io.MultiWriter(testWriter{t}, logs), &slog.HandlerOptions{Level: slog.LevelDebug})
	a, _ := startAgentLog(t, cfg, slog.New(both))
	return a, logs
}

func startAgentLog(t *testing.T, cfg config.Config, log *slog.Logger) (*agent.Agent, func()) {
	t.Helper()
	a, err := agent.New(cfg, log, "test")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("agent: %v", err)
				}
			case <-time.After(15 * time.Second):
				var stacks strings.Builder
				pprof.Lookup("goroutine").WriteTo(&stacks, 1)
				t.Errorf("agent did not stop within 15 s; goroutines:\n%s", stacks.String())
			}
		})
	}
	t.Cleanup(stop)
	return a, stop
}

func logLevel(s string) slog.Level {
	var l slog.Level
	if l.UnmarshalText([]byte(s)) != nil || l < slog.LevelInfo {
		return slog.LevelInfo
	}
	return l
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// client is a plain MQTT client, as a user's would be.
type client struct {
	t         *testing.T
	c         paho.Client
	prefix    string
	sightings chan protocol.Sighting
	results   chan protocol.Result
	status    chan protocol.Status
	// requests receives the label and command messages the client sees
	// (an operator reads them too); those that found it full are counted.
	requests     chan paho.Message
	requestsLost atomic.Uint64
}

func newClient(t *testing.T, url, prefix string) *client {
	t.Helper()
	return newClientAs(t, url, prefix, "", "")
}

// newClientAs is newClient for a broker user.
func newClientAs(t *testing.T, url, prefix, user, password string) *client {
	t.Helper()
	cl := &client{
		t: t, prefix: prefix,
		sightings: make(chan protocol.Sighting, 4096),
		results:   make(chan protocol.Result, 256),
		status:    make(chan protocol.Status, 64),
		requests:  make(chan paho.Message, 8192),
	}
	opts := paho.NewClientOptions().AddBroker(url).SetClientID(fmt.Sprintf("test-%d", time.Now().UnixNano())).
		SetUsername(user).SetPassword(password).
		SetCleanSession(true).SetAutoReconnect(true).SetConnectRetry(true).SetConnectRetryInterval(200 * time.Millisecond).
		SetOnConnectHandler(func(c paho.Client) {
			c.Subscribe(prefix+"#", 1, cl.route)
		})
	cl.c = paho.NewClient(opts)
	if tok := cl.c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("test client connect: %v", tok.Error())
	}
	t.Cleanup(func() { cl.c.Disconnect(100) })
	return cl
}

func (cl *client) route(_ paho.Client, m paho.Message) {
	switch strings.TrimPrefix(m.Topic(), cl.prefix) {
	case protocol.TopicSighting:
		var s protocol.Sighting
		if err := json.Unmarshal(m.Payload(), &s); err != nil {
			cl.t.Errorf("sighting is not JSON: %v", err)
			return
		}
		select {
		case cl.sightings <- s:
		default: // the test is not reading sightings now
		}
	case protocol.TopicResult:
		var r protocol.Result
		if err := json.Unmarshal(m.Payload(), &r); err != nil {
			cl.t.Errorf("result is not JSON: %v", err)
			return
		}
		cl.results <- r
	case protocol.TopicStatus:
		var s protocol.Status
		if err := json.Unmarshal(m.Payload(), &s); err != nil {
			cl.t.Errorf("status is not JSON: %v", err)
			return
		}
		select {
		case cl.status <- s:
		default:
		}
	case protocol.TopicLabel, protocol.TopicCmd:
		select {
		case cl.requests <- m:
		default:
			cl.requestsLost.Add(1)
		}
	}
}

// publish publishes a request at QoS 1. A connection that was pushed off
// the broker (a test takes its client id) is waited for and the publish
// tried again, as paho reconnects by itself.
func (cl *client) publish(topic string, payload []byte) {
	cl.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		tok := cl.c.Publish(cl.prefix+topic, 1, false, payload)
		if !tok.WaitTimeout(10 * time.Second) {
			cl.t.Fatalf("publish %s: not acknowledged within 10 s", topic)
		}
		if tok.Error() == nil {
			return
		}
		if time.Now().After(deadline) {
			cl.t.Fatalf("publish %s: %v", topic, tok.Error())
		}
		cl.t.Logf("publish %s: %v; trying again once the client is connected", topic, tok.Error())
		for !cl.c.IsConnectionOpen() && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// request publishes a payload and returns the result carrying reqID.
// Other results (answers to redelivered requests) are skipped.
func (cl *client) request(topic string, payload []byte, reqID string) protocol.Result {
	cl.t.Helper()
	cl.publish(topic, payload)
	// Generous: after a flood (TestAttacks) the answer waits behind every
	// queued request, each answered in turn, under the race detector.
	deadline := time.After(90 * time.Second)
	for {
		select {
		case r := <-cl.results:
			if r.RequestID == reqID {
				return r
			}
			cl.t.Logf("skipping result of request %q", r.RequestID)
		case <-deadline:
			cl.t.Fatalf("no result for %.80q on %s within 90 s", payload, topic)
			return protocol.Result{}
		}
	}
}

func (cl *client) requestJSON(topic string, v map[string]string) protocol.Result {
	cl.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		cl.t.Fatal(err)
	}
	return cl.request(topic, b, v["request_id"])
}

func (cl *client) waitStatus(state string) protocol.Status {
	cl.t.Helper()
	deadline := time.After(60 * time.Second)
	for {
		select {
		case s := <-cl.status:
			if s.State == state {
				return s
			}
		case <-deadline:
			cl.t.Fatalf("no %q status within 60 s", state)
		}
	}
}

func (cl *client) nextSighting(timeout time.Duration) protocol.Sighting {
	cl.t.Helper()
	select {
	case s := <-cl.sightings:
		return s
	case <-time.After(timeout):
		cl.t.Fatalf("no sighting within %v", timeout)
		return protocol.Sighting{}
	}
}

func subjectOf(s protocol.Sighting) (string, int) {
	return demo.Subject(int(s.Frame) - 1)
}

// The camera as installed: the detecting backbone finds each pet, which
// is classified from its crop, with the reference set of other animals
// and scenes as one more class.
func TestEndToEndThroughMosquitto(t *testing.T) {
	mosq := testenv.StartMosquitto(t)
	cfg := testConfig(t, mosq.URL(), "e2e")
	cfg.Backbone = testenv.DetectorBackbone(t)
	cl := newClient(t, mosq.URL(), "whisker/e2e/")
	startAgent(t, cfg)
	st := cl.waitStatus("online")
	if st.Backbone == "" {
		t.Fatalf("status has no backbone: %+v", st)
	}

	// No head yet: every sighting is unknown. Pick frames to label from
	// the first appearance of each subject.
	want := map[string]string{demo.Cat: "Tigger", demo.Dog: "Misty", demo.Empty: "neither"}
	picked := map[string][]string{}
	deadline := time.Now().Add(90 * time.Second)
	for len(picked[demo.Cat]) < 2 || len(picked[demo.Dog]) < 2 || len(picked[demo.Empty]) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("did not see two frames of each subject: %v", picked)
		}
		s := cl.nextSighting(30 * time.Second)
		if s.Label != protocol.Unknown || len(s.Scores) != 0 {
			t.Fatalf("sighting %s says %q with scores %v before any label", s.ID, s.Label, s.Scores)
		}
		subj, pass := subjectOf(s)
		if pass == 0 && len(picked[subj]) < 2 {
			picked[subj] = append(picked[subj], s.ID)
		}
	}
	n := 0
	for subj, ids := range picked {
		for _, id := range ids {
			n++
			r := cl.requestJSON(protocol.TopicLabel, map[string]string{"request_id": fmt.Sprintf("lbl-%d", n), "sighting_id": id, "label": want[subj]})
			if !r.Ok || r.RequestID != fmt.Sprintf("lbl-%d", n) || r.Label != want[subj] || r.SampleID == 0 {
				t.Fatalf("label %s as %s: %+v", id, want[subj], r)
			}
		}
	}

	// Later sightings of the pets, in their second appearance (other size
	// and position), carry their names.
	correct, total := map[string]int{}, map[string]int{}
	deadline = time.Now().Add(120 * time.Second)
	for total[demo.Cat] < 8 || total[demo.Dog] < 8 {
		if time.Now().After(deadline) {
			t.Fatalf("not enough classified pet sightings: %v", total)
		}
		s := cl.nextSighting(30 * time.Second)
		subj, pass := subjectOf(s)
		if len(s.Scores) == 0 || pass != 1 || subj == demo.Empty {
			continue // no head yet, or not a second appearance
		}
		total[subj]++
		if s.Label == want[subj] {
			correct[subj]++
		} else {
			t.Logf("frame %d (%s): %q %.2f %v (%s)", s.Frame, subj, s.Label, s.Confidence, s.Scores, s.Why)
		}
	}
	for _, subj := range []string{demo.Cat, demo.Dog} {
		acc := float64(correct[subj]) / float64(total[subj])
		t.Logf("%s: %d of %d second-appearance sightings named %s", subj, correct[subj], total[subj], want[subj])
		if acc < 0.75 {
			t.Errorf("%s named correctly in %.0f%% of sightings, want at least 75%%", subj, acc*100)
		}
	}

	// Malformed requests are answered with reasons; the agent keeps serving.
	t.Run("malformed", func(t *testing.T) {
		cl.t = t
		notImage := base64.StdEncoding.EncodeToString([]byte("this is not an image at all"))
		long := strings.Repeat("x", 10<<20)
		for _, tc := range []struct {
			name, topic string
			payload     string
			reqID       string
			reason      string
		}{
			{"bad JSON", protocol.TopicLabel, `{"request_id": "m1", "label": `, "m1", "not valid JSON"},
			{"not an object", protocol.TopicLabel, `[1,2,3]`, "", "JSON object"},
			{"missing request id", protocol.TopicLabel, `{"sighting_id":"x","label":"Tigger"}`, "", "request_id is missing"},
			{"missing label", protocol.TopicLabel, `{"request_id":"m2","sighting_id":"x"}`, "m2", "label is missing"},
			{"empty label", protocol.TopicLabel, `{"request_id":"m3","sighting_id":"x","label":""}`, "m3", "label is missing"},
			{"10 MB label", protocol.TopicLabel, `{"request_id":"m4","sighting_id":"x","label":"` + long + `"}`, "m4", "the limit is"},
			{"neither sighting nor image", protocol.TopicLabel, `{"request_id":"m5","label":"Tigger"}`, "m5", "sighting_id"},
			{"unknown sighting", protocol.TopicLabel, `{"request_id":"m6","sighting_id":"nope-1","label":"Tigger"}`, "m6", "unknown sighting id"},
			{"non-image", protocol.TopicLabel, `{"request_id":"m7","image":"` + notImage + `","label":"Tigger"}`, "m7", "image cannot be read"},
			{"bad base64", protocol.TopicLabel, `{"request_id":"m8","image":"%%%","label":"Tigger"}`, "m8", "base64"},
			{"wrong type", protocol.TopicLabel, `{"request_id":"m9","sighting_id":7,"label":"Tigger"}`, "m9", "must be string"},
			{"unknown field", protocol.TopicLabel, `{"request_id":"m10","sighting_id":"x","lable":"Tigger"}`, "m10", "unknown field"},
			{"path in label", protocol.TopicLabel, `{"request_id":"m11","sighting_id":"x","label":"../etc"}`, "m11", "path separator"},
			{"unknown command", protocol.TopicCmd, `{"request_id":"m12","cmd":"explode"}`, "m12", "unknown cmd"},
			{"empty payload", protocol.TopicCmd, ``, "", "empty"},
		} {
			r := cl.request(tc.topic, []byte(tc.payload), tc.reqID)
			if r.Ok || !strings.Contains(r.Error, tc.reason) || r.Topic != tc.topic {
				t.Errorf("%s: got %+v, want ok:false request_id %q and a reason mentioning %q", tc.name, r, tc.reqID, tc.reason)
			}
		}
		r := cl.requestJSON(protocol.TopicCmd, map[string]string{"request_id": "after", "cmd": "stats"})
		if !r.Ok || r.Stats == nil || r.Stats.Head == nil || r.Stats.Samples != 6 {
			t.Fatalf("stats after malformed requests: %+v", r)
		}
		t.Logf("stats: %+v", *r.Stats)
	})
}

// writeConfig writes an agent configuration file for a child process.
func writeConfig(t *testing.T, dir, broker, stateDir string) string {
	t.Helper()
	yaml := fmt.Sprintf(`device: crash
state_dir: %s
backbone: %s
camera:
  source: %s
  max_fps: 2
mqtt:
  broker: %s
learner:
  retrain_delay: 50ms
http:
  listen: 127.0.0.1:0
`, stateDir, testenv.BackboneManifest(t), testenv.DemoVideo(t), broker)
	path := filepath.Join(dir, "whisker.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func startChild(t *testing.T, config, logPath string) *exec.Cmd {
	t.Helper()
	return startChildWith(t, config, logPath, nil)
}

// startChildWith starts an agent child process with more environment and
// process attributes.
func startChildWith(t *testing.T, config, logPath string, attr *syscall.SysProcAttr, env ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), "WHISKER_TEST_AGENT_CONFIG="+config), env...)
	cmd.SysProcAttr = attr
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	t.Cleanup(func() {
		once.Do(func() {
			cmd.Process.Kill()
			cmd.Wait()
			logf.Close()
		})
	})
	return cmd
}

func TestAcknowledgedLabelSurvivesKill9(t *testing.T) {
	mosq := testenv.StartMosquitto(t)
	dir := t.TempDir()
	stateDir := filepath.Join(dir, "state")
	config := writeConfig(t, dir, mosq.URL(), stateDir)
	logPath := filepath.Join(dir, "agent.log")
	cl := newClient(t, mosq.URL(), "whisker/crash/")

	child := startChild(t, config, logPath)
	cl.waitStatus("online")
	photo, err := os.ReadFile(testenv.Photo(t, "dog.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	r := cl.requestJSON(protocol.TopicLabel, map[string]string{
		"request_id": "before-crash", "image": base64.StdEncoding.EncodeToString(photo), "label": "Misty",
	})
	if !r.Ok {
		log, _ := os.ReadFile(logPath)
		t.Fatalf("label: %+v\n%s", r, log)
	}
	// kill -9 right after the acknowledgement.
	if err := child.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	child.Wait()
	cl.waitStatus("offline") // the broker publishes the will

	startChild(t, config, logPath)
	cl.waitStatus("online")
	r = cl.requestJSON(protocol.TopicCmd, map[string]string{"request_id": "after-crash", "cmd": "labels"})
	if !r.Ok || len(r.Labels) != 1 || r.Labels[0].Label != "Misty" || r.Labels[0].Samples != 1 {
		log, _ := os.ReadFile(logPath)
		t.Fatalf("labels after kill -9 and restart: %+v\n%s", r, log)
	}
	// The same request again is recognised as a retry.
	r = cl.requestJSON(protocol.TopicLabel, map[string]string{
		"request_id": "before-crash", "image": base64.StdEncoding.EncodeToString(photo), "label": "Misty",
	})
	if !r.Ok || !r.Duplicate {
		log, _ := os.ReadFile(logPath)
		t.Fatalf("retried request: %+v\n%s", r, log)
	}
}
