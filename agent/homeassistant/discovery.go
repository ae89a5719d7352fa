// Package homeassistant makes Whisker's camera and pets appear in Home
// Assistant through MQTT discovery, and announces the pets: a pet is
// "here" once enough recent frames agree on it (learner.Announcer), with
// its last sighting, confidence, picture and an arrived/left event. It
// also turns Home Assistant's commands (retrain, threshold, recognition
// on or off) into the agent's own commands.
package homeassistant

import (
	"encoding/json"

	"github.com/whiskercam/whisker/agent/protocol"
)

// Home Assistant's device-based discovery: one retained config per
// camera on <prefix>/device/whisker_<device>/config lists every
// component (entity) of the device, with the device and the origin given
// once. Entity names never repeat the device name (Home Assistant puts
// the device name in front itself); each unique_id is made of the device
// and a pet id that survives renames; each default_entity_id is the
// entity id docs/mqtt.md promises.

// SupportURL is where Whisker's users find help (the origin's
// support_url).
const SupportURL = "https://github.com/whiskercam/whisker"

// Discovery builds discovery configs and the topics the entities read.
type Discovery struct {
	Prefix  string // Home Assistant's discovery prefix
	Topics  string // this device's topic root: <topic_prefix>/<device>/
	Device  string
	Version string
	// OffDelay turns "<pet> here" off after this many seconds unseen.
	OffDelay int
	// ConfigurationURL is the agent's web page ("" for none);
	// SuggestedArea the area offered for a device not in one yet.
	ConfigurationURL string
	SuggestedArea    string
}

// Message is a topic and a payload to publish.
type Message struct {
	Topic    string
	Payload  []byte
	Retained bool
}

// Topics of the device's Home Assistant state and commands, under
// <topic_prefix>/<device>/.
const (
	// TopicState carries the device-level state (DeviceState, retained).
	TopicState = "ha/state"
	// TopicFirmware carries the firmware update entity's state
	// (FirmwareState, retained).
	TopicFirmware = "ha/firmware"
	// Commands from Home Assistant.
	TopicRetrain     = "ha/retrain"
	TopicThreshold   = "ha/threshold"
	TopicRecognition = "ha/recognition"
)

func (d *Discovery) node() string { return "whisker_" + d.Device }

// ConfigTopic is the device's discovery topic.
func (d *Discovery) ConfigTopic() string { return d.Prefix + "/device/" + d.node() + "/config" }

// BirthTopic is where Home Assistant announces that it (re)started.
func (d *Discovery) BirthTopic() string { return d.Prefix + "/status" }

// PetTopic is where a pet's state (last seen, confidence, where) is kept.
func (d *Discovery) PetTopic(id string) string { return d.Topics + "pet/" + id }

// PresentTopic gets "ON" whenever the pet is announced, "OFF" when it
// leaves.
func (d *Discovery) PresentTopic(id string) string { return d.PetTopic(id) + "/present" }

// EventTopic gets an event when the pet arrives or leaves (not retained:
// Home Assistant ignores retained events).
func (d *Discovery) EventTopic(id string) string { return d.PetTopic(id) + "/event" }

// ImageTopic keeps a picture (JPEG) of the pet's last announced sighting.
func (d *Discovery) ImageTopic(id string) string { return d.PetTopic(id) + "/image" }

// SnapshotTopic carries the latest announced snapshot (a JPEG).
func (d *Discovery) SnapshotTopic() string { return d.Topics + protocol.TopicSnapshot + "/latest" }

// Topic is the full name of one of the device's topics.
func (d *Discovery) Topic(name string) string { return d.Topics + name }

func (d *Discovery) deviceSlug() string {
	if s := EntitySlug(d.Device); s != "" {
		return "whisker_" + s
	}
	return "whisker"
}

func (d *Discovery) device() map[string]any {
	dev := map[string]any{
		"identifiers":  []string{d.node()},
		"name":         "Whisker " + d.Device,
		"manufacturer": "Whisker",
		"model":        "Pet recognition agent",
		"sw_version":   d.Version,
	}
	if d.ConfigurationURL != "" {
		dev["configuration_url"] = d.ConfigurationURL
	}
	if d.SuggestedArea != "" {
		dev["suggested_area"] = d.SuggestedArea
	}
	return dev
}

