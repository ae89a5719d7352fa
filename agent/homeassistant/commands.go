package homeassistant

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Home Assistant's buttons, numbers and switches publish plain payloads
// on their command topics. Anyone who may publish there can send
// anything, so each payload is checked as strictly as a request on the
// cmd topic, and becomes one of the agent's own commands.

// MaxCommandPayload bounds a command payload from Home Assistant (bytes).
const MaxCommandPayload = 64

// Command is a Home Assistant command as one of the agent's commands
// (protocol.CmdRequest's cmd and value).
type Command struct {
	Cmd   string   // retrain, threshold, pause or resume
	Value *float64 // for threshold
}

// CommandTopics are the command topics, relative to the device's root.
var CommandTopics = []string{TopicRetrain, TopicThreshold, TopicRecognition}

// ParseCommand checks the payload of a command topic (TopicRetrain,
// TopicThreshold or TopicRecognition) and says which command it asks
// for, or why it is refused.
func ParseCommand(topic string, payload []byte) (Command, error) {
	if len(payload) > MaxCommandPayload {
		return Command{}, fmt.Errorf("payload is %d bytes; a Home Assistant command has at most %d", len(payload), MaxCommandPayload)
	}
	if !utf8.Valid(payload) {
		return Command{}, fmt.Errorf("payload is not UTF-8 text")
	}
	p := strings.TrimSpace(string(payload))
	switch topic {
	case TopicRetrain:
		if p != PayloadPress {
			return Command{}, fmt.Errorf("payload %q is not %q", p, PayloadPress)
		}
		return Command{Cmd: "retrain"}, nil
	case TopicRecognition:
		switch p {
		case PayloadOn:
			return Command{Cmd: "resume"}, nil
		case PayloadOff:
			return Command{Cmd: "pause"}, nil
		}
		return Command{}, fmt.Errorf("payload %q is neither %q nor %q", p, PayloadOn, PayloadOff)
	case TopicThreshold:
		v, err := strconv.ParseFloat(p, 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			return Command{}, fmt.Errorf("payload %q is not a number", p)
		}
		if v < 0 || v > 1 {
			return Command{}, fmt.Errorf("threshold %g is not between 0 and 1", v)
		}
		return Command{Cmd: "threshold", Value: &v}, nil
	}
	return Command{}, fmt.Errorf("%q is not a Home Assistant command topic", topic)
}
