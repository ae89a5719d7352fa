// Package config is the agent's configuration: the YAML file over the
// defaults, the WHISKER_ environment variables over the file, secrets from
// files and systemd credentials, and the checks that name a bad key with
// its value. Every section of a room of the agent (camera, Home
// Assistant, updates, the inbox, the web page, the embedded broker) is
// that room's own Config type, kept here under its key. Settings are what
// commands change at run time (threshold, pause), kept in the state
// directory.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/whiskercam/whisker/agent/broker"
	"github.com/whiskercam/whisker/agent/homeassistant"
	"github.com/whiskercam/whisker/agent/inbox"
	"github.com/whiskercam/whisker/agent/ota"
	"github.com/whiskercam/whisker/agent/pipeline"
	"github.com/whiskercam/whisker/agent/protocol"
	"github.com/whiskercam/whisker/agent/web"
	"github.com/whiskercam/whisker/camera"
	"github.com/whiskercam/whisker/learner"
	"github.com/whiskercam/whisker/learner/backbone"
)

// Config is the whole agent configuration. Every key has a default (see
// Default); a YAML file overrides what it names, and unknown keys are
// rejected.
type Config struct {
	// Device names this camera in topics: <prefix>/<device>/...
	Device string `yaml:"device"`
	// StateDir holds the sample store and the trained head.
	StateDir string `yaml:"state_dir"`
	// Backbone is the manifest of the feature extractor model.
	Backbone string `yaml:"backbone"`
	// Threads for the backbone; 0 means all cores but one (at least
	// one): see BackboneThreads.
	Threads int                   `yaml:"threads"`
	Camera  pipeline.CameraConfig `yaml:"camera"`
	MQTT    MQTTConfig            `yaml:"mqtt"`
	Learner LearnerConfig         `yaml:"learner"`
	// HomeAssistant publishes MQTT discovery configs for each pet.
	HomeAssistant homeassistant.Config `yaml:"homeassistant"`
	// HTTP serves /metrics, /healthz and the web page.
	HTTP HTTPConfig `yaml:"http"`
	// Inbox keeps the recent sightings on disk, to be named later.
	Inbox inbox.Config `yaml:"inbox"`
	// Web is the page that teaches and shows the camera, on http.listen.
	Web web.Config `yaml:"web"`
	// Update is how signed bundles are installed.
	Update ota.Config `yaml:"update"`
	// Fleet shares labels between the cameras of a household.
	Fleet FleetConfig `yaml:"fleet"`
	Log   LogConfig   `yaml:"log"`
	// Images bounds the images the agent decodes (label requests).
	Images ImagesConfig `yaml:"images"`

	// Delegate runs the backbone on an accelerator: none, xnnpack, edgetpu
	// or gpu. One this build or machine lacks falls back to the CPU, with
	// a warning (docs/devices.md).
	Delegate string `yaml:"delegate"`
}

// FleetConfig shares labelled samples between the cameras of a household.
type FleetConfig struct {
	// Household names the group; empty turns sharing off.
	Household string `yaml:"household"`
	// HouseholdKeys is a directory of the enrolled public keys (DEVICE.pub,
	// from whisker keys gen --device) of the cameras whose shared samples
	// this camera stores; each sample must be signed by its origin's key.
	HouseholdKeys string `yaml:"household_keys"`
	// MaxSamplesPerCamera bounds the samples kept from each other camera
	// (0: no limit).
	MaxSamplesPerCamera int `yaml:"max_samples_per_camera"`
}

// HTTPConfig is the operations endpoint.
type HTTPConfig struct {
	// Listen is host:port for /metrics and /healthz; empty disables it.
	Listen string `yaml:"listen"`
	// StaleAfter: /healthz fails when no frame arrived for this long.
	StaleAfter time.Duration `yaml:"stale_after"`
	// TLS serves HTTPS with this certificate and key (PEM files); session
	// cookies are then marked Secure.
	TLS HTTPTLS `yaml:"tls"`
}