func (d *Discovery) origin() map[string]any {
	return map[string]any{"name": "Whisker", "sw_version": d.Version, "support_url": SupportURL}
}

// component starts a component's config: its platform, unique_id and
// default entity id, and availability from the agent's status.
func (d *Discovery) component(platform, key, objectID string, name any) map[string]any {
	c := map[string]any{
		"platform":              platform,
		"unique_id":             d.node() + "_" + key,
		"default_entity_id":     platform + "." + objectID,
		"availability_topic":    d.Topics + protocol.TopicStatus,
		"availability_template": "{{ value_json.state }}",
		"payload_available":     "online",
		"payload_not_available": "offline",
	}
	if name != nil {
		c["name"] = name
	}
	return c
}

// Pet components, by key suffix: a pet with id P has components P_<suffix>.
const (
	petLastSeen   = "last_seen"
	petConfidence = "confidence"
	petHere       = "here"
	petEvent      = "event"
	petImage      = "image"
)

// petComponents are the components of one pet; slug is the object part
// of its default entity ids.
func (d *Discovery) petComponents(p PetRecord, slug string) map[string]map[string]any {
	key := func(suffix string) string { return p.ID + "_" + suffix }
	state := d.PetTopic(p.ID)

	lastSeen := d.component("sensor", key(petLastSeen), slug+"_last_seen", p.Label+" last seen")
	lastSeen["state_topic"] = state
	lastSeen["value_template"] = "{{ value_json.last_seen }}"
	lastSeen["json_attributes_topic"] = state
	lastSeen["device_class"] = "timestamp"
	lastSeen["icon"] = "mdi:paw"

	conf := d.component("sensor", key(petConfidence), slug+"_confidence", p.Label+" confidence")
	conf["state_topic"] = state
	conf["value_template"] = "{{ (value_json.confidence * 100) | round(0) }}"
	conf["unit_of_measurement"] = "%"
	conf["state_class"] = "measurement"
	conf["suggested_display_precision"] = 0
	conf["icon"] = "mdi:percent"

	here := d.component("binary_sensor", key(petHere), slug+"_here", p.Label+" here")
	here["state_topic"] = d.PresentTopic(p.ID)
	here["payload_on"] = "ON"
	here["payload_off"] = "OFF"
	here["off_delay"] = d.OffDelay
	here["device_class"] = "presence"

	event := d.component("event", key(petEvent), slug, p.Label)
	event["state_topic"] = d.EventTopic(p.ID)
	event["event_types"] = []string{EventArrived, EventLeft}
	event["icon"] = "mdi:paw"

	image := d.component("image", key(petImage), slug+"_last_sighting", p.Label+" last sighting")
	image["image_topic"] = d.ImageTopic(p.ID)
	image["content_type"] = "image/jpeg"

	return map[string]map[string]any{
		key(petLastSeen): lastSeen, key(petConfidence): conf, key(petHere): here,
		key(petEvent): event, key(petImage): image,
	}
}

