// Package broker holds who may do what on the MQTT topics of Whisker
// cameras: three roles and their topic rules, users with password hashes,
// the embedded broker that enforces them (for setups without a broker of
// their own), and the mosquitto ACL file that gives the same roles on a
// broker shared with other devices.
package broker

import (
	"fmt"
	"strings"
)

// Role is what a user may do.
type Role string

// The roles.
const (
	// Camera is a Whisker agent: it writes its own device's topics (status,
	// sightings, answers, snapshots, pets, its Home Assistant states and
	// discovery configs), reads the labels and commands sent to it, Home
	// Assistant's commands and birth message, and shares samples with its
	// household.
	Camera Role = "camera"
	// Operator labels and commands every camera (Home Assistant's
	// Retrain, Threshold and Recognition controls included), and reads all
	// their topics (answers, snapshots and shared samples included). Give
	// Home Assistant this role for its controls to work.
	Operator Role = "operator"
	// Viewer reads what Home Assistant shows (statuses, sightings, pets,
	// the latest snapshot, the device's states and the discovery configs)
	// and changes nothing; it may only publish Home Assistant's own birth
	// message (its controls are refused).
	Viewer Role = "viewer"
	// None is the anonymous role that lets nobody in.
	None Role = "none"
)

// ParseRole reads a role name.
func ParseRole(s string) (Role, error) {
	switch r := Role(s); r {
	case Camera, Operator, Viewer:
		return r, nil
	}
	return "", fmt.Errorf("role %q: want camera, operator or viewer", s)
}

// Topics are the topic names the rules are made of.
type Topics struct {
	// Prefix is mqtt.topic_prefix ("whisker").
	Prefix string
	// Discovery is Home Assistant's discovery prefix ("homeassistant");
	// empty leaves Home Assistant out.
	Discovery string
	// Household is fleet.household; empty gives cameras no household
	// topic, "+" every household's.
	Household string
}

// Access is what a rule allows on the topics its filter matches.
type Access int

// Accesses.
const (
	Read Access = 1 << iota
	Write
	ReadWrite = Read | Write
)

func (a Access) String() string {
	switch a {
	case Read:
		return "read"
	case Write:
		return "write"
	case ReadWrite:
		return "readwrite"
	}
	return "none"
}

// Rule allows an access on the topics a filter (with MQTT wildcards)
// matches.
type Rule struct {
	Access Access
	Filter string
}

// Rules are the rules of a role. device is a camera's device id (ignored
// for the other roles, which reach every device).
func Rules(role Role, device string, t Topics) []Rule {
	p := t.Prefix
	var rs []Rule
	switch role {
	case Camera:
		d := p + "/" + device + "/"
		rs = []Rule{
			{Read, d + "label"}, {Read, d + "cmd"},
			{Write, d + "status"}, {Write, d + "sighting/#"}, {Write, d + "result"},
			{Write, d + "snapshot/#"}, {Write, d + "pet/#"}, {ReadWrite, d + "ha/#"},
		}
		if t.Discovery != "" {
			rs = append(rs, Rule{Write, t.Discovery + "/+/whisker_" + device + "/#"}, Rule{Read, t.Discovery + "/status"})
		}
		if t.Household != "" {
			rs = append(rs, Rule{ReadWrite, p + "/household/" + t.Household + "/samples"})
		}
	case Operator:
		rs = []Rule{{Write, p + "/+/label"}, {Write, p + "/+/cmd"}, {Write, p + "/+/ha/+"}, {Read, p + "/#"}}
	case Viewer:
		d := p + "/+/"
		rs = []Rule{{Read, d + "status"}, {Read, d + "sighting/#"}, {Read, d + "pet/#"}, {Read, d + "snapshot/latest"}, {Read, d + "ha/#"}}
		if t.Discovery != "" {
			rs = append(rs, Rule{Read, t.Discovery + "/#"}, Rule{Write, t.Discovery + "/status"})
		}
	}
	return rs
}

// requestTopic says whether topic is where cameras take requests (label,
// cmd): a retained message there would be acted on again at every
// (re)connect.
func requestTopic(t Topics, topic string) bool {
	return matches(t.Prefix+"/+/label", topic) || matches(t.Prefix+"/+/cmd", topic)
}

// Allowed says whether rules allow writing to a topic name (write), or
// subscribing to a filter (read): every topic the filter can match must
// be readable under one rule.
func Allowed(rules []Rule, topic string, write bool) bool {
	for _, r := range rules {
		switch {
		case write && r.Access&Write != 0 && matches(r.Filter, topic):
			return true
		case !write && r.Access&Read != 0 && covers(r.Filter, topic):
			return true
		}
	}
	return false
}

// matches says whether a topic name matches a filter. Like brokers, a
// wildcard at the first level does not match a topic starting with '$'.
func matches(filter, topic string) bool {
	if strings.ContainsAny(topic, "+#") || topic == "" {
		return false
	}
	return covers(filter, topic)
}

// covers says whether every topic that filter sub matches is matched by
// filter f (a topic name is a filter matching itself).
func covers(f, sub string) bool {
	if sub == "" || strings.HasPrefix(sub, "$") && !strings.HasPrefix(f, "$") {
		return false
	}
	fl, sl := strings.Split(f, "/"), strings.Split(sub, "/")
	for i, fp := range fl {
		if fp == "#" {
			return i == len(fl)-1
		}
		if i >= len(sl) {
			return false
		}
		switch sp := sl[i]; {
		case sp == "#":
			return false // f has a finite level here; sub goes on without end
		case fp == "+":
			// any single level, wildcard or not
		case sp == "+" || sp != fp:
			return false
		}
	}
	// "a/#" matches "a" too, but f ran out first only if it had no '#'.
	return len(sl) == len(fl)
}
