// Package protocol is Whisker's MQTT wire contract: the topics, every
// payload the agent publishes or accepts, the strict decoders of requests,
// the rules for label names, and the request/answer client that tools
// (whisker label, whisker ctl, the fleet rollout) use to talk to an agent.
// It is pure Go, so a tool that only speaks MQTT builds without OpenCV or
// TensorFlow Lite.
package protocol

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/whiskercam/whisker/firmware/attest"
	"golang.org/x/text/unicode/norm"
)

// PayloadVersion is the version of the JSON payloads. Requests may carry
// "v"; a request with another version is refused.
const PayloadVersion = 1

// Topic names, under <prefix>/<device>/.
const (
	TopicStatus   = "status"
	TopicSighting = "sighting"
	TopicLabel    = "label"
	TopicCmd      = "cmd"
	TopicResult   = "result"
	// TopicSnapshot/<sighting id> carries a sighting's JPEG on request.
	TopicSnapshot = "snapshot"
	// TopicRevised carries sightings named again after the head changed
	// (a label, a retrain): the same id with the new name, Previous and
	// Revised set.
	TopicRevised = "sighting/revised"
)

// Unknown is the label of a sighting no head is sure about.
const Unknown = "unknown"

// OtherAnimals is the learner's class of other animals and scenes (its
// reference set), which no sample may be labelled with.
const OtherAnimals = "(other animals and scenes)"

// MaxLabelLen bounds label names (in characters).
const MaxLabelLen = 64

// MaxBatch bounds the sightings one label request names (sighting_ids).
const MaxBatch = 200

// LabelCount is how many samples a label has.
type LabelCount struct {
	Label   string `json:"label"`
	Samples int    `json:"samples"`
}

var idPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// ValidTopicPrefix says whether p can start topics: not empty, without
// wildcards, and without a leading or trailing '/'.
func ValidTopicPrefix(p string) bool {
	return p != "" && !strings.ContainsAny(p, "+#\x00") && !strings.HasPrefix(p, "/") && !strings.HasSuffix(p, "/")
}

// ValidID says whether s can name a device or a household: 1-64 letters,
// digits, '-' or '_' (it is part of MQTT topics).
func ValidID(s string) bool { return idPattern.MatchString(s) }

// LabelRequest labels the frame of an earlier sighting, several
// sightings at once, or an image.
type LabelRequest struct {
	V          int    `json:"v,omitempty"`
	RequestID  string `json:"request_id"`
	SightingID string `json:"sighting_id,omitempty"`
	// SightingIDs labels several sightings in one request (all stored, or
	// none).
	SightingIDs []string `json:"sighting_ids,omitempty"`
	Image       string   `json:"image,omitempty"` // base64 JPEG or PNG
	// Detect, with image, finds the pet with the detector and keeps its
	// crop (the whole image when no pet is found), as the camera does.
	Detect bool   `json:"detect,omitempty"`
	Label  string `json:"label"`

	imageBytes []byte
}

// CmdRequest is a command.
type CmdRequest struct {
	V         int    `json:"v,omitempty"`
	RequestID string `json:"request_id"`
	Cmd       string `json:"cmd"`
	// Arguments; which ones a command takes is in cmdArgs.
	Label      string   `json:"label,omitempty"`
	To         string   `json:"to,omitempty"`
	SampleID   uint64   `json:"sample_id,omitempty"`
	Value      *float64 `json:"value,omitempty"`
	SightingID string   `json:"sighting_id,omitempty"`
	URL        string   `json:"url,omitempty"`
	Path       string   `json:"path,omitempty"`
	SHA256     string   `json:"sha256,omitempty"`
}

// Commands the agent understands, with the arguments each one takes.
var cmdArgs = map[string][]string{
	"retrain":   nil,
	"labels":    nil,
	"stats":     nil,
	"capture":   nil,
	"rename":    {"label", "to"},
	"forget":    {"label", "sample_id"},
	"threshold": {"value"},
	"snapshot":  {"sighting_id"},
	"update":    {"url", "path", "sha256"},
	"pause":     nil,
	"resume":    nil,
	"move":      {"sample_id", "to"},
}

// commands lists the command names in a stable order, for messages.
var commands = []string{"retrain", "labels", "stats", "capture", "rename", "forget", "move", "threshold", "pause", "resume", "snapshot", "update"}

