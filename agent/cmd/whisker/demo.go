package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/whiskercam/whisker/agent/config"
	"github.com/whiskercam/whisker/agent/protocol"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/spf13/cobra"

	"github.com/whiskercam/whisker/agent"
	"github.com/whiskercam/whisker/internal/demo"
)

func demoCmd() *cobra.Command {
	var cfgPath string
	var watch time.Duration
	var fps float64
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Scripted demo: run the agent on the demo video, label a few sightings, watch the names appear",
		Long: `Run the agent on the demo video with the embedded broker (a fresh state
directory each time), then act as a user would over MQTT: wait for the cat
and the dog to appear, label two sightings of each (and two of the empty
lawn as "neither"), and print the sightings that follow with the names the
agent now gives them.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := config.Load(cfgPath)
			if err != nil {
				return err
			}
			state, err := os.MkdirTemp("", "whisker-demo-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(state)
			cfg.StateDir = state
			cfg.MQTT.Broker = ""
			cfg.MQTT.EmbeddedListen = "127.0.0.1:0" // any free port
			if fps < 0 {
				return fmt.Errorf("--fps %g: want 0 (the video's own rate) or more", fps)
			}
			cfg.Camera.MaxFPS = fps // 0: the video's own 10 fps
			cfg.Learner.RetrainDelay = 200 * time.Millisecond
			// Below the video's rate it plays slower; waits grow with it.
			slow := 1.0
			if fps > 0 && fps < demo.FPS {
				slow = demo.FPS / fps
			}
			return runDemo(cmd.Context(), cmd.OutOrStdout(), cfg, watch, slow)
		},
	}
	cmd.Flags().StringVarP(&cfgPath, "config", "c", filepath.Join("examples", "demo.yaml"), "agent configuration of the demo")
	cmd.Flags().DurationVar(&watch, "watch", 20*time.Second, "how long to show named sightings")
	cmd.Flags().Float64Var(&fps, "fps", 0, "frames per second read from the video (0: its own 10); lower plays it slower, for slow or emulated machines")
	return cmd
}

func runDemo(ctx context.Context, out io.Writer, cfg config.Config, watch time.Duration, slow float64) error {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	a, err := agent.New(cfg, log, version)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() { cancel(); <-done }()

	// Wait for the embedded broker, then connect as a user's client would.
	deadline := time.Now().Add(30 * time.Second)
	for a.BrokerURL() == "" || a.Bus() == nil {
		if time.Now().After(deadline) {
			return errors.New("the agent did not start its broker")
		}
		time.Sleep(50 * time.Millisecond)
	}
	prefix := cfg.MQTT.TopicPrefix + "/" + cfg.Device + "/"
	sightings := make(chan protocol.Sighting, 1024)
	results := make(chan protocol.Result, 64)
	opts := paho.NewClientOptions().AddBroker(a.BrokerURL()).SetClientID("whisker-demo-user").
		SetOnConnectHandler(func(c paho.Client) {
			c.Subscribe(prefix+"#", 1, func(_ paho.Client, m paho.Message) {
				switch strings.TrimPrefix(m.Topic(), prefix) {
				case protocol.TopicSighting:
					var s protocol.Sighting
					if json.Unmarshal(m.Payload(), &s) == nil {
						select {
						case sightings <- s:
						default:
						}
					}
				case protocol.TopicResult:
					var r protocol.Result
					if json.Unmarshal(m.Payload(), &r) == nil {
						results <- r
					}
				}
			})
		})
	c := paho.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		return fmt.Errorf("connect to the agent's broker: %v", tok.Error())
	}
	defer c.Disconnect(100)

	fmt.Fprintf(out, "Whisker demo: agent %q on %s, broker %s\n", cfg.Device, filepath.Base(cfg.Camera.Source), a.BrokerURL())
	fmt.Fprintf(out, "Watch along in another terminal:  mosquitto_sub -h 127.0.0.1 -p %s -t '%s#' -v\n\n",
		strings.TrimPrefix(a.BrokerURL()[strings.LastIndex(a.BrokerURL(), ":"):], ":"), prefix)
	names := map[string]string{demo.Cat: "Tigger", demo.Dog: "Misty", demo.Empty: "neither"}
	what := map[string]string{demo.Cat: "the cat", demo.Dog: "the dog", demo.Empty: "the empty lawn"}

	fmt.Fprintln(out, "1. No labels yet: every sighting is \"unknown\". Waiting for the cat and the dog to appear...")
	picked := map[string][]protocol.Sighting{}
	wait := time.Duration(slow * float64(90*time.Second))
	timeout := time.After(wait)
	for len(picked[demo.Cat]) < 2 || len(picked[demo.Dog]) < 2 || len(picked[demo.Empty]) < 2 {
		select {
		case s := <-sightings:
			subj, pass := demo.Subject(int(s.Frame) - 1)
			if pass == 0 && len(picked[subj]) < 2 && (len(picked[subj]) == 0 || s.Frame > picked[subj][0].Frame+5) {
				picked[subj] = append(picked[subj], s)
				fmt.Fprintf(out, "   sighting %-14s %-22s label=%q\n", s.ID, "("+what[subj]+")", s.Label)
			}
		case <-timeout:
			return fmt.Errorf("did not see the cat and the dog within %v", wait)
		case <-ctx.Done():
			return ctx.Err()
		}
	}

	fmt.Fprintln(out, "\n2. Labelling those sightings over MQTT (whisker/<device>/label):")
	n := 0
	for _, subj := range []string{demo.Cat, demo.Dog, demo.Empty} {
		for _, s := range picked[subj] {
			n++
			req := map[string]string{"request_id": fmt.Sprintf("demo-%d", n), "sighting_id": s.ID, "label": names[subj]}
			payload, _ := json.Marshal(req)
			c.Publish(prefix+protocol.TopicLabel, 1, false, payload)
			select {
			case r := <-results:
				status := "stored"
				if !r.Ok {
					status = "refused: " + r.Error
				}
				fmt.Fprintf(out, "   %-14s -> %-8s %s (sample %d)\n", s.ID, names[subj], status, r.SampleID)
			case <-time.After(30 * time.Second):
				return errors.New("no answer to a label within 30 s")
			}
		}
	}

	fmt.Fprintf(out, "\n3. The head retrains by itself. Sightings from now on (%v):\n", watch)
	fmt.Fprintf(out, "   %-14s %-16s %-9s %-10s %s\n", "sighting", "on screen", "label", "confidence", "scores")
	end := time.After(watch)
	correct, total := 0, 0
	last := ""
	for {
		select {
		case s := <-sightings:
			if len(s.Scores) == 0 {
				continue // before the first head
			}
			subj, _ := demo.Subject(int(s.Frame) - 1)
			total++
			if s.Label == names[subj] {
				correct++
			}
			// One line per change of subject or label, to keep it readable.
			key := subj + "/" + s.Label
			if key == last {
				continue
			}
			last = key
			fmt.Fprintf(out, "   %-14s %-16s %-9s %-10.2f %s\n", s.ID, what[subj], s.Label, s.Confidence, scores(s.Scores))
		case <-end:
			fmt.Fprintf(out, "\n%d of %d sightings named as a person would (%.0f%%). Stats: %s\n", correct, total,
				100*float64(correct)/float64(max(total, 1)), statsLine(a))
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func scores(m map[string]float64) string {
	parts := make([]string, 0, len(m))
	for _, k := range []string{"Tigger", "Misty", "neither"} {
		if v, ok := m[k]; ok {
			parts = append(parts, fmt.Sprintf("%s %.2f", k, v))
		}
	}
	return strings.Join(parts, ", ")
}

func statsLine(a *agent.Agent) string {
	st, err := a.Stats()
	if err != nil {
		return err.Error()
	}
	return fmt.Sprintf("%d frames, %d classified, %.0f ms per embedding, %d training runs",
		st.Camera.Frames, st.Sightings, st.EmbedMillis, st.TrainingRuns)
}
