package homeassistant

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/whiskercam/whisker/agent/homeassistant/hatest"
)

var updateGolden = flag.Bool("update", false, "rewrite golden files")

func testDiscovery() *Discovery {
	return &Discovery{Prefix: "homeassistant", Topics: "whisker/porch/", Device: "porch", Version: "1.2.3", OffDelay: 120,
		ConfigurationURL: "http://porch.local:9808/", SuggestedArea: "Garden"}
}

// golden compares JSON with testdata/name, indented; -update rewrites it.
func golden(t *testing.T, name string, payload []byte) {
	t.Helper()
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, payload, "", "  "); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	pretty.WriteString("\n")
	path := filepath.Join("testdata", name)
	if *updateGolden {
		if err := os.WriteFile(path, pretty.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test ./agent/homeassistant -update writes it)", err)
	}
	if !bytes.Equal(want, pretty.Bytes()) {
		t.Errorf("%s differs from the golden file (go test ./agent/homeassistant -update rewrites it):\n%s", path, pretty.String())
	}
}

func checkPayload(t *testing.T, payload []byte) map[string]any {
	t.Helper()
	cfg, errs := hatest.DevicePayload(payload)
	for _, err := range errs {
		t.Error(err)
	}
	return cfg
}

var twoPets = []PetRecord{{ID: "pet_0a1b2c3d", Label: "Tigger"}, {ID: LegacyID("Misty"), Label: "Misty"}}

func TestDeviceConfigMatchesSchemaAndGolden(t *testing.T) {
	d := testDiscovery()
	m := d.DeviceConfig(twoPets, nil)
	if m.Topic != "homeassistant/device/whisker_porch/config" || !m.Retained {
		t.Fatalf("topic %q retained %v", m.Topic, m.Retained)
	}
	cfg := checkPayload(t, m.Payload)
	golden(t, "device.json", m.Payload)
	cmps := cfg["components"].(map[string]any)
	if n := len(cmps); n != 9+2*5 {
		t.Errorf("%d components, want 9 of the device and 5 per pet", n)
	}
	origin := cfg["origin"].(map[string]any)
	if origin["support_url"] != SupportURL || origin["name"] != "Whisker" {
		t.Errorf("origin %v", origin)
	}
	dev := cfg["device"].(map[string]any)
	if dev["configuration_url"] != d.ConfigurationURL || dev["suggested_area"] != "Garden" {
		t.Errorf("device %v", dev)
	}
	// Without a page or an area, neither key is sent.
	d.ConfigurationURL, d.SuggestedArea = "", ""
	cfg = checkPayload(t, d.DeviceConfig(twoPets, nil).Payload)
	dev = cfg["device"].(map[string]any)
	if _, ok := dev["configuration_url"]; ok {
		t.Errorf("configuration_url without a page: %v", dev)
	}
	if _, ok := dev["suggested_area"]; ok {
		t.Errorf("suggested_area without one: %v", dev)
	}
}

func TestRemovalConfigMatchesSchemaAndGolden(t *testing.T) {
	d := testDiscovery()
	m := d.DeviceConfig(twoPets[:1], PetRemoved(twoPets[1].ID))
	cfg := checkPayload(t, m.Payload)
	golden(t, "device-removing.json", m.Payload)
	cmps := cfg["components"].(map[string]any)
	for _, r := range PetRemoved(twoPets[1].ID) {
		c, ok := cmps[r.Key].(map[string]any)
		if !ok || len(c) != 1 || c["platform"] != r.Platform {
			t.Errorf("removal of %s: %v", r.Key, cmps[r.Key])
		}
	}
	// A removed key that is live again is not removed.
	m = d.DeviceConfig(twoPets, PetRemoved(twoPets[1].ID))
	cmps = checkPayload(t, m.Payload)["components"].(map[string]any)
	if c := cmps[twoPets[1].ID+"_here"].(map[string]any); len(c) == 1 {
		t.Error("a live pet's component was sent as a removal")
	}
}