// Mutating reports whether a command changes state (and so is applied
// once per request_id).
func (r *CmdRequest) Mutating() bool {
	switch r.Cmd {
	case "rename", "forget", "move", "threshold", "pause", "resume":
		return true
	}
	return false
}

// Result answers every label and command message.
type Result struct {
	RequestID string `json:"request_id"`
	Ok        bool   `json:"ok"`
	Error     string `json:"error,omitempty"`
	// Topic says which request topic the answer is for: "label" or "cmd".
	Topic string `json:"topic"`
	Cmd   string `json:"cmd,omitempty"`
	// For labels:
	SampleID uint64 `json:"sample_id,omitempty"`
	// SampleIDs are the samples of a label request with sighting_ids, in
	// its order.
	SampleIDs []uint64 `json:"sample_ids,omitempty"`
	Label     string   `json:"label,omitempty"`
	Duplicate bool     `json:"duplicate,omitempty"`
	// For commands:
	To            string        `json:"to,omitempty"`
	Changed       int           `json:"changed,omitempty"`
	Threshold     float64       `json:"threshold,omitempty"`
	Paused        *bool         `json:"paused,omitempty"`
	Sighting      *Sighting     `json:"sighting,omitempty"`
	SightingID    string        `json:"sighting_id,omitempty"`
	SnapshotTopic string        `json:"snapshot_topic,omitempty"`
	Bytes         int           `json:"bytes,omitempty"`
	Update        *UpdateStatus `json:"update,omitempty"`
	// UpdateReport is the update step this answer tells of, signed by the
	// device's key (absent when the device has none): a rollout believes
	// success only from it.
	UpdateReport *attest.Envelope `json:"update_report,omitempty"`
	// For commands and labels (the label counts after storing):
	Labels []LabelCount `json:"labels,omitempty"`
	Train  *TrainResult `json:"train,omitempty"`
	Stats  *Stats       `json:"stats,omitempty"`
	// Disk is set while the sample store's disk is in trouble.
	Disk *DiskHealth `json:"disk,omitempty"`
	TS   string      `json:"ts"`
}

// TrainResult reports a training run.
type TrainResult struct {
	Samples    int      `json:"samples"`
	Classes    []string `json:"classes"`
	Iterations int      `json:"iterations"`
	Millis     float64  `json:"ms"`
	Note       string   `json:"note,omitempty"`
}

// Stats is the answer to the stats command.
type Stats struct {
	Device        string        `json:"device"`
	Version       string        `json:"version"`
	UptimeSeconds float64       `json:"uptime_s"`
	Backbone      string        `json:"backbone"`
	Runtime       string        `json:"runtime"`
	Labels        []LabelCount  `json:"labels"`
	Samples       int           `json:"samples"`
	Head          *HeadInfo     `json:"head"`
	Camera        CameraStats   `json:"camera"`
	Pipeline      PipelineStats `json:"pipeline"`
	Sightings     uint64        `json:"sightings"`
	EmbedMillis   float64       `json:"embed_ms_avg"`
	TrainingRuns  uint64        `json:"training_runs"`
	// Threshold is the one in use: set over MQTT or in the
	// configuration, else the head's calibrated one.
	Threshold float64 `json:"threshold"`
	// Paused is true while recognition is paused (the pause command).
	Paused bool `json:"paused,omitempty"`
	// Learner describes the head: kind (linear or hidden), its capacity
	// choice, calibration and imprinted labels (docs/learning.md).
	Learner json.RawMessage `json:"learner,omitempty"`
	// Unknown counts the sightings since the start that came out unknown,
	// by reason (Sighting.Why); Advice says in words what to label next.
	Unknown map[string]uint64 `json:"unknown,omitempty"`
	Advice  []string          `json:"advice,omitempty"`
	// Disk is the sample store's disk health.
	Disk *DiskHealth `json:"disk,omitempty"`
}

// HeadInfo describes the current head.
type HeadInfo struct {
	Classes []string `json:"classes"`
	Samples int      `json:"samples"`
	Trained string   `json:"trained"`
}

// CameraStats describes the camera.
type CameraStats struct {
	Up      bool    `json:"up"`
	State   string  `json:"state"`
	FPS     float64 `json:"fps"`
	Source  string  `json:"source"`
	Frames  uint64  `json:"frames"`
	Dropped uint64  `json:"dropped"`
	Reopens uint64  `json:"reopens"`
	Error   string  `json:"error,omitempty"`
}

