// Package agent is the Whisker daemon: it wires the camera, the backbone,
// the learner and MQTT together. It holds no math and no pixels of its own.
package agent

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/whiskercam/whisker/camera"
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
	Threads int           `yaml:"threads"`
	Camera  CameraConfig  `yaml:"camera"`
	MQTT    MQTTConfig    `yaml:"mqtt"`
	Learner LearnerConfig `yaml:"learner"`
	// HomeAssistant publishes MQTT discovery configs for each pet.
	HomeAssistant HomeAssistantConfig `yaml:"homeassistant"`
	// HTTP serves /metrics and /healthz.
	HTTP HTTPConfig `yaml:"http"`
	// Update is how signed bundles are installed.
	Update UpdateConfig `yaml:"update"`
	// Fleet shares labels between the cameras of a household.
	Fleet FleetConfig `yaml:"fleet"`
	Log   LogConfig   `yaml:"log"`

	// Delegate runs the backbone on an accelerator: none, xnnpack, edgetpu
	// or gpu. One this build or machine lacks falls back to the CPU, with
	// a warning (docs/devices.md).
	Delegate string `yaml:"delegate"`
}

// TLSConfig secures the connection to an external broker.
type TLSConfig struct {
	// CAFile verifies the broker (PEM); empty uses the system's roots.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are a client certificate (PEM), if the broker
	// wants one.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ServerName overrides the name checked in the broker's certificate.
	ServerName string `yaml:"server_name"`
	// InsecureSkipVerify accepts any broker certificate (testing only).
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// HomeAssistantConfig controls Home Assistant MQTT discovery.
type HomeAssistantConfig struct {
	Enabled bool `yaml:"enabled"`
	// DiscoveryPrefix is Home Assistant's discovery prefix.
	DiscoveryPrefix string `yaml:"discovery_prefix"`
	// OffDelay turns "<pet> is here" off after this long without a sighting.
	OffDelay time.Duration `yaml:"off_delay"`
	// MinInterval limits how often one pet's state is published.
	MinInterval time.Duration `yaml:"min_interval"`
}

// UpdateConfig controls installing bundles (see `whisker bundle`).
type UpdateConfig struct {
	// TrustedKeys are public key files (PEM); bundles signed by others are
	// refused. With none, every bundle is refused.
	TrustedKeys []string `yaml:"trusted_keys"`
	// MaxSize refuses larger bundles (bytes).
	MaxSize int64 `yaml:"max_size"`
	// HealthTimeout: a new version that has not produced MinSightings
	// sightings with the broker connected by then is rolled back.
	HealthTimeout time.Duration `yaml:"health_timeout"`
	MinSightings  int           `yaml:"min_sightings"`
	// MaxAttempts: starts of a new version before it is rolled back.
	MaxAttempts int `yaml:"max_attempts"`
}

// FleetConfig shares labelled samples between the cameras of a household.
type FleetConfig struct {
	// Household names the group; empty turns sharing off.
	Household string `yaml:"household"`
}

// HTTPConfig is the operations endpoint.
type HTTPConfig struct {
	// Listen is host:port for /metrics and /healthz; empty disables it.
	Listen string `yaml:"listen"`
	// StaleAfter: /healthz fails when no frame arrived for this long.
	StaleAfter time.Duration `yaml:"stale_after"`
}

// CameraConfig selects and paces the camera, and says which frames are
// worth the backbone and what is classified in them (docs/camera.md).
type CameraConfig struct {
	// Source: a V4L2 device (/dev/video0 or an index), a GStreamer
	// pipeline (with " ! " or a "gst:" prefix), an rtsp:// or http(s)://
	// MJPEG URL, a video file, or a folder of images.
	Source string `yaml:"source"`
	// Loop restarts a video file or folder at its end.
	Loop bool `yaml:"loop"`
	// MaxFPS caps how many frames a second are classified.
	MaxFPS float64 `yaml:"max_fps"`
	// FolderFPS is how many images a second a folder source shows.
	FolderFPS float64 `yaml:"folder_fps"`
	// Device is what a V4L2 camera is asked for.
	Device DeviceConfig `yaml:"device"`
	// RetryMax caps the delay between attempts to reopen a failed source.
	RetryMax  time.Duration   `yaml:"retry_max"`
	Motion    MotionConfig    `yaml:"motion"`
	Detect    DetectConfig    `yaml:"detect"`
	Snapshots SnapshotsConfig `yaml:"snapshots"`
}

// DeviceConfig is asked of a V4L2 camera; 0 or "" keeps the driver's
// choice.
type DeviceConfig struct {
	Width  int     `yaml:"width"`
	Height int     `yaml:"height"`
	FPS    float64 `yaml:"fps"`
	// PixelFormat is a FOURCC: MJPG, YUYV, ...
	PixelFormat string `yaml:"pixel_format"`
}

// MotionConfig is the motion gate: frame differencing at low resolution
// decides whether a frame is worth the backbone.
type MotionConfig struct {
	Enabled bool `yaml:"enabled"`
	// Width is the width frames are scaled down to before comparing.
	Width int `yaml:"width"`
	// PixelThreshold: grey levels (of 255) a pixel must change by.
	PixelThreshold int `yaml:"pixel_threshold"`
	// MinArea: the fraction of pixels that must change.
	MinArea float64 `yaml:"min_area"`
	// IdleInterval classifies a frame this often even when nothing moves
	// (0: never).
	IdleInterval time.Duration `yaml:"idle_interval"`
}

// DetectConfig finds pets with the backbone's detector outputs (a
// backbone cut with --detect) and classifies each pet's crop.
type DetectConfig struct {
	// Enabled detects when the backbone can; with a backbone without
	// detector outputs, whole frames are classified (and a warning logged).
	Enabled bool `yaml:"enabled"`
	// Classes are the detector's class names that count as pets.
	Classes []string `yaml:"classes"`
	// MinScore is the detector score a pet needs (0.5: the detector's own
	// even odds).
	MinScore float64 `yaml:"min_score"`
	// IoU is the overlap above which two boxes are one pet.
	IoU float64 `yaml:"iou"`
	// MaxPets bounds the sightings per frame.
	MaxPets int `yaml:"max_pets"`
	// Embed says how a pet is embedded: "crop" runs the backbone again on
	// the crop (best), "region" pools the frame's feature map under the
	// box (no second run).
	Embed string `yaml:"embed"`
	// Margin widens a pet's box by this fraction on each side for its
	// crop.
	Margin float64 `yaml:"margin"`
	// ReportEmpty publishes a whole-frame sighting (without a box) for a
	// frame where no pet is found, so that "no pet" can be labelled.
	ReportEmpty bool `yaml:"report_empty"`
}

// SnapshotsConfig keeps a JPEG of each sighting's frame (with its box) and
// crop, in memory, for retrieval by sighting id.
type SnapshotsConfig struct {
	MaxCount int           `yaml:"max_count"`
	MaxAge   time.Duration `yaml:"max_age"`
	// MaxBytes bounds the memory all snapshots take together.
	MaxBytes int `yaml:"max_bytes"`
	// Size is the longer side, in pixels, of snapshot JPEGs.
	Size    int `yaml:"size"`
	Quality int `yaml:"quality"`
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
	// TLS for ssl:// (tls://, mqtts://) broker URLs.
	TLS TLSConfig `yaml:"tls"`
	// MaxPayload refuses larger label and command messages (bytes).
	MaxPayload int `yaml:"max_payload"`
	// KeepAlive is the MQTT keep-alive interval.
	KeepAlive time.Duration `yaml:"keep_alive"`
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
		Camera: CameraConfig{
			Source:    "/dev/video0",
			Loop:      true,
			MaxFPS:    2,
			FolderFPS: 1,
			RetryMax:  30 * time.Second,
			Motion: MotionConfig{
				Enabled: true, Width: 160, PixelThreshold: 25, MinArea: 0.005, IdleInterval: 30 * time.Second,
			},
			Detect: DetectConfig{
				Enabled: true, Classes: []string{"Cat", "Dog"}, MinScore: 0.5, IoU: 0.6, MaxPets: 4,
				Embed: "crop", Margin: 0.1, ReportEmpty: true,
			},
			Snapshots: SnapshotsConfig{MaxCount: 200, MaxAge: time.Hour, MaxBytes: 32 << 20, Size: 640, Quality: 85},
		},
		MQTT: MQTTConfig{
			EmbeddedListen: "127.0.0.1:1883",
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
			NoPetLabels:  []string{"neither", "none", "nobody", "empty"},
			// 3 of 5 frames; the gap spans the motion gate's idle frames
			// (one every 30 s), so a sleeping pet stays announced.
			AnnounceAgree:  3,
			AnnounceWindow: 5,
			AnnounceGap:    2 * time.Minute,
		},
		HomeAssistant: HomeAssistantConfig{
			Enabled:         true,
			DiscoveryPrefix: "homeassistant",
			OffDelay:        2 * time.Minute,
			MinInterval:     5 * time.Second,
		},
		HTTP:   HTTPConfig{Listen: "127.0.0.1:9808", StaleAfter: 30 * time.Second},
		Update: UpdateConfig{MaxSize: 512 << 20, HealthTimeout: 2 * time.Minute, MinSightings: 3, MaxAttempts: 2},
		Log:    LogConfig{Level: "info", Format: "text"},
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

var idPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

var fourCC = regexp.MustCompile(`^[A-Za-z0-9 ]{4}$`)

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

// Load reads a YAML configuration over the defaults. Relative paths in the
// file are taken relative to the file's directory.
func Load(path string) (Config, error) {
	cfg := Default()
	data, err := os.ReadFile(path)
	if err != nil {
		return cfg, err
	}
	if err := Decode(data, &cfg); err != nil {
		return cfg, fmt.Errorf("%s: %w", path, err)
	}
	resolve := resolveAgainst(filepath.Dir(path))
	paths := []*string{&cfg.StateDir, &cfg.Backbone, &cfg.MQTT.TLS.CAFile, &cfg.MQTT.TLS.CertFile, &cfg.MQTT.TLS.KeyFile}
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
	return cfg, nil
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
	case !idPattern.MatchString(c.Device):
		return bad("device", fmt.Sprintf("%q", c.Device), "must be 1-64 letters, digits, '-' or '_' (it is part of MQTT topics)")
	case c.StateDir == "":
		return bad("state_dir", `""`, "must name a directory")
	case c.Backbone == "":
		return bad("backbone", `""`, "must name a backbone manifest (make deps cuts one: .deps/models/backbone.manifest.json)")
	case c.Threads < 0:
		return bad("threads", c.Threads, "must be 0 (all cores but one) or more")
	case !knownDelegate(c.Delegate):
		return bad("delegate", fmt.Sprintf("%q", c.Delegate), "must be none, xnnpack, edgetpu or gpu")
	case c.Camera.Source == "":
		return bad("camera.source", `""`, "must name a camera, video file or image folder")
	case c.Camera.MaxFPS < 0 || c.Camera.MaxFPS > 120:
		return bad("camera.max_fps", c.Camera.MaxFPS, "must be between 0 (source rate) and 120")
	case c.Camera.FolderFPS <= 0 || c.Camera.FolderFPS > 120:
		return bad("camera.folder_fps", c.Camera.FolderFPS, "must be above 0 and at most 120")
	case c.Camera.Device.Width < 0 || c.Camera.Device.Width > 8192:
		return bad("camera.device.width", c.Camera.Device.Width, "must be 0 (the driver's choice) to 8192 pixels")
	case c.Camera.Device.Height < 0 || c.Camera.Device.Height > 8192:
		return bad("camera.device.height", c.Camera.Device.Height, "must be 0 (the driver's choice) to 8192 pixels")
	case c.Camera.Device.FPS < 0 || c.Camera.Device.FPS > 240:
		return bad("camera.device.fps", c.Camera.Device.FPS, "must be 0 (the driver's choice) to 240")
	case c.Camera.Device.PixelFormat != "" && !fourCC.MatchString(c.Camera.Device.PixelFormat):
		return bad("camera.device.pixel_format", fmt.Sprintf("%q", c.Camera.Device.PixelFormat), "must be a four-character code such as MJPG or YUYV")
	case c.Camera.RetryMax < time.Second || c.Camera.RetryMax > time.Hour:
		return bad("camera.retry_max", c.Camera.RetryMax, "must be between 1s and 1h")
	case c.Camera.Motion.Width < 16 || c.Camera.Motion.Width > 1920:
		return bad("camera.motion.width", c.Camera.Motion.Width, "must be 16 to 1920 pixels")
	case c.Camera.Motion.PixelThreshold < 1 || c.Camera.Motion.PixelThreshold > 254:
		return bad("camera.motion.pixel_threshold", c.Camera.Motion.PixelThreshold, "must be 1 to 254 grey levels")
	case !(c.Camera.Motion.MinArea > 0 && c.Camera.Motion.MinArea <= 1):
		return bad("camera.motion.min_area", c.Camera.Motion.MinArea, "must be a fraction above 0 and at most 1")
	case c.Camera.Motion.IdleInterval < 0:
		return bad("camera.motion.idle_interval", c.Camera.Motion.IdleInterval, "must be 0 (never) or more")
	case c.Camera.Detect.Enabled && len(c.Camera.Detect.Classes) == 0:
		return bad("camera.detect.classes", "[]", "must name at least one detector class (Cat, Dog, ...)")
	case !(c.Camera.Detect.MinScore > 0 && c.Camera.Detect.MinScore < 1):
		return bad("camera.detect.min_score", c.Camera.Detect.MinScore, "must be above 0 and below 1")
	case !(c.Camera.Detect.IoU > 0 && c.Camera.Detect.IoU <= 1):
		return bad("camera.detect.iou", c.Camera.Detect.IoU, "must be above 0 and at most 1")
	case c.Camera.Detect.MaxPets < 1 || c.Camera.Detect.MaxPets > 32:
		return bad("camera.detect.max_pets", c.Camera.Detect.MaxPets, "must be 1 to 32")
	case c.Camera.Detect.Embed != "crop" && c.Camera.Detect.Embed != "region":
		return bad("camera.detect.embed", fmt.Sprintf("%q", c.Camera.Detect.Embed), "must be crop (run the backbone on the crop) or region (pool the frame's features under the box)")
	case c.Camera.Detect.Margin < 0 || c.Camera.Detect.Margin > 1:
		return bad("camera.detect.margin", c.Camera.Detect.Margin, "must be 0 to 1")
	case c.Camera.Snapshots.MaxCount < 0 || c.Camera.Snapshots.MaxCount > 100000:
		return bad("camera.snapshots.max_count", c.Camera.Snapshots.MaxCount, "must be 0 (keep none) to 100000")
	case c.Camera.Snapshots.MaxAge < 0:
		return bad("camera.snapshots.max_age", c.Camera.Snapshots.MaxAge, "must be 0 or more")
	case c.Camera.Snapshots.MaxBytes < 0:
		return bad("camera.snapshots.max_bytes", c.Camera.Snapshots.MaxBytes, "must be 0 or more")
	case c.Camera.Snapshots.Size < 32 || c.Camera.Snapshots.Size > 4096:
		return bad("camera.snapshots.size", c.Camera.Snapshots.Size, "must be 32 to 4096 pixels")
	case c.Camera.Snapshots.Quality < 10 || c.Camera.Snapshots.Quality > 100:
		return bad("camera.snapshots.quality", c.Camera.Snapshots.Quality, "must be 10 to 100")
	case c.MQTT.Broker != "" && !validBrokerURL(c.MQTT.Broker):
		return bad("mqtt.broker", fmt.Sprintf("%q", c.MQTT.Broker), "must be a URL such as tcp://host:1883 or ssl://host:8883 (empty for the embedded broker)")
	case c.MQTT.Broker == "" && c.MQTT.EmbeddedListen == "":
		return bad("mqtt.embedded_listen", `""`, "must be host:port when no broker is set")
	case !validTopicPrefix(c.MQTT.TopicPrefix):
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
	case !validTopicPrefix(c.HomeAssistant.DiscoveryPrefix):
		return bad("homeassistant.discovery_prefix", fmt.Sprintf("%q", c.HomeAssistant.DiscoveryPrefix), "must be non-empty without '+', '#' or a leading or trailing '/'")
	case c.HomeAssistant.OffDelay < time.Second || c.HomeAssistant.OffDelay > 24*time.Hour:
		return bad("homeassistant.off_delay", c.HomeAssistant.OffDelay, "must be between 1s and 24h")
	case c.HomeAssistant.MinInterval < 0 || c.HomeAssistant.MinInterval > time.Hour:
		return bad("homeassistant.min_interval", c.HomeAssistant.MinInterval, "must be between 0s and 1h")
	case c.HTTP.Listen != "" && !strings.Contains(c.HTTP.Listen, ":"):
		return bad("http.listen", fmt.Sprintf("%q", c.HTTP.Listen), "must be host:port (or empty to disable)")
	case c.Update.MaxSize < 1<<20:
		return bad("update.max_size", c.Update.MaxSize, "must be at least 1048576 bytes")
	case c.Update.HealthTimeout < 5*time.Second:
		return bad("update.health_timeout", c.Update.HealthTimeout, "must be at least 5s")
	case c.Update.MinSightings < 1:
		return bad("update.min_sightings", c.Update.MinSightings, "must be at least 1")
	case c.Update.MaxAttempts < 1 || c.Update.MaxAttempts > 10:
		return bad("update.max_attempts", c.Update.MaxAttempts, "must be between 1 and 10")
	case c.Fleet.Household != "" && !idPattern.MatchString(c.Fleet.Household):
		return bad("fleet.household", fmt.Sprintf("%q", c.Fleet.Household), "must be 1-64 letters, digits, '-' or '_'")
	case c.HTTP.StaleAfter < time.Second:
		return bad("http.stale_after", c.HTTP.StaleAfter, "must be at least 1s")
	case c.Log.Level != "debug" && c.Log.Level != "info" && c.Log.Level != "warn" && c.Log.Level != "error":
		return bad("log.level", fmt.Sprintf("%q", c.Log.Level), "must be debug, info, warn or error")
	case c.Log.Format != "text" && c.Log.Format != "json":
		return bad("log.format", fmt.Sprintf("%q", c.Log.Format), "must be text or json")
	}
	if err := announcerConfig(c.Learner).Validate(); err != nil {
		return bad("learner.announce_agree", c.Learner.AnnounceAgree, "and announce_window: "+err.Error())
	}
	for i, l := range c.Learner.NoPetLabels {
		if err := CheckLabelName(l); err != nil {
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

func validTopicPrefix(p string) bool {
	return p != "" && !strings.ContainsAny(p, "+#\x00") && !strings.HasPrefix(p, "/") && !strings.HasSuffix(p, "/")
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
// or all cores but one when it is 0. The core left over keeps capture,
// the camera pipeline's other stages, MQTT and the rest of the device
// (Home Assistant, often) from taking turns with the backbone's threads:
// a TensorFlow Lite worker that loses its core holds up the others at the
// next barrier, which costs more than the work that took the core.
func (c Config) BackboneThreads() int {
	if c.Threads > 0 {
		return c.Threads
	}
	return max(1, runtime.NumCPU()-1)
}