// The checks themselves must catch what Home Assistant rejects.
func TestSchemaCheckCatchesMistakes(t *testing.T) {
	d := testDiscovery()
	base := d.DeviceConfig(twoPets[:1], nil).Payload
	mutate := func(f func(cfg map[string]any)) []byte {
		var cfg map[string]any
		json.Unmarshal(base, &cfg)
		f(cfg)
		b, _ := json.Marshal(cfg)
		return b
	}
	comp := func(cfg map[string]any, key string) map[string]any {
		return cfg["components"].(map[string]any)[key].(map[string]any)
	}
	for _, c := range []struct {
		name string
		f    func(cfg map[string]any)
		want string
	}{
		{"no origin", func(cfg map[string]any) { delete(cfg, "origin") }, `required option "origin"`},
		{"origin without name", func(cfg map[string]any) { delete(cfg["origin"].(map[string]any), "name") }, `required option "name"`},
		{"device without identifiers", func(cfg map[string]any) { delete(cfg["device"].(map[string]any), "identifiers") }, "identifier"},
		{"no unique_id", func(cfg map[string]any) { delete(comp(cfg, "retrain"), "unique_id") }, "unique_id is required"},
		{"no command topic", func(cfg map[string]any) { delete(comp(cfg, "retrain"), "command_topic") }, `required option "command_topic"`},
		{"typo", func(cfg map[string]any) { comp(cfg, "retrain")["payload_pres"] = "PRESS" }, `"payload_pres" is not an option`},
		{"string for a number", func(cfg map[string]any) { comp(cfg, "threshold")["max"] = "1" }, "want a number"},
		{"entity id of another domain", func(cfg map[string]any) { comp(cfg, "retrain")["default_entity_id"] = "switch.porch_retrain" }, "not in the button domain"},
		{"bare object id", func(cfg map[string]any) { comp(cfg, "retrain")["default_entity_id"] = "porch_retrain" }, "not an entity id"},
		{"device name in the entity name", func(cfg map[string]any) { comp(cfg, "retrain")["name"] = "Whisker porch retrain" }, "starts with the device name"},
		{"wildcard command topic", func(cfg map[string]any) { comp(cfg, "retrain")["command_topic"] = "whisker/+/ha/retrain" }, "wildcard"},
		{"image with both topics", func(cfg map[string]any) {
			comp(cfg, "pet_0a1b2c3d_image")["url_topic"] = "x/y"
		}, "exactly one of image_topic and url_topic"},
		{"event without types", func(cfg map[string]any) { delete(comp(cfg, "pet_0a1b2c3d_event"), "event_types") }, `required option "event_types"`},
		{"sensor as config", func(cfg map[string]any) { comp(cfg, "samples")["entity_category"] = "config" }, "can only be diagnostic"},
		{"enum sensor without options", func(cfg map[string]any) { delete(comp(cfg, "camera_state"), "options") }, "needs options"},
		{"bad configuration_url", func(cfg map[string]any) { cfg["device"].(map[string]any)["configuration_url"] = "porch:9808" }, "not an http(s) URL"},
		{"unknown platform", func(cfg map[string]any) { comp(cfg, "retrain")["platform"] = "doorbell" }, "platform"},
		{"same unique_id twice", func(cfg map[string]any) { comp(cfg, "samples")["unique_id"] = comp(cfg, "accuracy")["unique_id"] }, "share unique_id"},
	} {
		_, errs := hatest.DevicePayload(mutate(c.f))
		if !slices.ContainsFunc(errs, func(err error) bool { return strings.Contains(err.Error(), c.want) }) {
			t.Errorf("%s: want an error with %q, got %v", c.name, c.want, errs)
		}
	}
}

// shownEntity is an entity as Home Assistant shows it: its friendly name
// (the device name, then the entity's name; null means the device name
// alone, and a missing name the device class) and its entity id.
type shownEntity struct{ name, id string }

func shown(t *testing.T, cfg map[string]any) map[string]shownEntity {
	t.Helper()
	devName := cfg["device"].(map[string]any)["name"].(string)
	out := map[string]shownEntity{}
	for key, v := range cfg["components"].(map[string]any) {
		c := v.(map[string]any)
		name, has := c["name"]
		var friendly string
		switch {
		case has && name == nil:
			friendly = devName
		case has:
			friendly = devName + " " + name.(string)
		default:
			dc, _ := c["device_class"].(string)
			if dc == "" {
				t.Fatalf("%s has neither a name nor a device class", key)
			}
			friendly = devName + " " + strings.ToUpper(dc[:1]) + dc[1:]
		}
		out[key] = shownEntity{friendly, c["default_entity_id"].(string)}
	}
	return out
}

// TestDocsShowTheEntities checks that docs/mqtt.md's entity table is what
// Home Assistant shows for the example device "porch" with the pet Tigger.
func TestDocsShowTheEntities(t *testing.T) {
	d := &Discovery{Prefix: "homeassistant", Topics: "whisker/porch/", Device: "porch", Version: "1.2.3", OffDelay: 120}
	cfg := checkPayload(t, d.DeviceConfig([]PetRecord{{ID: "pet_0a1b2c3d", Label: "Tigger"}}, nil).Payload)
	docs, err := os.ReadFile(filepath.Join("..", "..", "docs", "mqtt.md"))
	if err != nil {
		t.Fatal(err)
	}
	for key, e := range shown(t, cfg) {
		c := cfg["components"].(map[string]any)[key].(map[string]any)
		row := fmt.Sprintf("| %s | `%s` |", e.name, e.id)
		if !bytes.Contains(docs, []byte(row)) {
			t.Errorf("docs/mqtt.md lacks the row for %s (%s) starting %q", key, c["platform"], row)
		}
	}
}

