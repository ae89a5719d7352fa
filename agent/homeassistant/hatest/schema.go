// Package hatest checks MQTT discovery payloads against the schemas Home
// Assistant documents for device-based discovery and for each platform
// Whisker uses (sensor, binary_sensor, camera, image, event, update,
// button, number, switch): the keys each platform takes, their types,
// the required ones and the rules between them. The tables are written
// from Home Assistant's MQTT documentation; tests of discovery use them.
//
// The check is stricter than Home Assistant in one way: a key that no
// table lists is an error (Home Assistant ignores it), so that a typo
// never passes.
package hatest

import (
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strings"
)

// Kind is the type of an option's value.
type Kind int

// The kinds of values.
const (
	String     Kind = iota
	NameString      // a string, or null (the main feature of a device)
	Bool
	Int
	Number
	Template   // a non-empty Jinja template
	SubTopic   // a topic to subscribe to (wildcards allowed as whole levels)
	PubTopic   // a topic to publish to (no wildcards)
	StringList // a list of strings
	Icon       // prefix:name, such as mdi:paw
	URL        // an http or https URL
	ConfigURL  // an http, https or homeassistant:// URL
	EntityID   // <platform>.<object id>, the platform being the component's
	Map        // checked by a table of its own
)

// Option is one configuration key of a platform.
type Option struct {
	Kind     Kind
	Required bool
	// OneOf lists the values allowed (strings), if only some are.
	OneOf []string
	// Min is the smallest number allowed (Int or Number), when MinSet.
	Min    float64
	MinSet bool
}

func req(k Kind) Option                  { return Option{Kind: k, Required: true} }
func opt(k Kind) Option                  { return Option{Kind: k} }
func oneOf(values ...string) Option      { return Option{Kind: String, OneOf: values} }
func atLeast(k Kind, min float64) Option { return Option{Kind: k, Min: min, MinSet: true} }

// Common are the options every entity platform takes (availability,
// device, origin, naming and the JSON attributes).
var Common = map[string]Option{
	"availability_topic":       opt(SubTopic),
	"availability_template":    opt(Template),
	"availability_mode":        oneOf("all", "any", "latest"),
	"payload_available":        opt(String),
	"payload_not_available":    opt(String),
	"device":                   opt(Map),
	"origin":                   opt(Map),
	"default_entity_id":        opt(EntityID),
	"enabled_by_default":       opt(Bool),
	"encoding":                 opt(String),
	"entity_category":          oneOf("config", "diagnostic"),
	"entity_picture":           opt(URL),
	"icon":                     opt(Icon),
	"json_attributes_template": opt(Template),
	"json_attributes_topic":    opt(SubTopic),
	"name":                     opt(NameString),
	"platform":                 opt(String), // required in a device discovery payload (checked there)
	"qos":                      Option{Kind: Int, OneOf: []string{"0", "1", "2"}},
	"unique_id":                opt(String),
}