// Sighting is published for every classified frame.
type Sighting struct {
	ID         string             `json:"id"`
	Label      string             `json:"label"`
	Confidence float64            `json:"confidence"`
	TS         string             `json:"ts"`
	Scores     map[string]float64 `json:"scores"`
	Frame      uint64             `json:"frame"`
	Box        *SightingBox       `json:"box,omitempty"` // the pet, when detection found it
	// Why says, for an unknown sighting, why no name was given: too
	// unsure, unlike every labelled pet, more like other animals and
	// scenes, no pet detected in the frame, or nothing labelled yet.
	Why string `json:"why,omitempty"`
	// Nearest is, for an unknown sighting, the labelled name it came
	// closest to: the one to label it with if it is that pet after all.
	Nearest string `json:"nearest,omitempty"`
	// On TopicRevised only: the name the sighting had before, and when it
	// was named again.
	Previous string `json:"previous,omitempty"`
	Revised  string `json:"revised,omitempty"`
}

// Status is the retained device status; "offline" is the broker's will.
type Status struct {
	State    string   `json:"state"`
	Device   string   `json:"device,omitempty"`
	Version  string   `json:"version,omitempty"`
	Backbone string   `json:"backbone,omitempty"`
	Labels   []string `json:"labels,omitempty"`
	Camera   string   `json:"camera,omitempty"`
	// Paused is true while recognition is paused (the pause command).
	Paused bool `json:"paused,omitempty"`
	// Firmware is what the device runs; Update, how the last or current
	// update is going.
	Firmware *FirmwareStatus `json:"firmware,omitempty"`
	Update   *UpdateStatus   `json:"update,omitempty"`
	// UpdateReport is the last step of an update, signed by the device's
	// key (absent when the device has none or no update ran yet).
	UpdateReport *attest.Envelope `json:"update_report,omitempty"`
	// Disk is the sample store's disk health.
	Disk *DiskHealth `json:"disk,omitempty"`
	TS   string      `json:"ts"`
}

// RequestError is a request the agent refuses, with the reason a person
// reads on the result topic.
type RequestError struct {
	RequestID string
	Reason    string
}

func (e *RequestError) Error() string { return e.Reason }

// Refuse is a RequestError with a formatted reason.
func Refuse(id, format string, a ...any) *RequestError {
	return &RequestError{RequestID: id, Reason: fmt.Sprintf(format, a...)}
}

// decodeStrict decodes one JSON object into v, refusing unknown fields,
// trailing data and non-UTF-8 text. It returns the request id when one can
// be read, so that even refusals can echo it.
func decodeStrict(payload []byte, maxPayload int, v any) (reqID string, err error) {
	// The size is checked before anything is parsed: an oversized payload
	// only has its first bytes searched for a request id to echo.
	if len(payload) > maxPayload {
		if m := requestIDPattern.FindSubmatch(payload[:min(len(payload), 4096)]); m != nil && utf8.Valid(m[1]) {
			reqID = string(m[1])
		}
		return reqID, Refuse(reqID, "payload is %d bytes; the limit is %d (mqtt.max_payload)", len(payload), maxPayload)
	}
	// Best effort: find the request id for the answer.
	var probe struct {
		RequestID any `json:"request_id"`
	}
	if json.Unmarshal(payload, &probe) == nil {
		if s, ok := probe.RequestID.(string); ok && utf8.ValidString(s) && len(s) <= 128 {
			reqID = s
		}
	} else if m := requestIDPattern.FindSubmatch(payload[:min(len(payload), 4096)]); m != nil && utf8.Valid(m[1]) {
		reqID = string(m[1]) // broken JSON: still echo an id that is plainly there
	}
	if len(bytes.TrimSpace(payload)) == 0 {
		return reqID, Refuse(reqID, "payload is empty; send a JSON object")
	}
	if !utf8.Valid(payload) {
		return reqID, Refuse(reqID, "payload is not valid UTF-8 text")
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var typeErr *json.UnmarshalTypeError
		var syntaxErr *json.SyntaxError
		switch {
		case errors.As(err, &typeErr) && typeErr.Field == "":
			return reqID, Refuse(reqID, "payload must be a JSON object, not %s", typeErr.Value)
		case errors.As(err, &typeErr):
			return reqID, Refuse(reqID, "field %q must be %s, not %s", typeErr.Field, typeErr.Type.Kind(), typeErr.Value)
		case errors.As(err, &syntaxErr):
			return reqID, Refuse(reqID, "payload is not valid JSON (%v at byte %d)", syntaxErr, syntaxErr.Offset)
		case errors.Is(err, io.ErrUnexpectedEOF):
			return reqID, Refuse(reqID, "payload is not valid JSON (it ends before the object is complete)")
		case strings.HasPrefix(err.Error(), "json: unknown field"):
			return reqID, Refuse(reqID, "payload has an %s; see docs/mqtt.md for the fields", strings.TrimPrefix(err.Error(), "json: "))
		}
		return reqID, Refuse(reqID, "payload is not a valid JSON object: %v", err)
	}
	if dec.More() {
		return reqID, Refuse(reqID, "payload has data after the JSON object")
	}
	return reqID, nil
}