// HTTPTLS names the certificate and key of the HTTPS listener.
type HTTPTLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// MQTTConfig says which broker to use and how to talk to it.
type MQTTConfig struct {
	// Broker is an external broker URL (tcp://host:1883, ssl://host:8883).
	// Empty starts the embedded broker and connects to it.
	Broker string `yaml:"broker"`
	// EmbeddedListen is the embedded broker's address.
	EmbeddedListen string `yaml:"embedded_listen"`
	TopicPrefix    string `yaml:"topic_prefix"`
	// ClientID defaults to whisker-<device>.
	ClientID string `yaml:"client_id"`
	Username string `yaml:"username"`
	Password string `yaml:"password"`
	// PasswordFile holds the password instead (see ResolveSecrets).
	PasswordFile string `yaml:"password_file"`
	// TLS for ssl:// (tls://, mqtts://) broker URLs.
	TLS protocol.TLSConfig `yaml:"tls"`
	// MaxPayload refuses larger label and command messages (bytes).
	MaxPayload int `yaml:"max_payload"`
	// KeepAlive is the MQTT keep-alive interval.
	KeepAlive time.Duration `yaml:"keep_alive"`

	// Embedded is who may use the embedded broker: users, their roles and
	// password hashes, and the role of anonymous clients on loopback.
	Embedded broker.Config `yaml:"embedded"`
}

// LearnerConfig tunes recognition and training.
type LearnerConfig struct {
	// Threshold: below this probability a sighting is "unknown". 0 (the
	// default) uses the threshold the learner calibrates by
	// cross-validation on the stored samples.
	Threshold float64 `yaml:"threshold"`
	// C is the inverse L2 regularisation strength of the head.
	C float64 `yaml:"c"`
	// Balanced weighs classes by their inverse frequency.
	Balanced bool `yaml:"balanced"`
	// RetrainDelay coalesces bursts of labels into one training run.
	RetrainDelay time.Duration `yaml:"retrain_delay"`
	// Recent is how many recent sightings can be labelled by id.
	Recent int `yaml:"recent"`
	// SnapshotSize is the longer side, in pixels, of stored frame JPEGs.
	SnapshotSize int `yaml:"snapshot_size"`
	// NoPetLabels are labels for "no pet here": they train the head like
	// any label but are never announced as a pet.
	NoPetLabels []string `yaml:"no_pet_labels"`
	// A pet is announced (Home Assistant) when AnnounceAgree of the last
	// AnnounceWindow classified frames name it, so that one odd frame never
	// fires an automation. Frames further apart than AnnounceGap start over.
	AnnounceAgree  int           `yaml:"announce_agree"`
	AnnounceWindow int           `yaml:"announce_window"`
	AnnounceGap    time.Duration `yaml:"announce_gap"`
	// MaxSamplesPerLabel bounds one label's samples (0: no limit).
	MaxSamplesPerLabel int `yaml:"max_samples_per_label"`
	// MaxStoreBytes bounds what the stored samples take (0: no limit).
	MaxStoreBytes int64 `yaml:"max_store_bytes"`
	// MaxSampleJPEGBytes bounds one sample's JPEG.
	MaxSampleJPEGBytes int `yaml:"max_sample_jpeg_bytes"`
	// DiskReserveBytes is the free space a write must leave on the state
	// directory's file system.
	DiskReserveBytes int64 `yaml:"disk_reserve_bytes"`
}

// LogConfig sets the log level and format.
type LogConfig struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // text or json
}