// Platforms are the options of each platform, besides Common.
var Platforms = map[string]map[string]Option{
	"sensor": {
		"state_topic":                 req(SubTopic),
		"device_class":                opt(String),
		"expire_after":                atLeast(Int, 0),
		"force_update":                opt(Bool),
		"last_reset_value_template":   opt(Template),
		"options":                     opt(StringList),
		"suggested_display_precision": atLeast(Int, 0),
		"state_class":                 oneOf("measurement", "measurement_angle", "total", "total_increasing"),
		"unit_of_measurement":         opt(String),
		"value_template":              opt(Template),
	},
	"binary_sensor": {
		"state_topic":    req(SubTopic),
		"device_class":   opt(String),
		"expire_after":   atLeast(Int, 0),
		"force_update":   opt(Bool),
		"off_delay":      atLeast(Int, 0),
		"payload_on":     opt(String),
		"payload_off":    opt(String),
		"value_template": opt(Template),
	},
	"camera": {
		"topic":          req(SubTopic),
		"image_encoding": oneOf("b64"),
	},
	"image": {
		"image_topic":    opt(SubTopic),
		"url_topic":      opt(SubTopic),
		"content_type":   opt(String),
		"image_encoding": oneOf("b64"),
		"url_template":   opt(Template),
	},
	"event": {
		"state_topic":    req(SubTopic),
		"event_types":    req(StringList),
		"device_class":   oneOf("button", "doorbell", "motion"),
		"value_template": opt(Template),
	},
	"update": {
		"state_topic":             opt(SubTopic),
		"command_topic":           opt(PubTopic),
		"device_class":            oneOf("firmware"),
		"display_precision":       atLeast(Int, 0),
		"latest_version_template": opt(Template),
		"latest_version_topic":    opt(SubTopic),
		"payload_install":         opt(String),
		"release_summary":         opt(String),
		"release_url":             opt(URL),
		"retain":                  opt(Bool),
		"title":                   opt(String),
		"value_template":          opt(Template),
	},
	"button": {
		"command_topic":    req(PubTopic),
		"command_template": opt(Template),
		"device_class":     oneOf("identify", "restart", "update"),
		"payload_press":    opt(String),
		"retain":           opt(Bool),
	},
	"number": {
		"command_topic":       req(PubTopic),
		"command_template":    opt(Template),
		"device_class":        opt(String),
		"min":                 opt(Number),
		"max":                 opt(Number),
		"step":                atLeast(Number, 0.001),
		"mode":                oneOf("auto", "box", "slider"),
		"optimistic":          opt(Bool),
		"payload_reset":       opt(String),
		"retain":              opt(Bool),
		"state_topic":         opt(SubTopic),
		"unit_of_measurement": opt(String),
		"value_template":      opt(Template),
	},
	"switch": {
		"command_topic":    req(PubTopic),
		"command_template": opt(Template),
		"device_class":     oneOf("outlet", "switch"),
		"optimistic":       opt(Bool),
		"payload_on":       opt(String),
		"payload_off":      opt(String),
		"retain":           opt(Bool),
		"state_on":         opt(String),
		"state_off":        opt(String),
		"state_topic":      opt(SubTopic),
		"value_template":   opt(Template),
	},
}

// DeviceInfo are the keys of the device mapping.
var DeviceInfo = map[string]Option{
	"identifiers":       opt(StringList), // a string is accepted too
	"connections":       opt(Map),
	"configuration_url": opt(ConfigURL),
	"hw_version":        opt(String),
	"manufacturer":      opt(String),
	"model":             opt(String),
	"model_id":          opt(String),
	"name":              opt(String),
	"serial_number":     opt(String),
	"suggested_area":    opt(String),
	"sw_version":        opt(String),
	"via_device":        opt(String),
}

// OriginInfo are the keys of the origin mapping.
var OriginInfo = map[string]Option{
	"name":        req(String),
	"sw_version":  opt(String),
	"support_url": opt(ConfigURL),
}

// DeviceDiscovery are the root keys of a device discovery payload: the
// device and origin (both required), the components, and the options
// the components share.
var DeviceDiscovery = map[string]Option{
	"device":                req(Map),
	"origin":                req(Map),
	"components":            req(Map),
	"availability_topic":    opt(SubTopic),
	"availability_template": opt(Template),
	"availability_mode":     oneOf("all", "any", "latest"),
	"payload_available":     opt(String),
	"payload_not_available": opt(String),
	"state_topic":           opt(SubTopic),
	"command_topic":         opt(PubTopic),
	"qos":                   Option{Kind: Int, OneOf: []string{"0", "1", "2"}},
	"encoding":              opt(String),
}

var (
	iconPattern   = regexp.MustCompile(`^[a-z0-9-]+:[a-z0-9-]+$`)
	objectPattern = regexp.MustCompile(`^[a-z0-9_]+$`)
)

