package agent

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/whiskercam/whisker/learner"
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
)

// Unknown is the label of a sighting no head is sure about.
const Unknown = "unknown"

// MaxLabelLen bounds label names (in characters).
const MaxLabelLen = 64

// LabelRequest labels the frame of an earlier sighting, or an image.
type LabelRequest struct {
	V          int    `json:"v,omitempty"`
	RequestID  string `json:"request_id"`
	SightingID string `json:"sighting_id,omitempty"`
	Image      string `json:"image,omitempty"` // base64 JPEG or PNG
	Label      string `json:"label"`

	imageBytes []byte
}

// CmdRequest is a command.
type CmdRequest struct {
	V         int    `json:"v,omitempty"`
	RequestID string `json:"request_id"`
	Cmd       string `json:"cmd"`
}

// Commands the agent understands.
var commands = []string{"retrain", "labels", "stats"}

// Result answers every label and command message.
type Result struct {
	RequestID string `json:"request_id"`
	Ok        bool   `json:"ok"`
	Error     string `json:"error,omitempty"`
	// Topic says which request topic the answer is for: "label" or "cmd".
	Topic string `json:"topic"`
	Cmd   string `json:"cmd,omitempty"`
	// For labels:
	SampleID  uint64 `json:"sample_id,omitempty"`
	Label     string `json:"label,omitempty"`
	Duplicate bool   `json:"duplicate,omitempty"`
	// For commands (and labels, the label counts after storing):
	Labels []learner.LabelCount `json:"labels,omitempty"`
	Train  *TrainResult         `json:"train,omitempty"`
	Stats  *Stats               `json:"stats,omitempty"`
	TS     string               `json:"ts"`
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
	Device        string               `json:"device"`
	Version       string               `json:"version"`
	UptimeSeconds float64              `json:"uptime_s"`
	Backbone      string               `json:"backbone"`
	Runtime       string               `json:"runtime"`
	Labels        []learner.LabelCount `json:"labels"`
	Samples       int                  `json:"samples"`
	Head          *HeadInfo            `json:"head"`
	Camera        CameraStats          `json:"camera"`
	Sightings     uint64               `json:"sightings"`
	EmbedMillis   float64              `json:"embed_ms_avg"`
	TrainingRuns  uint64               `json:"training_runs"`
	Threshold     float64              `json:"threshold"`
}

// HeadInfo describes the current head.
type HeadInfo struct {
	Classes []string `json:"classes"`
	Samples int      `json:"samples"`
	Trained string   `json:"trained"`
}

// CameraStats describes the camera.
type CameraStats struct {
	Up      bool   `json:"up"`
	Source  string `json:"source"`
	Frames  uint64 `json:"frames"`
	Dropped uint64 `json:"dropped"`
	Reopens uint64 `json:"reopens"`
	Error   string `json:"error,omitempty"`
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
}

// Status is the retained device status; "offline" is the broker's will.
type Status struct {
	State    string   `json:"state"`
	Device   string   `json:"device,omitempty"`
	Version  string   `json:"version,omitempty"`
	Backbone string   `json:"backbone,omitempty"`
	Labels   []string `json:"labels,omitempty"`
	Camera   string   `json:"camera,omitempty"`
	TS       string   `json:"ts"`
}

// RequestError is a request the agent refuses, with the reason a person
// reads on the result topic.
type RequestError struct {
	RequestID string
	Reason    string
}

func (e *RequestError) Error() string { return e.Reason }

func refuse(id, format string, a ...any) *RequestError {
	return &RequestError{RequestID: id, Reason: fmt.Sprintf(format, a...)}
}