var shaHex = regexp.MustCompile(`^[0-9a-f]{64}$`)

var requestIDPattern = regexp.MustCompile(`"request_id"\s*:\s*"([^"\\]{1,128})"`)

func checkCommon(v int, reqID string) error {
	if v != 0 && v != PayloadVersion {
		return Refuse(reqID, "payload version %d is not supported (this agent speaks %d)", v, PayloadVersion)
	}
	if reqID == "" {
		return Refuse(reqID, `request_id is missing: add a unique string such as "request_id":"r1" (a retry with the same id is applied once)`)
	}
	if len(reqID) > 128 || !printable(reqID) {
		return Refuse("", "request_id must be at most 128 printable characters")
	}
	return nil
}

// DecodeLabel parses and checks a label request.
func DecodeLabel(payload []byte, maxPayload int) (*LabelRequest, error) {
	var r LabelRequest
	id, err := decodeStrict(payload, maxPayload, &r)
	if err != nil {
		return nil, err
	}
	if err := checkCommon(r.V, r.RequestID); err != nil {
		return nil, err
	}
	r.Label = NormalizeLabel(r.Label)
	if err := CheckLabelName(r.Label); err != nil {
		return nil, Refuse(id, "%v", err)
	}
	given := 0
	for _, g := range []bool{r.SightingID != "", r.SightingIDs != nil, r.Image != ""} {
		if g {
			given++
		}
	}
	switch {
	case given == 0:
		return nil, Refuse(id, "give sighting_id (a sighting to label), sighting_ids (several) or image (a base64 JPEG or PNG)")
	case given > 1:
		return nil, Refuse(id, "give one of sighting_id, sighting_ids and image, not both")
	case r.Detect && r.Image == "":
		return nil, Refuse(id, "detect is for images: it finds the pet in an image")
	case r.SightingIDs != nil:
		if err := checkSightingIDs(r.SightingIDs); err != nil {
			return nil, Refuse(id, "sighting_ids: %v", err)
		}
	case r.SightingID != "":
		if !validSightingID(r.SightingID) {
			return nil, Refuse(id, "sighting_id must be at most 128 printable characters")
		}
	case r.Image != "":
		img, err := base64.StdEncoding.DecodeString(strings.TrimSpace(r.Image))
		if err != nil {
			return nil, Refuse(id, "image is not standard base64: %v", err)
		}
		if len(img) == 0 {
			return nil, Refuse(id, "image is empty")
		}
		r.imageBytes = img
		r.Image = ""
	}
	return &r, nil
}

func validSightingID(s string) bool {
	return s != "" && len(s) <= 128 && utf8.ValidString(s) && printable(s)
}

// checkSightingIDs checks the ids of a batch: 1 to MaxBatch distinct ids.
func checkSightingIDs(ids []string) error {
	if len(ids) == 0 {
		return errors.New("the list is empty")
	}
	if len(ids) > MaxBatch {
		return fmt.Errorf("%d ids; at most %d per request", len(ids), MaxBatch)
	}
	seen := make(map[string]bool, len(ids))
	for i, s := range ids {
		if !validSightingID(s) {
			return fmt.Errorf("id %d must be 1 to 128 printable characters", i+1)
		}
		if seen[s] {
			return fmt.Errorf("%q is named twice", s)
		}
		seen[s] = true
	}
	return nil
}

