package agent_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/whiskercam/whisker/agent/protocol"
	"github.com/whiskercam/whisker/internal/demo"
	"github.com/whiskercam/whisker/internal/testenv"
)

// TestInboxAndNamingAgain labels sightings the agent no longer holds in
// memory (from its inbox on disk, also after a restart, several at once),
// moves a sample, and checks that a label names the sightings already seen
// again, published on sighting/revised without waiting for new frames.
func TestInboxAndNamingAgain(t *testing.T) {
	mosq := testenv.StartMosquitto(t)
	cfg := testConfig(t, mosq.URL(), "teach")
	cfg.Learner.Recent = 3 // memory forgets at once: labels must come from the inbox
	cfg.Inbox.KeepEvery = 0
	cfg.Log.Level = "info"
	_, stop := startAgentStop(t, cfg)
	cl := newClient(t, mosq.URL(), "whisker/teach/")

	revised := make(chan protocol.Sighting, 256)
	sub := paho.NewClient(paho.NewClientOptions().AddBroker(mosq.URL()).SetClientID("teach-revised"))
	if tok := sub.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	t.Cleanup(func() { sub.Disconnect(100) })
	if tok := sub.Subscribe("whisker/teach/"+protocol.TopicRevised, 1, func(_ paho.Client, m paho.Message) {
		var s protocol.Sighting
		if err := json.Unmarshal(m.Payload(), &s); err != nil {
			t.Errorf("revised sighting is not JSON: %v", err)
			return
		}
		revised <- s
	}); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}

	// Sightings of every subject of the video, by what is on screen.
	seen := map[string][]protocol.Sighting{}
	deadline := time.After(120 * time.Second)
	for len(seen[demo.Cat]) < 4 || len(seen[demo.Dog]) < 2 || len(seen[demo.Empty]) < 3 {
		select {
		case s := <-cl.sightings:
			subject, _ := demo.Subject(int(s.Frame))
			seen[subject] = append(seen[subject], s)
		case <-deadline:
			t.Fatalf("not enough sightings within 120 s: %d cats, %d dogs, %d lawns", len(seen[demo.Cat]), len(seen[demo.Dog]), len(seen[demo.Empty]))
		}
	}
	// The first ones left memory long ago (learner.recent 3): they are
	// labelled from the inbox.
	dog, lawn := seen[demo.Dog][0], seen[demo.Empty]
	if r := cl.requestJSON(protocol.TopicLabel, map[string]string{"request_id": "t1", "sighting_id": dog.ID, "label": "Misty"}); !r.Ok {
		t.Fatalf("label a sighting no longer in memory: %+v", r)
	}
	batch := func(id string, ids []string, label string) protocol.Result {
		b, _ := json.Marshal(map[string]any{"request_id": id, "sighting_ids": ids, "label": label})
		return cl.request(protocol.TopicLabel, b, id)
	}
	r := batch("t2", []string{lawn[0].ID, lawn[1].ID}, "neither")
	if !r.Ok || len(r.SampleIDs) != 2 || r.SampleIDs[0] != r.SampleID {
		t.Fatalf("label two sightings at once: %+v", r)
	}
	again := batch("t2", []string{lawn[0].ID, lawn[1].ID}, "neither")
	if !again.Ok || !again.Duplicate || !slices.Equal(again.SampleIDs, r.SampleIDs) {
		t.Fatalf("the same batch again: %+v, want a duplicate of %v", again, r.SampleIDs)
	}
	if bad := batch("t3", []string{lawn[2].ID, "nope-1"}, "neither"); bad.Ok || !strings.Contains(bad.Error, "nope-1") {
		t.Fatalf("a batch with an unknown id: %+v", bad)
	}

	// With a head of Misty and neither, naming one cat sighting Tigger
	// names the other cat sightings already seen again.
	for len(revised) > 0 {
		<-revised
	}
	cat := seen[demo.Cat]
	if r := cl.requestJSON(protocol.TopicLabel, map[string]string{"request_id": "t4", "sighting_id": cat[0].ID, "label": "Tigger"}); !r.Ok {
		t.Fatalf("label the cat: %+v", r)
	}
	others := map[string]bool{}
	for _, s := range cat[1:] {
		others[s.ID] = true
	}
	deadline = time.After(30 * time.Second)
	for found := false; !found; {
		select {
		case s := <-revised:
			if s.Label == "Tigger" && others[s.ID] && s.Previous != "" && s.Previous != "Tigger" && s.Revised != "" {
				found = true
			}
		case <-deadline:
			t.Fatal("no earlier sighting of the cat was named Tigger again within 30 s of the label")
		}
	}

	// After a restart, a sighting of before is still found; a sample can be
	// moved to another label.
	stop()
	startAgent(t, cfg)
	cl.waitStatus("online")
	r = cl.requestJSON(protocol.TopicLabel, map[string]string{"request_id": "t5", "sighting_id": cat[1].ID, "label": "Tigger"})
	if !r.Ok {
		t.Fatalf("label a sighting of before the restart: %+v", r)
	}
	mv, _ := json.Marshal(map[string]any{"request_id": "t6", "cmd": "move", "sample_id": r.SampleID, "to": "Moppet"})
	m := cl.request(protocol.TopicCmd, mv, "t6")
	if !m.Ok || m.Label != "Tigger" || m.To != "Moppet" || m.Changed != 1 {
		t.Fatalf("move: %+v", m)
	}
	counts := map[string]int{}
	for _, c := range m.Labels {
		counts[c.Label] = c.Samples
	}
	if counts["Moppet"] != 1 || counts["Tigger"] != 1 || counts["neither"] != 2 || counts["Misty"] != 1 {
		t.Errorf("labels after the move: %v", fmt.Sprint(m.Labels))
	}
}