// Default returns the configuration used for every key a file leaves out.
func Default() Config {
	host, _ := os.Hostname()
	device := sanitizeID(host)
	if device == "" {
		device = "whisker"
	}
	return Config{
		Device:   device,
		StateDir: defaultStateDir(),
		// What `make install` installs: the detector cut so that one run
		// gives the pets' boxes and the feature map.
		Backbone: "/usr/local/share/whisker/models/backbone-detect.manifest.json",
		Delegate: string(backbone.DelegateNone),
		Camera:   pipeline.DefaultCamera(),
		MQTT: MQTTConfig{
			EmbeddedListen: "127.0.0.1:1883",
			Embedded:       broker.DefaultConfig(),
			TopicPrefix:    "whisker",
			MaxPayload:     8 << 20,
			KeepAlive:      30 * time.Second,
		},
		Learner: LearnerConfig{
			Threshold:    0,
			C:            1,
			Balanced:     true,
			RetrainDelay: 300 * time.Millisecond,
			Recent:       300,
			SnapshotSize: 320,
			NoPetLabels:  []string{"neither", "none", "nobody", "empty", "stranger"},
			// 3 of 5 frames; the gap spans the motion gate's idle frames
			// (one every 30 s), so a sleeping pet stays announced.
			AnnounceAgree:  3,
			AnnounceWindow: 5,
			AnnounceGap:    2 * time.Minute,
			// The store's suggested limits.
			MaxSamplesPerLabel: learner.DefaultStoreOptions().MaxSamplesPerLabel,
			MaxStoreBytes:      learner.DefaultStoreOptions().MaxBytes,
			MaxSampleJPEGBytes: learner.DefaultStoreOptions().MaxJPEGBytes,
			DiskReserveBytes:   learner.DefaultStoreOptions().ReserveBytes,
		},
		HomeAssistant: homeassistant.Default(),
		HTTP:          HTTPConfig{Listen: "127.0.0.1:9808", StaleAfter: 30 * time.Second},
		Inbox:         inbox.Default(),
		Web:           web.Default(),
		Update:        ota.Default(),
		Fleet:         FleetConfig{MaxSamplesPerCamera: learner.DefaultStoreOptions().MaxSamplesPerOrigin},
		Images:        ImagesConfig{MaxBytes: camera.MaxImageBytes, MaxPixels: camera.DefaultMaxPixels},
		Log:           LogConfig{Level: "info", Format: "text"},
	}
}

func defaultStateDir() string {
	if d := os.Getenv("STATE_DIRECTORY"); d != "" { // systemd StateDirectory=
		return strings.Split(d, ":")[0]
	}
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "whisker")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".local", "state", "whisker")
	}
	return "whisker-state"
}

func sanitizeID(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		case r == '.':
			b.WriteRune('-')
		}
		if b.Len() == 64 {
			break
		}
	}
	return b.String()
}

// Load reads a YAML configuration over the defaults, then applies the
// environment (ApplyEnv: WHISKER_ variables, and secrets from
// $CREDENTIALS_DIRECTORY) and reads secret files (ResolveSecrets).
// Relative paths in the file are taken relative to the file's directory.
func Load(path string) (Config, error) { return LoadEnv(path, os.Environ()) }

// LoadEnv is Load with the environment given ("NAME=value" strings); an
// empty path reads no file: the defaults and the environment.
func LoadEnv(path string, environ []string) (Config, error) {
	cfg := Default()
	if path != "" {
		if err := loadFile(path, &cfg); err != nil {
			return cfg, err
		}
	}
	if err := ApplyEnv(&cfg, environ); err != nil {
		return cfg, err
	}
	var credentials string
	for _, kv := range environ {
		if v, ok := strings.CutPrefix(kv, "CREDENTIALS_DIRECTORY="); ok {
			credentials = v
		}
	}
	if err := ResolveSecrets(&cfg, credentials); err != nil {
		return cfg, err
	}
	return cfg, nil
}

