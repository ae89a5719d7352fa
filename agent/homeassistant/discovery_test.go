package homeassistant

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var updateGolden = flag.Bool("update", false, "rewrite golden files")

func testDiscovery() *Discovery {
	return &Discovery{Prefix: "homeassistant", Topics: "whisker/porch/", Device: "porch", Version: "1.2.3", OffDelay: 120}
}

// requiredFields are the options Home Assistant's MQTT documentation marks
// required for each platform, plus what discovery needs for a device:
// unique_id (the device registry only works with it) and device
// identifiers.
var requiredFields = map[string][]string{
	"sensor":        {"state_topic"},
	"binary_sensor": {"state_topic"},
	"camera":        {"topic"},
}

func checkDiscoveryConfig(t *testing.T, m Message) map[string]any {
	t.Helper()
	// <prefix>/<component>/<node_id>/<object_id>/config, ids of [a-zA-Z0-9_-]
	parts := strings.Split(m.Topic, "/")
	if len(parts) != 5 || parts[0] != "homeassistant" || parts[4] != "config" {
		t.Fatalf("discovery topic %q is not <prefix>/<component>/<node_id>/<object_id>/config", m.Topic)
	}
	for _, id := range parts[2:4] {
		for _, r := range id {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
				t.Fatalf("discovery topic %q: %q has %q", m.Topic, id, r)
			}
		}
	}
	var cfg map[string]any
	if err := json.Unmarshal(m.Payload, &cfg); err != nil {
		t.Fatalf("%s: %v", m.Topic, err)
	}
	req, ok := requiredFields[parts[1]]
	if !ok {
		t.Fatalf("%s: unexpected component %q", m.Topic, parts[1])
	}
	for _, f := range append(req, "unique_id", "name", "availability_topic") {
		if s, _ := cfg[f].(string); s == "" {
			t.Errorf("%s: required field %q missing", m.Topic, f)
		}
	}
	dev, _ := cfg["device"].(map[string]any)
	if ids, _ := dev["identifiers"].([]any); len(ids) == 0 {
		t.Errorf("%s: device.identifiers missing", m.Topic)
	}
	return cfg
}

func TestDiscoveryMatchesGoldenFiles(t *testing.T) {
	d := testDiscovery()
	msgs := append(d.PetConfigs("Tigger"), d.CameraConfig())
	seenIDs := map[string]bool{}
	for _, m := range msgs {
		cfg := checkDiscoveryConfig(t, m)
		id := cfg["unique_id"].(string)
		if seenIDs[id] {
			t.Errorf("unique_id %q used twice", id)
		}
		seenIDs[id] = true
		parts := strings.Split(m.Topic, "/")
		golden := filepath.Join("testdata", parts[1]+"."+parts[3]+".json")
		var pretty bytes.Buffer
		json.Indent(&pretty, m.Payload, "", "  ")
		pretty.WriteString("\n")
		if *updateGolden {
			if err := os.WriteFile(golden, pretty.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatalf("%v (run go test -run Discovery ./agent/homeassistant -update)", err)
		}
		if !bytes.Equal(want, pretty.Bytes()) {
			t.Errorf("%s differs from %s:\n%s", m.Topic, golden, pretty.String())
		}
	}
	// The pet's entities read the topics the agent publishes.
	here := map[string]any{}
	json.Unmarshal(msgs[2].Payload, &here)
	if here["state_topic"] != d.PresentTopic("Tigger") || here["off_delay"] != float64(120) {
		t.Errorf("binary sensor %v", here)
	}
}

func TestRemovePetEmptiesEveryConfig(t *testing.T) {
	d := testDiscovery()
	configs := d.PetConfigs("Misty")
	removal := d.RemovePet("Misty")
	if len(removal) != len(configs)+1 {
		t.Fatalf("%d removals for %d configs", len(removal), len(configs))
	}
	for i, m := range configs {
		if removal[i].Topic != m.Topic || len(removal[i].Payload) != 0 {
			t.Errorf("removal %d: %q %q", i, removal[i].Topic, removal[i].Payload)
		}
	}
}

func TestPetSlugs(t *testing.T) {
	for _, l := range []string{"Tigger", "tigger", "Mr. Whiskers", "Ünïcødé cat", "a+b#c", "猫"} {
		s := PetSlug(l)
		for _, r := range s {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_') {
				t.Errorf("slug of %q is %q", l, s)
			}
		}
	}
	if PetSlug("Tigger") == PetSlug("tigger") {
		t.Error("labels differing in case share a slug")
	}
}