// ImageBytes returns the decoded image of a label request.
func (r *LabelRequest) ImageBytes() []byte { return r.imageBytes }

// DecodeCmd parses and checks a command.
func DecodeCmd(payload []byte, maxPayload int) (*CmdRequest, error) {
	var r CmdRequest
	id, err := decodeStrict(payload, maxPayload, &r)
	if err != nil {
		return nil, err
	}
	if err := checkCommon(r.V, r.RequestID); err != nil {
		return nil, err
	}
	allowed, known := cmdArgs[r.Cmd]
	if !known {
		if r.Cmd == "" {
			return nil, Refuse(id, "cmd is missing (one of %s)", strings.Join(commands, ", "))
		}
		return nil, Refuse(id, "unknown cmd %q (one of %s)", r.Cmd, strings.Join(commands, ", "))
	}
	given := map[string]bool{
		"label": r.Label != "", "to": r.To != "", "sample_id": r.SampleID != 0,
		"value": r.Value != nil, "sighting_id": r.SightingID != "",
		"url": r.URL != "", "path": r.Path != "", "sha256": r.SHA256 != "",
	}
	for _, arg := range []string{"label", "to", "sample_id", "value", "sighting_id", "url", "path", "sha256"} {
		if given[arg] && !slices.Contains(allowed, arg) {
			return nil, Refuse(id, "cmd %q takes no %s", r.Cmd, arg)
		}
	}
	r.Label, r.To = NormalizeLabel(r.Label), NormalizeLabel(r.To)
	switch r.Cmd {
	case "rename":
		if err := CheckLabelName(r.Label); err != nil {
			return nil, Refuse(id, "rename: %v", err)
		}
		if err := CheckLabelName(r.To); err != nil {
			return nil, Refuse(id, "rename: new name (to): %v", strings.TrimPrefix(err.Error(), "label "))
		}
		if r.Label == r.To {
			return nil, Refuse(id, "rename: label and to are the same")
		}
	case "forget":
		switch {
		case r.Label == "" && r.SampleID == 0:
			return nil, Refuse(id, "forget: give label (all its samples) or sample_id (one sample)")
		case r.Label != "" && r.SampleID != 0:
			return nil, Refuse(id, "forget: give label or sample_id, not both")
		case r.Label != "":
			if err := CheckLabelName(r.Label); err != nil {
				return nil, Refuse(id, "forget: %v", err)
			}
		}
	case "move":
		if r.SampleID == 0 {
			return nil, Refuse(id, "move: sample_id is missing (the sample to move)")
		}
		if err := CheckLabelName(r.To); err != nil {
			return nil, Refuse(id, "move: to (the new label): %v", err)
		}
	case "threshold":
		if r.Value == nil {
			return nil, Refuse(id, "threshold: value is missing (a probability between 0 and 1)")
		}
		if v := *r.Value; !(v >= 0 && v <= 1) {
			return nil, Refuse(id, "threshold: value %g is not between 0 and 1", v)
		}
	case "update":
		switch {
		case (r.URL == "") == (r.Path == ""):
			return nil, Refuse(id, "update: give url (http or https) or path (a file on the device), one of them")
		case r.URL != "" && !strings.HasPrefix(r.URL, "http://") && !strings.HasPrefix(r.URL, "https://"):
			return nil, Refuse(id, "update: url %q is not http:// or https://", r.URL)
		case !shaHex.MatchString(r.SHA256):
			return nil, Refuse(id, "update: sha256 (the bundle's expected hash, 64 hex digits) is missing or malformed")
		}
	case "snapshot":
		if r.SightingID == "" {
			return nil, Refuse(id, `snapshot: sighting_id is missing (a sighting id, or "latest")`)
		}
	}
	return &r, nil
}