func loadFile(path string, cfg *Config) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := Decode(data, cfg); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	resolve := resolveAgainst(filepath.Dir(path))
	paths := []*string{&cfg.StateDir, &cfg.Backbone, &cfg.MQTT.TLS.CAFile, &cfg.MQTT.TLS.CertFile, &cfg.MQTT.TLS.KeyFile, &cfg.MQTT.PasswordFile,
		&cfg.MQTT.Embedded.PasswordFile, &cfg.Fleet.HouseholdKeys, &cfg.Update.LocalDir, &cfg.HTTP.TLS.CertFile, &cfg.HTTP.TLS.KeyFile}
	// Only a file or folder source is a path; a device index, a URL or a
	// GStreamer pipeline is not.
	if kind, _, err := camera.ParseSource(cfg.Camera.Source); err == nil && (kind == camera.KindFile || kind == camera.KindFolder) {
		paths = append(paths, &cfg.Camera.Source)
	}
	for _, p := range paths {
		resolve(p)
	}
	for i := range cfg.Update.TrustedKeys {
		resolve(&cfg.Update.TrustedKeys[i])
	}
	return nil
}

func resolveAgainst(base string) func(*string) {
	return func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) && !strings.Contains(*p, "://") {
			*p = filepath.Join(base, *p)
		}
	}
}

// Decode applies YAML to cfg, rejecting unknown keys.
func Decode(data []byte, cfg *Config) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	// An empty file is no overrides.
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("config: %s", nameKeys(data, err))
	}
	return nil
}

var lineRef = regexp.MustCompile(`line (\d+):`)

// nameKeys adds the dotted key to yaml's "line N:" messages, so that
// "line 7: cannot unmarshal !!str `soon` into time.Duration" also says
// learner.retrain_delay.
func nameKeys(data []byte, err error) string {
	var root yaml.Node
	if yaml.Unmarshal(data, &root) != nil {
		return err.Error()
	}
	return lineRef.ReplaceAllStringFunc(err.Error(), func(m string) string {
		var line int
		fmt.Sscanf(m, "line %d:", &line)
		if key := keyAtLine(&root, line, ""); key != "" {
			return fmt.Sprintf("line %d: %s:", line, key)
		}
		return m
	})
}

func keyAtLine(n *yaml.Node, line int, prefix string) string {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			if k := keyAtLine(c, line, prefix); k != "" {
				return k
			}
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			key := n.Content[i].Value
			if prefix != "" {
				key = prefix + "." + key
			}
			if n.Content[i].Line == line {
				return key
			}
			if k := keyAtLine(n.Content[i+1], line, key); k != "" {
				return k
			}
		}
	}
	return ""
}

