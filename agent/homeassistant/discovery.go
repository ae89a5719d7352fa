// Package homeassistant makes Whisker's pets appear in Home Assistant
// through MQTT discovery, and announces them: a pet is "here" once enough
// recent frames agree on it (learner.Announcer), with its last sighting,
// confidence and snapshot.
package homeassistant

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"unicode"

	"github.com/whiskercam/whisker/agent/protocol"
)

// Home Assistant MQTT discovery: each pet becomes a "last seen" sensor
// (with confidence and where as attributes), a confidence sensor and a
// "<pet> is here" binary sensor that turns itself off; the device also gets
// a camera entity showing the latest announced snapshot. Configs are
// retained; an empty retained config removes an entity.

// Discovery builds discovery configs and the topics the entities read.
type Discovery struct {
	Prefix   string // Home Assistant's discovery prefix
	Topics   string // this device's topic root: <topic_prefix>/<device>/
	Device   string
	Version  string
	OffDelay int // seconds
}

// Message is a topic and a payload to publish retained.
type Message struct {
	Topic   string
	Payload []byte
}

// PetSlug is a label's name in topics and ids: lower-case letters and
// digits, then a short hash of the exact label so that "Tigger" and
// "tigger" stay apart.
func PetSlug(label string) string {
	var b strings.Builder
	under := false
	for _, r := range strings.ToLower(label) {
		if r < 128 && (unicode.IsLetter(r) || unicode.IsDigit(r)) {
			b.WriteRune(r)
			under = false
		} else if !under && b.Len() > 0 {
			b.WriteByte('_')
			under = true
		}
		if b.Len() >= 32 {
			break
		}
	}
	sum := sha256.Sum256([]byte(label))
	return strings.TrimRight(b.String(), "_") + "_" + hex.EncodeToString(sum[:3])
}

// PetTopic is where a pet's state (last seen, confidence, where) is kept.
func (d *Discovery) PetTopic(label string) string { return d.Topics + "pet/" + PetSlug(label) }

// PresentTopic gets "ON" whenever the pet is announced.
func (d *Discovery) PresentTopic(label string) string { return d.PetTopic(label) + "/present" }

// SnapshotTopic carries the latest announced snapshot (a JPEG).
func (d *Discovery) SnapshotTopic() string { return d.Topics + protocol.TopicSnapshot + "/latest" }

func (d *Discovery) node() string { return "whisker_" + d.Device }

func (d *Discovery) configTopic(component, object string) string {
	return d.Prefix + "/" + component + "/" + d.node() + "/" + object + "/config"
}

func (d *Discovery) common(name, uniqueID string) map[string]any {
	return map[string]any{
		"name":                  name,
		"unique_id":             uniqueID,
		"availability_topic":    d.Topics + protocol.TopicStatus,
		"availability_template": "{{ value_json.state }}",
		"payload_available":     "online",
		"payload_not_available": "offline",
		"device": map[string]any{
			"identifiers":  []string{d.node()},
			"name":         "Whisker " + d.Device,
			"manufacturer": "Whisker",
			"model":        "Pet recognition agent",
			"sw_version":   d.Version,
		},
		"origin": map[string]any{"name": "Whisker", "sw_version": d.Version},
	}
}

// PetConfigs are the discovery configs of one pet's entities.
func (d *Discovery) PetConfigs(label string) []Message {
	slug := PetSlug(label)
	id := d.node() + "_" + slug
	lastSeen := d.common(label+" last seen", id+"_last_seen")
	lastSeen["state_topic"] = d.PetTopic(label)
	lastSeen["value_template"] = "{{ value_json.last_seen }}"
	lastSeen["json_attributes_topic"] = d.PetTopic(label)
	lastSeen["device_class"] = "timestamp"
	lastSeen["icon"] = "mdi:paw"

	conf := d.common(label+" confidence", id+"_confidence")
	conf["state_topic"] = d.PetTopic(label)
	conf["value_template"] = "{{ (value_json.confidence * 100) | round(0) }}"
	conf["unit_of_measurement"] = "%"
	conf["state_class"] = "measurement"
	conf["icon"] = "mdi:percent"

	here := d.common(label+" here", id+"_here")
	here["state_topic"] = d.PresentTopic(label)
	here["payload_on"] = "ON"
	here["payload_off"] = "OFF"
	here["off_delay"] = d.OffDelay
	here["device_class"] = "presence"

	return []Message{
		{d.configTopic("sensor", slug+"_last_seen"), mustJSON(lastSeen)},
		{d.configTopic("sensor", slug+"_confidence"), mustJSON(conf)},
		{d.configTopic("binary_sensor", slug+"_here"), mustJSON(here)},
	}
}

// RemovePet empties a pet's configs (removing its entities) and its
// retained state.
func (d *Discovery) RemovePet(label string) []Message {
	var out []Message
	for _, m := range d.PetConfigs(label) {
		out = append(out, Message{Topic: m.Topic})
	}
	return append(out, Message{Topic: d.PetTopic(label)})
}

// CameraConfig is the device's camera entity.
func (d *Discovery) CameraConfig() Message {
	cam := d.common("Whisker "+d.Device+" snapshot", d.node()+"_snapshot")
	cam["topic"] = d.SnapshotTopic()
	cam["icon"] = "mdi:cctv"
	return Message{d.configTopic("camera", "snapshot"), mustJSON(cam)}
}

// PetState is what a pet's state topic holds.
type PetState struct {
	Label      string  `json:"label"`
	LastSeen   string  `json:"last_seen"`
	Confidence float64 `json:"confidence"`
	Where      string  `json:"where"`
	Sighting   string  `json:"sighting"`
}