// CheckLabelName checks a pet's name: 1-64 printable characters in NFKC
// form, no path separators, letters of one script (see labels.go), not the
// reserved "unknown" in any case or form. Decoders normalise names
// (NormalizeLabel) before checking them.
func CheckLabelName(l string) error {
	switch n := utf8.RuneCountInString(l); {
	case l == "":
		return errors.New("label is missing or empty")
	case n > MaxLabelLen:
		return fmt.Errorf("label is %d characters long; at most %d", n, MaxLabelLen)
	case !utf8.ValidString(l):
		return errors.New("label is not valid UTF-8")
	case strings.ContainsAny(l, `/\`):
		return fmt.Errorf("label %q contains a path separator", l)
	case !printable(l):
		return fmt.Errorf("label %q contains control characters", l)
	case strings.TrimSpace(l) != l:
		return fmt.Errorf("label %q starts or ends with spaces", l)
	case !norm.NFKC.IsNormalString(l):
		return fmt.Errorf("label %q is not in Unicode NFKC form (it is written %q)", l, NormalizeLabel(l))
	case LabelKey(l) == Unknown:
		return fmt.Errorf("label %q is reserved for sightings nobody is sure about", l)
	case LabelKey(l) == LabelKey(OtherAnimals):
		return fmt.Errorf("label %q is reserved for the other animals and scenes the camera knows from the start", l)
	case l == "." || l == "..":
		return fmt.Errorf("label %q is not a name", l)
	}
	return checkScripts(l)
}

func printable(s string) bool {
	for _, r := range s {
		if !unicode.IsPrint(r) && r != ' ' {
			return false
		}
	}
	return true
}

// Timestamp formats a time as payloads carry it (RFC 3339, UTC).
func Timestamp(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// SightingBox is where a detected pet is, in pixels of a frame of
// ImageW x ImageH, with the detector's class and score.
type SightingBox struct {
	X      int     `json:"x"`
	Y      int     `json:"y"`
	W      int     `json:"w"`
	H      int     `json:"h"`
	ImageW int     `json:"image_w"`
	ImageH int     `json:"image_h"`
	Class  string  `json:"class"`
	Score  float64 `json:"score"`
}

// PipelineStats counts what happened to frames.
type PipelineStats struct {
	Taken     uint64 `json:"taken"`     // frames taken from the mailbox
	Still     uint64 `json:"still"`     // skipped by the motion gate
	Paused    uint64 `json:"paused"`    // not recognised while recognition was paused
	Idle      uint64 `json:"idle"`      // classified although still (idle interval)
	Inferred  uint64 `json:"inferred"`  // frames through the backbone
	Crops     uint64 `json:"crops"`     // extra backbone runs on pet crops
	Pets      uint64 `json:"pets"`      // pets detected
	Sightings uint64 `json:"sightings"` // sightings handed on
	Dropped   uint64 `json:"dropped"`   // inferred frames dropped because finishing fell behind
	Errors    uint64 `json:"errors"`    // frames lost to an error
	PrepNanos uint64 `json:"prep_ns"`   // total preprocessing time
	InferNs   uint64 `json:"infer_ns"`  // total backbone time
	FinishNs  uint64 `json:"finish_ns"` // total finishing time
	MotionOn  bool   `json:"motion_on"` // the motion gate is on
	Detecting bool   `json:"detecting"` // pets are detected and cropped
}

// UpdateStatus is the update part of the status topic, and of the answers
// to an update command.
type UpdateStatus struct {
	// State on the status: downloading, verifying, re-embedding,
	// switching, probation, committed, rolled_back, failed. In answers
	// also started, and current (the device already runs that bundle).
	State    string  `json:"state"`
	Version  string  `json:"version,omitempty"`
	Bundle   string  `json:"bundle,omitempty"`
	Progress float64 `json:"progress,omitempty"`
	Error    string  `json:"error,omitempty"`
	At       string  `json:"at,omitempty"`
}

// FirmwareStatus says what the device runs.
type FirmwareStatus struct {
	Slot    string `json:"slot"` // "a", "b", or "" for the installed binary
	Version string `json:"version"`
	Bundle  string `json:"bundle,omitempty"`
	// Fallback is set while the device runs something other than the
	// slot that should run, because that slot did not verify.
	Fallback *Fallback `json:"fallback,omitempty"`
}

// Fallback says that boot did not run the slot that should run: which
// slot, what runs instead and why. It lasts until a new version is
// committed or the slot verifies again.
type Fallback struct {
	From    string `json:"from"`              // the slot that should run
	Version string `json:"version,omitempty"` // its version
	To      string `json:"to"`                // what runs instead: a slot, or "" for the installed binary
	Reason  string `json:"reason"`
	// UntrustedKeys are the keys the refused slot is signed with when none
	// of them is trusted any more.
	UntrustedKeys []string `json:"untrusted_keys,omitempty"`
	At            string   `json:"at,omitempty"`
}