// validEntityID is Home Assistant's rule for entity ids: <domain>.<object>,
// each of lower-case letters, digits and single underscores, not
// starting or ending with one.
func validEntityID(id string) (domain string, ok bool) {
	domain, object, found := strings.Cut(id, ".")
	if !found {
		return "", false
	}
	for _, part := range []string{domain, object} {
		if !objectPattern.MatchString(part) || strings.Contains(part, "__") || strings.HasPrefix(part, "_") || strings.HasSuffix(part, "_") {
			return "", false
		}
	}
	return domain, true
}

func validTopic(t string, subscribe bool) error {
	switch {
	case t == "":
		return fmt.Errorf("is empty")
	case len(t) > 65535:
		return fmt.Errorf("is too long")
	case strings.ContainsRune(t, 0):
		return fmt.Errorf("contains a null character")
	}
	levels := strings.Split(t, "/")
	for i, l := range levels {
		if !strings.ContainsAny(l, "+#") {
			continue
		}
		if !subscribe {
			return fmt.Errorf("%q has a wildcard, which a topic to publish to cannot have", t)
		}
		if l != "+" && l != "#" || l == "#" && i != len(levels)-1 {
			return fmt.Errorf("%q has a wildcard that is not a whole level (or # not last)", t)
		}
	}
	return nil
}

func validURL(u string, homeassistant bool) bool {
	p, err := url.Parse(u)
	if err != nil {
		return false
	}
	if homeassistant && p.Scheme == "homeassistant" {
		return true
	}
	return (p.Scheme == "http" || p.Scheme == "https") && p.Host != ""
}

// checkValue checks one value against its option.
func checkValue(platform, key string, o Option, v any) error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%s: %s", key, fmt.Sprintf(format, a...))
	}
	switch o.Kind {
	case String, Template, SubTopic, PubTopic, Icon, URL, ConfigURL, EntityID:
		s, ok := v.(string)
		if !ok {
			return bad("%v is %T, want a string", v, v)
		}
		switch o.Kind {
		case Template:
			if strings.TrimSpace(s) == "" {
				return bad("template is empty")
			}
		case SubTopic, PubTopic:
			if err := validTopic(s, o.Kind == SubTopic); err != nil {
				return bad("topic %v", err)
			}
		case Icon:
			if !iconPattern.MatchString(s) {
				return bad("%q is not an icon such as mdi:paw", s)
			}
		case URL, ConfigURL:
			if !validURL(s, o.Kind == ConfigURL) {
				return bad("%q is not an http(s) URL", s)
			}
		case EntityID:
			domain, ok := validEntityID(s)
			if !ok {
				return bad("%q is not an entity id (<domain>.<object id> of lower-case letters, digits and single underscores)", s)
			}
			if domain != platform {
				return bad("%q is not in the %s domain", s, platform)
			}
		}
		if len(o.OneOf) > 0 && !slices.Contains(o.OneOf, s) {
			return bad("%q is not one of %v", s, o.OneOf)
		}
	case NameString:
		if v == nil {
			return nil
		}
		if _, ok := v.(string); !ok {
			return bad("%v is %T, want a string or null", v, v)
		}
	case Bool:
		if _, ok := v.(bool); !ok {
			return bad("%v is %T, want true or false", v, v)
		}
	case Int, Number:
		f, ok := v.(float64)
		if !ok {
			return bad("%v is %T, want a number", v, v)
		}
		if o.Kind == Int && f != float64(int64(f)) {
			return bad("%v is not a whole number", f)
		}
		if o.MinSet && f < o.Min {
			return bad("%v is below %v", f, o.Min)
		}
		if len(o.OneOf) > 0 && !slices.Contains(o.OneOf, fmt.Sprint(f)) {
			return bad("%v is not one of %v", f, o.OneOf)
		}
	case StringList:
		list, ok := v.([]any)
		if !ok {
			return bad("%v is %T, want a list of strings", v, v)
		}
		if len(list) == 0 {
			return bad("list is empty")
		}
		for _, e := range list {
			if _, ok := e.(string); !ok {
				return bad("element %v is %T, want a string", e, e)
			}
		}
	case Map:
		if _, ok := v.(map[string]any); !ok {
			return bad("%v is %T, want a mapping", v, v)
		}
	}
	return nil
}