// Validate checks every key and names the first bad one with its value.
func (c *Config) Validate() error {
	bad := func(key string, val any, why string) error {
		return fmt.Errorf("config: %s: %v %s", key, val, why)
	}
	switch {
	case !protocol.ValidID(c.Device):
		return bad("device", fmt.Sprintf("%q", c.Device), "must be 1-64 letters, digits, '-' or '_' (it is part of MQTT topics)")
	case c.StateDir == "":
		return bad("state_dir", `""`, "must name a directory")
	case c.Backbone == "":
		return bad("backbone", `""`, "must name a backbone manifest (make deps cuts one: .deps/models/backbone.manifest.json)")
	case c.Threads < 0:
		return bad("threads", c.Threads, "must be 0 (all cores but one) or more")
	case !knownDelegate(c.Delegate):
		return bad("delegate", fmt.Sprintf("%q", c.Delegate), "must be none, xnnpack, edgetpu or gpu")
	case c.MQTT.Broker != "" && !validBrokerURL(c.MQTT.Broker):
		return bad("mqtt.broker", fmt.Sprintf("%q", c.MQTT.Broker), "must be a URL such as tcp://host:1883 or ssl://host:8883 (empty for the embedded broker)")
	case c.MQTT.Broker == "" && c.MQTT.EmbeddedListen == "":
		return bad("mqtt.embedded_listen", `""`, "must be host:port when no broker is set")
	case !protocol.ValidTopicPrefix(c.MQTT.TopicPrefix):
		return bad("mqtt.topic_prefix", fmt.Sprintf("%q", c.MQTT.TopicPrefix), "must be non-empty without '+', '#' or a leading or trailing '/'")
	case c.MQTT.MaxPayload < 1024 || c.MQTT.MaxPayload > 256<<20:
		return bad("mqtt.max_payload", c.MQTT.MaxPayload, "must be between 1024 and 268435456 bytes")
	case c.MQTT.KeepAlive < time.Second:
		return bad("mqtt.keep_alive", c.MQTT.KeepAlive, "must be at least 1s")
	case c.Learner.Threshold < 0 || c.Learner.Threshold > 1:
		return bad("learner.threshold", c.Learner.Threshold, "must be between 0 and 1")
	case c.Learner.C <= 0:
		return bad("learner.c", c.Learner.C, "must be above 0")
	case c.Learner.RetrainDelay < 0 || c.Learner.RetrainDelay > time.Minute:
		return bad("learner.retrain_delay", c.Learner.RetrainDelay, "must be between 0s and 1m")
	case c.Learner.Recent < 1 || c.Learner.Recent > 100000:
		return bad("learner.recent", c.Learner.Recent, "must be between 1 and 100000")
	case c.Learner.SnapshotSize < 32 || c.Learner.SnapshotSize > 4096:
		return bad("learner.snapshot_size", c.Learner.SnapshotSize, "must be between 32 and 4096 pixels")
	case (c.MQTT.TLS.CertFile == "") != (c.MQTT.TLS.KeyFile == ""):
		return bad("mqtt.tls.cert_file", fmt.Sprintf("%q", c.MQTT.TLS.CertFile), "and mqtt.tls.key_file must be given together")
	case c.HTTP.Listen != "" && !strings.Contains(c.HTTP.Listen, ":"):
		return bad("http.listen", fmt.Sprintf("%q", c.HTTP.Listen), "must be host:port (or empty to disable)")
	case c.Fleet.Household != "" && !protocol.ValidID(c.Fleet.Household):
		return bad("fleet.household", fmt.Sprintf("%q", c.Fleet.Household), "must be 1-64 letters, digits, '-' or '_'")
	case c.HTTP.StaleAfter < time.Second:
		return bad("http.stale_after", c.HTTP.StaleAfter, "must be at least 1s")
	case c.Log.Level != "debug" && c.Log.Level != "info" && c.Log.Level != "warn" && c.Log.Level != "error":
		return bad("log.level", fmt.Sprintf("%q", c.Log.Level), "must be debug, info, warn or error")
	case c.Log.Format != "text" && c.Log.Format != "json":
		return bad("log.format", fmt.Sprintf("%q", c.Log.Format), "must be text or json")
	}
	if (c.HTTP.TLS.CertFile == "") != (c.HTTP.TLS.KeyFile == "") {
		return bad("http.tls.cert_file", fmt.Sprintf("%q", c.HTTP.TLS.CertFile), "and http.tls.key_file must be given together")
	}
	if err := c.Web.Validate(c.HTTP.Listen, c.MQTT.MaxPayload); err != nil {
		return err
	}
	if c.Web.Enabled && !slices.Contains(c.Learner.NoPetLabels, c.Web.StrangerLabel) {
		return bad("web.stranger_label", fmt.Sprintf("%q", c.Web.StrangerLabel), "must be one of learner.no_pet_labels, or strangers would be announced as pets")
	}
	if c.Web.Enabled && !slices.Contains(c.Learner.NoPetLabels, c.Web.NeitherLabel) {
		return bad("web.neither_label", fmt.Sprintf("%q", c.Web.NeitherLabel), "must be one of learner.no_pet_labels, or empty scenes would be announced as pets")
	}
	if err := c.validateAccess(); err != nil {
		return err
	}
	for _, sub := range []interface{ Validate() error }{&c.Camera, &c.HomeAssistant, &c.Update, &c.Inbox} {
		if err := sub.Validate(); err != nil {
			return err
		}
	}
	if err := c.Learner.Announcer().Validate(); err != nil {
		return bad("learner.announce_agree", c.Learner.AnnounceAgree, "and announce_window: "+err.Error())
	}
	for i, l := range c.Learner.NoPetLabels {
		if err := protocol.CheckLabelName(l); err != nil {
			return bad(fmt.Sprintf("learner.no_pet_labels[%d]", i), fmt.Sprintf("%q", l), "is not a label name: "+err.Error())
		}
	}
	return nil
}