func TestEntityIDsAreUniqueAndFollowTheLabel(t *testing.T) {
	d := testDiscovery()
	pets := []PetRecord{{ID: "pet_00000001", Label: "Tigger"}, {ID: "pet_00000002", Label: "tigger"}, {ID: "pet_00000003", Label: "猫"},
		{ID: "pet_00000004", Label: "Zoë the cat"}}
	cfg := checkPayload(t, d.DeviceConfig(pets, nil).Payload)
	ids := map[string]string{}
	for key, e := range shown(t, cfg) {
		if other, dup := ids[e.id]; dup {
			t.Errorf("%s and %s share entity id %s", key, other, e.id)
		}
		ids[e.id] = key
	}
	for _, want := range []string{"sensor.tigger_pet_00000001_last_seen", "sensor.tigger_pet_00000002_last_seen",
		"sensor.pet_00000003_last_seen", "event.zoe_the_cat", "image.zoe_the_cat_last_sighting"} {
		if _, ok := ids[want]; !ok {
			t.Errorf("no entity %s among %v", want, ids)
		}
	}
}

func TestEntitySlug(t *testing.T) {
	for in, want := range map[string]string{
		"Tigger": "tigger", "Mr. Whiskers": "mr_whiskers", "Zoë": "zoe", "Straße": "strasse", "  a--b  ": "a_b",
		"Ærø": "aero", "猫": "", "Tigger 2": "tigger_2", strings.Repeat("x", 80): strings.Repeat("x", 48),
	} {
		if got := EntitySlug(in); got != want {
			t.Errorf("EntitySlug(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestLegacyIDsAreTheOldSlugs(t *testing.T) {
	// The ids an earlier version made its unique_ids and topics of.
	for label, want := range map[string]string{"Tigger": "tigger_49df5f"} {
		if got := LegacyID(label); got != want {
			t.Errorf("LegacyID(%q) = %q, want %q", label, got, want)
		}
	}
	if LegacyID("Tigger") == LegacyID("tigger") {
		t.Error("labels differing in case share a legacy id")
	}
	for _, l := range []string{"Mr. Whiskers", "Ünïcødé cat", "a+b#c", "猫"} {
		if id := LegacyID(l); !validPetID(id) || !hatest.ValidObjectID(id) {
			t.Errorf("legacy id of %q is %q", l, id)
		}
	}
}

func TestReconcile(t *testing.T) {
	n := 0
	newID := func() string { n++; return fmt.Sprintf("pet_new%d", n) }
	rec := func(id, label string, pending bool) PetRecord {
		return PetRecord{ID: id, Label: label, Pending: pending}
	}
	for _, c := range []struct {
		name        string
		records     []PetRecord
		labels      []string
		want        []PetRecord
		wantDropped []string
	}{
		{"new labels get ids", nil, []string{"Tigger", "Misty"},
			[]PetRecord{rec("pet_new1", "Misty", false), rec("pet_new2", "Tigger", false)}, nil},
		{"kept", []PetRecord{rec("pet_a", "Tigger", false)}, []string{"Tigger"},
			[]PetRecord{rec("pet_a", "Tigger", false)}, nil},
		{"forgotten", []PetRecord{rec("pet_a", "Tigger", false), rec("pet_b", "Misty", false)}, []string{"Tigger"},
			[]PetRecord{rec("pet_a", "Tigger", false)}, []string{"pet_b"}},
		{"rename committed before a crash", []PetRecord{rec("pet_a", "Tiger", false), rec("pet_a", "Tigger", true)}, []string{"Tigger"},
			[]PetRecord{rec("pet_a", "Tigger", false)}, nil},
		{"rename not committed before a crash", []PetRecord{rec("pet_a", "Tiger", false), rec("pet_a", "Tigger", true)}, []string{"Tiger"},
			[]PetRecord{rec("pet_a", "Tiger", false)}, nil},
		{"a stale pending record never steals an id", []PetRecord{rec("pet_a", "Tiger", false), rec("pet_a", "Tigger", true)},
			[]string{"Tiger", "Tigger"}, []PetRecord{rec("pet_a", "Tiger", false), rec("pet_new3", "Tigger", false)}, nil},
		{"merged away", []PetRecord{rec("pet_a", "Tiger", false), rec("pet_b", "Tigger", false)}, []string{"Tigger"},
			[]PetRecord{rec("pet_b", "Tigger", false)}, []string{"pet_a"}},
		{"a damaged record is replaced", []PetRecord{rec("../x", "Tigger", false)}, []string{"Tigger"},
			[]PetRecord{rec("pet_new4", "Tigger", false)}, nil},
		{"two records for one label", []PetRecord{rec("pet_a", "Tigger", false), rec("pet_b", "Tigger", false)}, []string{"Tigger"},
			[]PetRecord{rec("pet_a", "Tigger", false)}, []string{"pet_b"}},
	} {
		got, dropped := reconcile(c.records, c.labels, newID)
		if !slices.Equal(got, c.want) || !slices.Equal(dropped, c.wantDropped) {
			t.Errorf("%s: got %v dropped %v, want %v dropped %v", c.name, got, dropped, c.want, c.wantDropped)
		}
	}
}