// checkTable checks a mapping against a table: unknown keys, types and
// required keys.
func checkTable(where, platform string, m map[string]any, tables ...map[string]Option) []error {
	var errs []error
	lookup := func(k string) (Option, bool) {
		for _, t := range tables {
			if o, ok := t[k]; ok {
				return o, true
			}
		}
		return Option{}, false
	}
	for _, k := range sortedKeys(m) {
		o, ok := lookup(k)
		if !ok {
			errs = append(errs, fmt.Errorf("%s: %q is not an option Home Assistant documents here", where, k))
			continue
		}
		if err := checkValue(platform, k, o, m[k]); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", where, err))
		}
	}
	for _, t := range tables {
		for _, k := range sortedKeys(t) {
			if _, ok := m[k]; t[k].Required && !ok {
				errs = append(errs, fmt.Errorf("%s: required option %q is missing", where, k))
			}
		}
	}
	return errs
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Component checks one entity config of a platform, as a component of a
// device discovery payload (inDevice: platform and unique_id required)
// or a config of its own. deviceName is the device's name, which an
// entity name must not start with.
func Component(platform string, cfg map[string]any, inDevice bool, deviceName string) []error {
	table, ok := Platforms[platform]
	if !ok {
		return []error{fmt.Errorf("platform %q is not one this check knows", platform)}
	}
	where := platform
	if id, ok := cfg["unique_id"].(string); ok {
		where = fmt.Sprintf("%s %s", platform, id)
	}
	errs := checkTable(where, platform, cfg, Common, table)
	if inDevice {
		if p, _ := cfg["platform"].(string); p != platform {
			errs = append(errs, fmt.Errorf("%s: platform is %q", where, p))
		}
		if _, ok := cfg["unique_id"]; !ok {
			errs = append(errs, fmt.Errorf("%s: unique_id is required in a device discovery payload", where))
		}
	}
	if dev, ok := cfg["device"].(map[string]any); ok {
		errs = append(errs, Device(dev)...)
	}
	if o, ok := cfg["origin"].(map[string]any); ok {
		errs = append(errs, checkTable(where+" origin", platform, o, OriginInfo)...)
	}
	if name, ok := cfg["name"].(string); ok && deviceName != "" && strings.HasPrefix(strings.ToLower(name), strings.ToLower(deviceName)) {
		errs = append(errs, fmt.Errorf("%s: name %q starts with the device name %q (Home Assistant puts the device name in front itself)", where, name, deviceName))
	}
	// Rules between options.
	switch platform {
	case "image":
		_, img := cfg["image_topic"]
		_, u := cfg["url_topic"]
		if img == u {
			errs = append(errs, fmt.Errorf("%s: exactly one of image_topic and url_topic is required", where))
		}
		if _, ct := cfg["content_type"]; ct && u {
			errs = append(errs, fmt.Errorf("%s: content_type cannot be used with url_topic", where))
		}
	case "sensor":
		if c, ok := cfg["entity_category"]; ok && c != "diagnostic" {
			errs = append(errs, fmt.Errorf("%s: a sensor's entity_category can only be diagnostic", where))
		}
		if cfg["device_class"] == "enum" {
			if _, ok := cfg["options"]; !ok {
				errs = append(errs, fmt.Errorf("%s: an enum sensor needs options", where))
			}
			for _, k := range []string{"unit_of_measurement", "state_class"} {
				if _, ok := cfg[k]; ok {
					errs = append(errs, fmt.Errorf("%s: an enum sensor cannot have %s", where, k))
				}
			}
		} else if _, ok := cfg["options"]; ok {
			errs = append(errs, fmt.Errorf("%s: options need device_class enum", where))
		}
		if cfg["device_class"] == "timestamp" {
			if _, ok := cfg["unit_of_measurement"]; ok {
				errs = append(errs, fmt.Errorf("%s: a timestamp sensor has no unit", where))
			}
		}
	case "number":
		lo, hi := 1.0, 100.0 // Home Assistant's defaults
		if v, ok := cfg["min"].(float64); ok {
			lo = v
		}
		if v, ok := cfg["max"].(float64); ok {
			hi = v
		}
		if lo >= hi {
			errs = append(errs, fmt.Errorf("%s: min %v is not below max %v", where, lo, hi))
		}
	}
	return errs
}