func knownDelegate(s string) bool {
	_, err := backbone.ParseDelegate(s)
	return err == nil
}

func validBrokerURL(s string) bool {
	for _, scheme := range []string{"tcp://", "mqtt://", "ssl://", "tls://", "mqtts://", "ws://", "wss://"} {
		if strings.HasPrefix(s, scheme) && len(s) > len(scheme) {
			return true
		}
	}
	return false
}

// YAML renders a configuration as YAML, with durations written the way
// they are read ("300ms", "2m0s"): `whisker config defaults` prints the
// defaults this way.
func (c Config) YAML() ([]byte, error) {
	node, err := yamlNode(reflect.ValueOf(c))
	if err != nil {
		return nil, err
	}
	return yaml.Marshal(node)
}

var durationType = reflect.TypeOf(time.Duration(0))

func yamlNode(v reflect.Value) (*yaml.Node, error) {
	switch {
	case v.Type() == durationType:
		return &yaml.Node{Kind: yaml.ScalarNode, Value: time.Duration(v.Int()).String()}, nil
	case v.Kind() == reflect.Struct:
		n := &yaml.Node{Kind: yaml.MappingNode}
		for i := range v.NumField() {
			f := v.Type().Field(i)
			key, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if key == "" || key == "-" {
				continue
			}
			val, err := yamlNode(v.Field(i))
			if err != nil {
				return nil, err
			}
			n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: key}, val)
		}
		return n, nil
	case v.Kind() == reflect.Slice:
		n := &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle}
		for i := range v.Len() {
			val, err := yamlNode(v.Index(i))
			if err != nil {
				return nil, err
			}
			n.Content = append(n.Content, val)
		}
		return n, nil
	}
	var n yaml.Node
	if err := n.Encode(v.Interface()); err != nil {
		return nil, err
	}
	return &n, nil
}

// BackboneThreads is the number of threads the backbone runs on: Threads,
// or all cores but one when it is 0 (backbone.DefaultThreads).
func (c Config) BackboneThreads() int {
	if c.Threads > 0 {
		return c.Threads
	}
	return backbone.DefaultThreads()
}

// Trainer is the learner's configuration for the head of a backbone
// (kept at learner.HeadPath in state_dir).
func (c Config) Trainer(identity string) learner.TrainerConfig {
	return learner.TrainerConfig{
		HeadPath: learner.HeadPath(c.StateDir, identity),
		Train:    learner.TrainConfig{C: c.Learner.C, Balanced: c.Learner.Balanced},
		Delay:    c.Learner.RetrainDelay,
	}
}

// ConfigurationURL is the page Home Assistant links the device to:
// homeassistant.configuration_url, else the agent's web page when
// http.listen is set (for a listener on every address, under the host
// name), else none.
func (c Config) ConfigurationURL() string {
	if c.HomeAssistant.ConfigurationURL != "" {
		return c.HomeAssistant.ConfigurationURL
	}
	host, port, err := net.SplitHostPort(c.HTTP.Listen)
	if c.HTTP.Listen == "" || err != nil || port == "" || port == "0" {
		return ""
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		if host, err = os.Hostname(); err != nil {
			return ""
		}
	}
	u := "http://" + net.JoinHostPort(host, port) + "/"
	if !homeassistant.ValidConfigurationURL(u) {
		return ""
	}
	return u
}

// Announcer is the agreement a pet needs before it is announced.
func (c LearnerConfig) Announcer() learner.AnnouncerConfig {
	return learner.AnnouncerConfig{N: c.AnnounceAgree, M: c.AnnounceWindow, MaxGap: c.AnnounceGap}
}
