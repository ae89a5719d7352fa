package homeassistant

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestParseCommand(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	for _, c := range []struct {
		topic, payload string
		want           Command
		err            string
	}{
		{TopicRetrain, "PRESS", Command{Cmd: "retrain"}, ""},
		{TopicRetrain, "press", Command{}, "is not"},
		{TopicRetrain, "", Command{}, "is not"},
		{TopicRecognition, "ON", Command{Cmd: "resume"}, ""},
		{TopicRecognition, "OFF", Command{Cmd: "pause"}, ""},
		{TopicRecognition, "on", Command{}, "neither"},
		{TopicThreshold, "0.75", Command{Cmd: "threshold", Value: f(0.75)}, ""},
		{TopicThreshold, "0", Command{Cmd: "threshold", Value: f(0)}, ""},
		{TopicThreshold, " 1 ", Command{Cmd: "threshold", Value: f(1)}, ""},
		{TopicThreshold, "1.5", Command{}, "not between 0 and 1"},
		{TopicThreshold, "-0.1", Command{}, "not between 0 and 1"},
		{TopicThreshold, "NaN", Command{}, "not a number"},
		{TopicThreshold, "Inf", Command{}, "not a number"},
		{TopicThreshold, "0x1p-2", Command{Cmd: "threshold", Value: f(0.25)}, ""},
		{TopicThreshold, "{\"value\":1}", Command{}, "not a number"},
		{TopicThreshold, strings.Repeat("1", 65), Command{}, "at most 64"},
		{TopicRetrain, "PRE\xffSS", Command{}, "UTF-8"},
		{"ha/explode", "PRESS", Command{}, "not a Home Assistant command topic"},
	} {
		got, err := ParseCommand(c.topic, []byte(c.payload))
		switch {
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%s %q: error %v, want one with %q", c.topic, c.payload, err, c.err)
		case c.err == "" && err != nil:
			t.Errorf("%s %q: %v", c.topic, c.payload, err)
		case c.err == "" && (got.Cmd != c.want.Cmd || (got.Value == nil) != (c.want.Value == nil) || got.Value != nil && *got.Value != *c.want.Value):
			t.Errorf("%s %q: %+v, want %+v", c.topic, c.payload, got, c.want)
		}
	}
}

func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{"PRESS", "ON", "OFF", "0.5", "1e-3", "", "NaN", "\x00"} {
		for _, topic := range CommandTopics {
			f.Add(topic, []byte(s))
		}
	}
	f.Fuzz(func(t *testing.T, topic string, payload []byte) {
		c, err := ParseCommand(topic, payload)
		if err != nil {
			if c != (Command{}) {
				t.Fatalf("refused with a command %+v", c)
			}
			if !utf8.ValidString(err.Error()) {
				t.Fatalf("reason is not UTF-8: %q", err)
			}
			return
		}
		switch c.Cmd {
		case "retrain", "pause", "resume":
			if c.Value != nil {
				t.Fatalf("%s with a value", c.Cmd)
			}
		case "threshold":
			if c.Value == nil || !(*c.Value >= 0 && *c.Value <= 1) {
				t.Fatalf("threshold %v accepted", c.Value)
			}
		default:
			t.Fatalf("unknown command %q", c.Cmd)
		}
		if len(payload) > MaxCommandPayload {
			t.Fatalf("%d bytes accepted", len(payload))
		}
	})
}