// decodeStrict decodes one JSON object into v, refusing unknown fields,
// trailing data and non-UTF-8 text. It returns the request id when one can
// be read, so that even refusals can echo it.
func decodeStrict(payload []byte, maxPayload int, v any) (reqID string, err error) {
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
	if len(payload) > maxPayload {
		return reqID, refuse(reqID, "payload is %d bytes; the limit is %d (mqtt.max_payload)", len(payload), maxPayload)
	}
	if len(bytes.TrimSpace(payload)) == 0 {
		return reqID, refuse(reqID, "payload is empty; send a JSON object")
	}
	if !utf8.Valid(payload) {
		return reqID, refuse(reqID, "payload is not valid UTF-8 text")
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var typeErr *json.UnmarshalTypeError
		var syntaxErr *json.SyntaxError
		switch {
		case errors.As(err, &typeErr) && typeErr.Field == "":
			return reqID, refuse(reqID, "payload must be a JSON object, not %s", typeErr.Value)
		case errors.As(err, &typeErr):
			return reqID, refuse(reqID, "field %q must be %s, not %s", typeErr.Field, typeErr.Type.Kind(), typeErr.Value)
		case errors.As(err, &syntaxErr):
			return reqID, refuse(reqID, "payload is not valid JSON (%v at byte %d)", syntaxErr, syntaxErr.Offset)
		case errors.Is(err, io.ErrUnexpectedEOF):
			return reqID, refuse(reqID, "payload is not valid JSON (it ends before the object is complete)")
		case strings.HasPrefix(err.Error(), "json: unknown field"):
			return reqID, refuse(reqID, "payload has an %s; see docs/mqtt.md for the fields", strings.TrimPrefix(err.Error(), "json: "))
		}
		return reqID, refuse(reqID, "payload is not a valid JSON object: %v", err)
	}
	if dec.More() {
		return reqID, refuse(reqID, "payload has data after the JSON object")
	}
	return reqID, nil
}

var requestIDPattern = regexp.MustCompile(`"request_id"\s*:\s*"([^"\\]{1,128})"`)

func checkCommon(v int, reqID string) error {
	if v != 0 && v != PayloadVersion {
		return refuse(reqID, "payload version %d is not supported (this agent speaks %d)", v, PayloadVersion)
	}
	if reqID == "" {
		return refuse(reqID, `request_id is missing: add a unique string such as "request_id":"r1" (a retry with the same id is applied once)`)
	}
	if len(reqID) > 128 || !printable(reqID) {
		return refuse("", "request_id must be at most 128 printable characters")
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
	if err := CheckLabelName(r.Label); err != nil {
		return nil, refuse(id, "%v", err)
	}
	switch {
	case r.SightingID == "" && r.Image == "":
		return nil, refuse(id, "give sighting_id (a sighting to label) or image (a base64 JPEG or PNG)")
	case r.SightingID != "" && r.Image != "":
		return nil, refuse(id, "give either sighting_id or image, not both")
	case r.Image != "":
		img, err := base64.StdEncoding.DecodeString(strings.TrimSpace(r.Image))
		if err != nil {
			return nil, refuse(id, "image is not standard base64: %v", err)
		}
		if len(img) == 0 {
			return nil, refuse(id, "image is empty")
		}
		r.imageBytes = img
		r.Image = ""
	}
	return &r, nil
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
	for _, c := range commands {
		if r.Cmd == c {
			return &r, nil
		}
	}
	if r.Cmd == "" {
		return nil, refuse(id, "cmd is missing (one of %s)", strings.Join(commands, ", "))
	}
	return nil, refuse(id, "unknown cmd %q (one of %s)", r.Cmd, strings.Join(commands, ", "))
}

// CheckLabelName checks a pet's name: 1-64 printable characters, no path
// separators, not the reserved "unknown".
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
	case strings.EqualFold(l, Unknown):
		return fmt.Errorf("label %q is reserved for sightings nobody is sure about", l)
	case l == "." || l == "..":
		return fmt.Errorf("label %q is not a name", l)
	}
	return nil
}

func printable(s string) bool {
	for _, r := range s {
		if !unicode.IsPrint(r) && r != ' ' {
			return false
		}
	}
	return true
}

func timestamp(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }
