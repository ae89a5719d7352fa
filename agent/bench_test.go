package agent_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/whiskercam/whisker/agent/config"
	"github.com/whiskercam/whisker/agent/homeassistant"
	"github.com/whiskercam/whisker/agent/protocol"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/whiskercam/whisker/agent"
	"github.com/whiskercam/whisker/internal/testenv"
)

// BenchmarkLabelToAnnouncement measures, through a real mosquitto, the time
// from publishing a label for a pet the camera is looking at to receiving
// that pet's announcement (its Home Assistant state message). The camera is
// a folder holding one photo of the cat at the demo's 2 frames a second;
// each iteration forgets the cat's label, waits until Home Assistant hears
// that the cat left, and teaches it again: by naming a sighting of the cat
// (what the web page's inbox does), or by sending the photo (which runs
// the backbone on it first, between camera frames). The announcement comes
// from the frames already seen, named again when the head changes, not
// from new frames.
//
//	go test -run '^$' -bench LabelToAnnouncement -benchtime 20x ./agent/
func BenchmarkLabelToAnnouncement(b *testing.B) {
	b.Run("sighting", func(b *testing.B) { benchLabelToAnnouncement(b, true) })
	b.Run("image", func(b *testing.B) { benchLabelToAnnouncement(b, false) })
}

func benchLabelToAnnouncement(b *testing.B, bySighting bool) {
	mosq := testenv.StartMosquitto(b)
	dir := b.TempDir()
	cam := filepath.Join(dir, "camera")
	os.Mkdir(cam, 0o755)
	data, err := os.ReadFile(testenv.Photo(b, "chelsea.png"))
	if err != nil {
		b.Fatal(err)
	}
	os.WriteFile(filepath.Join(cam, "cat.png"), data, 0o644)

	cfg := config.Default()
	cfg.Device, cfg.StateDir, cfg.Backbone = "lat", filepath.Join(dir, "state"), testenv.BackboneManifest(b)
	cfg.Camera.Source, cfg.Camera.Loop, cfg.Camera.FolderFPS = cam, true, 2
	cfg.Camera.Motion.Enabled = false // one photo over and over: a still scene
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
	gone := make(chan struct{}, 64)
	sub := paho.NewClient(paho.NewClientOptions().AddBroker(mosq.URL()).SetClientID("lat-sub"))
	if tok := sub.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		b.Fatal(tok.Error())
	}
	defer sub.Disconnect(100)
	sub.Subscribe("whisker/lat/pet/+", 1, func(_ paho.Client, m paho.Message) {
		if len(m.Payload()) == 0 { // a forgotten pet's state is emptied
			gone <- struct{}{}
			return
		}
		var st homeassistant.PetState
		if json.Unmarshal(m.Payload(), &st) == nil && st.Label == "Tigger" {
			announced <- st
		}
	})
	sub.Subscribe("whisker/lat/pet/+/present", 1, func(_ paho.Client, m paho.Message) {
		if string(m.Payload()) == "OFF" || len(m.Payload()) == 0 {
			gone <- struct{}{}
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
	request := func(topic string, req map[string]any) {
		ctx, cancel := context.WithTimeout(b.Context(), 60*time.Second)
		defer cancel()
		res, err := cl.Request(ctx, topic, req)
		if err != nil || !res.Ok {
			b.Fatalf("%s %v: %v %+v", topic, req["label"], err, res)
		}
	}
	label := func(name, photo string) {
		img, _ := os.ReadFile(testenv.Photo(b, photo))
		request(protocol.TopicLabel, map[string]any{"image": img, "label": name})
	}
	// Two other labels first, so that a head exists before the cat's.
	label("Misty", "dog.jpg")
	label("neither", "grass.png")
	waitHead(b, a, []string{"Misty", "neither"})
	var latest atomic.Value // the newest sighting's id: always the cat
	go cl.Watch(b.Context(), func(s protocol.Sighting) { latest.Store(s.ID) })
	teach := func() {
		if !bySighting {
			label("Tigger", "chelsea.png")
			return
		}
		id, _ := latest.Load().(string)
		request(protocol.TopicLabel, map[string]any{"sighting_id": id, "label": "Tigger"})
	}
	for deadline := time.Now().Add(60 * time.Second); latest.Load() == nil; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			b.Fatal("no sighting within 60 s")
		}
	}

	var took []time.Duration
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		if i > 0 {
			request(protocol.TopicCmd, map[string]any{"cmd": "forget", "label": "Tigger"})
			select { // Home Assistant hears that the cat left
			case <-gone:
			case <-time.After(60 * time.Second):
				b.Fatalf("try %d: Tigger did not leave within 60 s of being forgotten", i+1)
			}
		}
	drain:
		for {
			select {
			case <-announced:
			case <-gone:
			default:
				break drain
			}
		}
		b.StartTimer()
		start := time.Now()
		teach()
		select {
		case <-announced:
		case <-time.After(60 * time.Second):
			b.Fatalf("try %d: no announcement of Tigger within 60 s of the label", i+1)
		}
		took = append(took, time.Since(start))
	}
	b.StopTimer()
	sorted := slices.Clone(took)
	slices.Sort(sorted)
	var sum time.Duration
	for _, d := range took {
		sum += d
	}
	mean := sum / time.Duration(len(took))
	p95 := sorted[min(len(sorted)-1, (len(sorted)*95+99)/100-1)]
	b.ReportMetric(float64(mean.Microseconds())/1000, "mean-ms")
	b.ReportMetric(float64(p95.Microseconds())/1000, "p95-ms")
	b.ReportMetric(float64(sorted[len(sorted)/2].Microseconds())/1000, "median-ms")
	b.Logf("label to announcement through mosquitto, %d tries: mean %v, p95 %v, median %v (min %v, max %v); camera %g fps, %d of %d frames must agree",
		len(took), mean.Round(time.Millisecond), p95.Round(time.Millisecond), sorted[len(sorted)/2].Round(time.Millisecond),
		sorted[0].Round(time.Millisecond), sorted[len(sorted)-1].Round(time.Millisecond),
		cfg.Camera.FolderFPS, cfg.Learner.AnnounceAgree, cfg.Learner.AnnounceWindow)
}

// waitHead waits until the agent's head has exactly these classes.
func waitHead(tb testing.TB, a *agent.Agent, classes []string) {
	tb.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if st, err := a.Stats(); err == nil && st.Head != nil && slices.Equal(st.Head.Classes, classes) {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("no head of %v within 60 s", classes)
		}
		time.Sleep(50 * time.Millisecond)
	}
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
