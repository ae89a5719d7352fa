package agent_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/whiskercam/whisker/agent/homeassistant"
	"github.com/whiskercam/whisker/agent/protocol"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/whiskercam/whisker/agent"
	"github.com/whiskercam/whisker/internal/testenv"
)

// BenchmarkLabelToAnnouncement measures, through a real mosquitto, the time
// from publishing a label for a pet the camera is looking at to receiving
// that pet's announcement (its Home Assistant state message). The camera is
// a folder holding one photo of the cat at the default 2 frames a second;
// each iteration forgets the cat's label and teaches it again.
//
//	go test -run '^$' -bench LabelToAnnouncement -benchtime 5x ./agent/
func BenchmarkLabelToAnnouncement(b *testing.B) {
	mosq := testenv.StartMosquitto(b)
	dir := b.TempDir()
	cam := filepath.Join(dir, "camera")
	os.Mkdir(cam, 0o755)
	data, err := os.ReadFile(testenv.Photo(b, "chelsea.png"))
	if err != nil {
		b.Fatal(err)
	}
	os.WriteFile(filepath.Join(cam, "cat.png"), data, 0o644)

	cfg := agent.Default()
	cfg.Device, cfg.StateDir, cfg.Backbone = "lat", filepath.Join(dir, "state"), testenv.BackboneManifest(b)
	cfg.Camera.Source, cfg.Camera.Loop, cfg.Camera.FolderFPS = cam, true, 2
	cfg.Camera.Motion.Enabled = false // one photo over and over: a still scene
	cfg.Backbone = testenv.BackboneManifest(b)
	cfg.MQTT.Broker, cfg.HTTP.Listen, cfg.Log.Level = mosq.URL(), "127.0.0.1:0", "warn"
	cfg.HomeAssistant.MinInterval = 0
	a, err := agent.New(cfg, nopLogger(), "bench")
	if err != nil {
		b.Fatal(err)
	}
	stop := runAgent(b, a)
	defer stop()
	cl, err := protocol.Dial(b.Context(), protocol.ClientConfig{Broker: mosq.URL(), Device: "lat"})
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()

	announced := make(chan homeassistant.PetState, 64)
	sub := paho.NewClient(paho.NewClientOptions().AddBroker(mosq.URL()).SetClientID("lat-sub"))
	if tok := sub.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		b.Fatal(tok.Error())
	}
	defer sub.Disconnect(100)
	sub.Subscribe("whisker/lat/pet/+", 1, func(_ paho.Client, m paho.Message) {
		var st homeassistant.PetState
		if json.Unmarshal(m.Payload(), &st) == nil && st.Label == "Tigger" {
			announced <- st
		}
	})
	// A request sent before the agent subscribes is lost: wait for it.
	online := make(chan struct{})
	var once sync.Once
	sub.Subscribe("whisker/lat/status", 1, func(_ paho.Client, m paho.Message) {
		var st struct{ State string }
		if json.Unmarshal(m.Payload(), &st) == nil && st.State == "online" {
			once.Do(func() { close(online) })
		}
	})
	select {
	case <-online:
	case <-time.After(60 * time.Second):
		b.Fatal("the agent did not come online within 60 s")
	}
	label := func(name, photo string) {
		img, _ := os.ReadFile(testenv.Photo(b, photo))
		ctx, cancel := context.WithTimeout(b.Context(), 60*time.Second)
		defer cancel()
		res, err := cl.Request(ctx, protocol.TopicLabel, map[string]any{"image": img, "label": name})
		if err != nil || !res.Ok {
			b.Fatalf("label %s: %v %+v", name, err, res)
		}
	}
	// Two other labels first, so that a head exists before the cat's.
	label("Misty", "dog.jpg")
	label("neither", "grass.png")
	time.Sleep(2 * time.Second)

	var took []time.Duration
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		if i > 0 {
			ctx, cancel := context.WithTimeout(b.Context(), 60*time.Second)
			res, err := cl.Request(ctx, protocol.TopicCmd, map[string]any{"cmd": "forget", "label": "Tigger"})
			cancel()
			if err != nil || !res.Ok {
				b.Fatalf("forget: %v %+v", err, res)
			}
			// Long enough for the announcer's whole window to see the cat
			// under another name, so that Tigger has left.
			time.Sleep(4 * time.Second)
		}
	drain:
		for {
			select {
			case <-announced:
			default:
				break drain
			}
		}
		b.StartTimer()
		start := time.Now()
		label("Tigger", "chelsea.png")
		deadline := time.After(60 * time.Second)
	wait:
		for {
			select {
			case st := <-announced:
				if seen, err := time.Parse(time.RFC3339Nano, st.LastSeen); err == nil && seen.After(start) {
					break wait
				}
			case <-deadline:
				b.Fatalf("try %d: no announcement of Tigger within 60 s of the label", i+1)
			}
		}
		took = append(took, time.Since(start))
	}
	b.StopTimer()
	sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
	b.ReportMetric(float64(took[len(took)/2].Milliseconds()), "median-ms")
	b.Logf("label to announcement through mosquitto: %v (min %v, max %v; camera %g fps, %d of %d frames must agree)",
		took[len(took)/2], took[0], took[len(took)-1], cfg.Camera.FolderFPS, cfg.Learner.AnnounceAgree, cfg.Learner.AnnounceWindow)
}

func nopLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// runAgent runs an agent until the returned function is called.
func runAgent(tb testing.TB, a *agent.Agent) func() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("agent: %v", err)
		}
	}
}