// deviceComponents are the camera's own entities.
func (d *Discovery) deviceComponents() map[string]map[string]any {
	dev := d.deviceSlug()
	state := d.Topic(TopicState)

	// The latest announced snapshot is the device's main feature: no
	// name of its own, so Home Assistant shows the device name.
	snapshot := d.component("camera", "snapshot", dev, nil)
	snapshot["name"] = nil
	snapshot["topic"] = d.SnapshotTopic()
	snapshot["icon"] = "mdi:cctv"

	firmware := d.component("update", "firmware", dev+"_firmware", "Firmware")
	firmware["state_topic"] = d.Topic(TopicFirmware)
	firmware["device_class"] = "firmware"
	firmware["title"] = "Whisker"
	firmware["entity_category"] = "config"

	retrain := d.component("button", "retrain", dev+"_retrain", "Retrain")
	retrain["command_topic"] = d.Topic(TopicRetrain)
	retrain["payload_press"] = PayloadPress
	retrain["entity_category"] = "config"
	retrain["icon"] = "mdi:school"

	threshold := d.component("number", "threshold", dev+"_threshold", "Threshold")
	threshold["command_topic"] = d.Topic(TopicThreshold)
	threshold["state_topic"] = state
	threshold["value_template"] = "{{ value_json.threshold }}"
	threshold["min"] = 0
	threshold["max"] = 1
	threshold["step"] = 0.01
	threshold["mode"] = "box"
	threshold["entity_category"] = "config"
	threshold["icon"] = "mdi:tune-vertical"

	recognition := d.component("switch", "recognition", dev+"_recognition", "Recognition")
	recognition["command_topic"] = d.Topic(TopicRecognition)
	recognition["state_topic"] = state
	recognition["value_template"] = "{{ value_json.recognition }}"
	recognition["payload_on"] = PayloadOn
	recognition["payload_off"] = PayloadOff
	recognition["entity_category"] = "config"
	recognition["icon"] = "mdi:eye"

	// Connectivity reads the status itself and has no availability, so
	// that an agent that is away shows as disconnected, not unavailable.
	// Without a name it is named after its device class.
	connectivity := d.component("binary_sensor", "connectivity", dev+"_connectivity", nil)
	for _, k := range []string{"availability_topic", "availability_template", "payload_available", "payload_not_available"} {
		delete(connectivity, k)
	}
	connectivity["state_topic"] = d.Topics + protocol.TopicStatus
	connectivity["value_template"] = "{{ value_json.state }}"
	connectivity["payload_on"] = "online"
	connectivity["payload_off"] = "offline"
	connectivity["device_class"] = "connectivity"
	connectivity["entity_category"] = "diagnostic"

	camera := d.component("sensor", "camera_state", dev+"_camera", "Camera")
	camera["state_topic"] = state
	camera["value_template"] = "{{ value_json.camera }}"
	camera["device_class"] = "enum"
	camera["options"] = CameraStates
	camera["entity_category"] = "diagnostic"
	camera["icon"] = "mdi:video"

	samples := d.component("sensor", "samples", dev+"_samples", "Samples")
	samples["state_topic"] = state
	samples["value_template"] = "{{ value_json.samples }}"
	samples["state_class"] = "measurement"
	samples["entity_category"] = "diagnostic"
	samples["icon"] = "mdi:database"

	accuracy := d.component("sensor", "accuracy", dev+"_accuracy", "Cross-validated accuracy")
	accuracy["state_topic"] = state
	accuracy["value_template"] = "{{ value_json.accuracy }}"
	accuracy["unit_of_measurement"] = "%"
	accuracy["state_class"] = "measurement"
	accuracy["suggested_display_precision"] = 1
	accuracy["entity_category"] = "diagnostic"
	accuracy["icon"] = "mdi:check-decagram"

	return map[string]map[string]any{
		"snapshot": snapshot, "firmware": firmware, "retrain": retrain, "threshold": threshold,
		"recognition": recognition, "connectivity": connectivity, "camera_state": camera,
		"samples": samples, "accuracy": accuracy,
	}
}

// CameraStates are the values of the camera sensor (camera.State*).
var CameraStates = []string{"starting", "up", "reopening", "ended", "stopped"}

// Event types of a pet's event entity.
const (
	EventArrived = "arrived"
	EventLeft    = "left"
)

// Command payloads Home Assistant sends.
const (
	PayloadPress = "PRESS"
	PayloadOn    = "ON"
	PayloadOff   = "OFF"
)