// Device checks a device mapping: its keys, and at least one identifier
// or connection.
func Device(dev map[string]any) []error {
	errs := checkTable("device", "", dev, DeviceInfo)
	ids, _ := dev["identifiers"].([]any)
	conns, _ := dev["connections"].([]any)
	if len(ids) == 0 && len(conns) == 0 {
		errs = append(errs, fmt.Errorf("device: at least one identifier or connection is required"))
	}
	return errs
}

// DevicePayload checks a device discovery payload (the JSON published on
// <prefix>/device/<object id>/config): the root, the device, the origin,
// and each component against its platform. A component given as its
// platform alone is a removal, which is allowed. It returns the parsed
// payload too.
func DevicePayload(payload []byte) (map[string]any, []error) {
	var cfg map[string]any
	dec := json.NewDecoder(strings.NewReader(string(payload)))
	if err := dec.Decode(&cfg); err != nil {
		return nil, []error{fmt.Errorf("payload is not a JSON object: %v", err)}
	}
	errs := checkTable("device discovery", "", cfg, DeviceDiscovery)
	dev, _ := cfg["device"].(map[string]any)
	if dev != nil {
		errs = append(errs, Device(dev)...)
	}
	if o, ok := cfg["origin"].(map[string]any); ok {
		errs = append(errs, checkTable("origin", "", o, OriginInfo)...)
	}
	devName, _ := dev["name"].(string)
	cmps, _ := cfg["components"].(map[string]any)
	if cfg["components"] != nil && len(cmps) == 0 {
		errs = append(errs, fmt.Errorf("components: none"))
	}
	ids := map[string]string{}
	for _, key := range sortedKeys(cmps) {
		if !objectIDPattern.MatchString(key) {
			errs = append(errs, fmt.Errorf("component key %q: only [a-zA-Z0-9_-] may be used", key))
		}
		c, ok := cmps[key].(map[string]any)
		if !ok {
			errs = append(errs, fmt.Errorf("component %q is not a mapping", key))
			continue
		}
		platform, _ := c["platform"].(string)
		if platform == "" {
			errs = append(errs, fmt.Errorf("component %q: platform is required", key))
			continue
		}
		if len(c) == 1 {
			if _, known := Platforms[platform]; !known {
				errs = append(errs, fmt.Errorf("component %q: platform %q is not one this check knows", key, platform))
			}
			continue // a removal
		}
		for _, shared := range []string{"device", "origin"} {
			if _, ok := c[shared]; ok {
				errs = append(errs, fmt.Errorf("component %q: %s is given once, at the root", key, shared))
			}
		}
		for _, err := range Component(platform, c, true, devName) {
			errs = append(errs, fmt.Errorf("component %q: %w", key, err))
		}
		if id, ok := c["unique_id"].(string); ok {
			if other, dup := ids[id]; dup {
				errs = append(errs, fmt.Errorf("components %q and %q share unique_id %q", other, key, id))
			}
			ids[id] = key
		}
	}
	return cfg, errs
}

var objectIDPattern = regexp.MustCompile(`^[a-zA-Z0-9_-]+$`)

// ValidObjectID says whether s may be a node or object id in a discovery
// topic.
func ValidObjectID(s string) bool { return objectIDPattern.MatchString(s) }