// DeviceConfig is the device's discovery config listing the components
// of the device and of each pet, and, to remove them, the components in
// removed as a platform alone.
func (d *Discovery) DeviceConfig(pets []PetRecord, removed []Removed) Message {
	cmps := map[string]any{}
	for k, c := range d.deviceComponents() {
		cmps[k] = c
	}
	slug := slugs(pets)
	for _, p := range pets {
		for k, c := range d.petComponents(p, slug[p.ID]) {
			cmps[k] = c
		}
	}
	for _, r := range removed {
		if _, live := cmps[r.Key]; !live {
			cmps[r.Key] = map[string]any{"platform": r.Platform}
		}
	}
	cfg := map[string]any{
		"device":     d.device(),
		"origin":     d.origin(),
		"components": cmps,
		"qos":        1,
	}
	return Message{Topic: d.ConfigTopic(), Payload: mustJSON(cfg), Retained: true}
}

// PetRemoved lists the components of a pet, to remove them.
func PetRemoved(id string) []Removed {
	return []Removed{
		{id + "_" + petLastSeen, "sensor"}, {id + "_" + petConfidence, "sensor"}, {id + "_" + petHere, "binary_sensor"},
		{id + "_" + petEvent, "event"}, {id + "_" + petImage, "image"},
	}
}

// ClearPet empties a forgotten pet's retained topics.
func (d *Discovery) ClearPet(id string) []Message {
	return []Message{
		{Topic: d.PetTopic(id), Retained: true},
		{Topic: d.ImageTopic(id), Retained: true},
	}
}

// Earlier versions published one retained config per entity, on
// <prefix>/<component>/whisker_<device>/<object>/config. Their object ids
// are the keys of the same components in the device config, so Home
// Assistant's migration keeps every entity: each old topic gets
// {"migrate_discovery": true}, then the device config is published, then
// the old topics are emptied.

func (d *Discovery) legacyTopic(component, object string) string {
	return d.Prefix + "/" + component + "/" + d.node() + "/" + object + "/config"
}

// LegacyTopics are the per-entity config topics an earlier version used
// for the camera and the given pets (legacy ids, LegacyID).
func (d *Discovery) LegacyTopics(ids []string) []string {
	topics := []string{d.legacyTopic("camera", "snapshot")}
	for _, id := range ids {
		topics = append(topics,
			d.legacyTopic("sensor", id+"_"+petLastSeen),
			d.legacyTopic("sensor", id+"_"+petConfidence),
			d.legacyTopic("binary_sensor", id+"_"+petHere))
	}
	return topics
}

// MigratePayload hands an old per-entity config over to the device config.
var MigratePayload = []byte(`{"migrate_discovery":true}`)

// PetState is what a pet's state topic holds.
type PetState struct {
	Label      string  `json:"label"`
	LastSeen   string  `json:"last_seen"`
	Confidence float64 `json:"confidence"`
	Where      string  `json:"where"`
	Sighting   string  `json:"sighting"`
}

// PetEvent is what a pet's event topic gets when it arrives or leaves.
type PetEvent struct {
	EventType  string  `json:"event_type"`
	Label      string  `json:"label"`
	Where      string  `json:"where"`
	Confidence float64 `json:"confidence,omitempty"`
	Sighting   string  `json:"sighting,omitempty"`
}

// DeviceState is what the device's state topic holds: the switch, the
// threshold and the diagnostic sensors read it.
type DeviceState struct {
	// Recognition is ON while frames are recognised, OFF while paused.
	Recognition string `json:"recognition"`
	// Threshold is the probability setting below which a sighting is
	// unknown (0: the head's calibrated threshold).
	Threshold float64 `json:"threshold"`
	Camera    string  `json:"camera"`
	Samples   int     `json:"samples"`
	// Accuracy is the head's cross-validated accuracy in percent; null
	// (unknown in Home Assistant) until it has been measured.
	Accuracy *float64 `json:"accuracy"`
}

// FirmwareState is the firmware update entity's state, in the JSON
// Home Assistant's MQTT update platform reads.
type FirmwareState struct {
	InstalledVersion string `json:"installed_version"`
	LatestVersion    string `json:"latest_version"`
	InProgress       bool   `json:"in_progress"`
	// UpdatePercentage is null when no progress is known.
	UpdatePercentage *float64 `json:"update_percentage"`
	ReleaseSummary   string   `json:"release_summary,omitempty"`
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only maps and structs of strings, numbers and bools are marshalled here
	}
	return b
}
