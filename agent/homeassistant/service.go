package homeassistant

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/whiskercam/whisker/agent/protocol"
	"github.com/whiskercam/whisker/learner"
)

// Config controls Home Assistant MQTT discovery (the homeassistant
// section of the configuration).
type Config struct {
	Enabled bool `yaml:"enabled"`
	// DiscoveryPrefix is Home Assistant's discovery prefix.
	DiscoveryPrefix string `yaml:"discovery_prefix"`
	// OffDelay turns "<pet> is here" off after this long without a sighting.
	OffDelay time.Duration `yaml:"off_delay"`
	// MinInterval limits how often one pet's state is published.
	MinInterval time.Duration `yaml:"min_interval"`
}

// Default is discovery on, with Home Assistant's default prefix.
func Default() Config {
	return Config{Enabled: true, DiscoveryPrefix: "homeassistant", OffDelay: 2 * time.Minute, MinInterval: 5 * time.Second}
}

// Validate names the first bad key (homeassistant.*) with its value.
func (c *Config) Validate() error {
	bad := func(key string, val any, why string) error {
		return fmt.Errorf("config: homeassistant.%s: %v %s", key, val, why)
	}
	switch {
	case !protocol.ValidTopicPrefix(c.DiscoveryPrefix):
		return bad("discovery_prefix", fmt.Sprintf("%q", c.DiscoveryPrefix), "must be non-empty without '+', '#' or a leading or trailing '/'")
	case c.OffDelay < time.Second || c.OffDelay > 24*time.Hour:
		return bad("off_delay", c.OffDelay, "must be between 1s and 24h")
	case c.MinInterval < 0 || c.MinInterval > time.Hour:
		return bad("min_interval", c.MinInterval, "must be between 0s and 1h")
	}
	return nil
}

// Publisher sends MQTT messages: the agent's connection.
type Publisher interface {
	PublishRaw(topic string, payload []byte, retained bool) error
	Connected() bool
}

// Memory keeps the pets that have entities, across restarts, so that the
// entities of a pet forgotten while the agent was away are removed too.
type Memory interface {
	Published() []string
	SetPublished(pets []string) error
}

// Options are what the service needs besides its configuration.
type Options struct {
	Device, Version string
	// Topics is the device's topic root: <topic_prefix>/<device>/.
	Topics string
	// NoPetLabels are labels that mean "no pet here": never announced.
	NoPetLabels []string
	Announce    learner.AnnouncerConfig
	// Pets lists the labels that have samples.
	Pets func() ([]string, error)
	// Announced, if set, is called for every pet state published.
	Announced func(label string)
}

// Service publishes discovery configs and announces pets.
type Service struct {
	cfg  Config
	opt  Options
	log  *slog.Logger
	pub  Publisher
	mem  Memory
	disc *Discovery

	mu           sync.Mutex // announcers, lastAnnounce
	announcers   map[string]*learner.Announcer
	lastAnnounce map[string]time.Time
	syncMu       sync.Mutex // one discovery sync at a time
}

// New prepares the service; nothing is published before Sync or Observe.
func New(cfg Config, opt Options, log *slog.Logger, pub Publisher, mem Memory) (*Service, error) {
	if err := opt.Announce.Validate(); err != nil {
		return nil, err
	}
	return &Service{
		cfg: cfg, opt: opt, log: log, pub: pub, mem: mem,
		disc: &Discovery{
			Prefix: cfg.DiscoveryPrefix, Topics: opt.Topics, Device: opt.Device, Version: opt.Version,
			OffDelay: int(cfg.OffDelay.Seconds()),
		},
		announcers:   map[string]*learner.Announcer{},
		lastAnnounce: map[string]time.Time{},
	}, nil
}

// IsPet says whether a label names a pet (not "unknown", not a no-pet
// label).
func (s *Service) IsPet(label string) bool {
	return label != protocol.Unknown && !slices.Contains(s.opt.NoPetLabels, label)
}

// Observe feeds each pet's announcer with a frame's sightings (a pet not
// in the frame counts as a frame without it) and announces the pets that
// enough recent frames agree on: their state, "here" and the latest
// snapshot. A pet whose frames stop agreeing is announced gone. snapshot
// returns the picture of the i-th sighting (nil: none).
func (s *Service) Observe(at time.Time, sightings []protocol.Sighting, snapshot func(i int) []byte) {
	inFrame := map[string]int{}
	for i, sg := range sightings {
		if s.IsPet(sg.Label) {
			if j, ok := inFrame[sg.Label]; !ok || sg.Confidence > sightings[j].Confidence {
				inFrame[sg.Label] = i
			}
		}
	}
	type due struct {
		label string
		i     int
		left  bool
	}
	var todo []due
	now := time.Now()
	s.mu.Lock()
	for l := range inFrame {
		if s.announcers[l] == nil {
			ann, err := learner.NewAnnouncer(s.opt.Announce)
			if err != nil { // checked in New
				s.mu.Unlock()
				s.log.Error("announcer", "err", err)
				return
			}
			s.announcers[l] = ann
		}
	}
	for l, ann := range s.announcers {
		i, seen := inFrame[l]
		label, conf := protocol.Unknown, 0.0
		if seen {
			label, conf = l, sightings[i].Confidence
		}
		for _, ev := range ann.Observe(at, label, conf) {
			switch ev.Kind {
			case learner.Arrived:
				s.log.Info("pet arrived", "label", ev.Label, "frames", ev.Frames, "confidence", ev.Confidence)
			case learner.Left:
				s.log.Info("pet left", "label", ev.Label)
				todo = append(todo, due{label: l, left: true})
			}
		}
		if ann.Current() == l && seen && now.Sub(s.lastAnnounce[l]) >= s.cfg.MinInterval {
			s.lastAnnounce[l] = now
			todo = append(todo, due{label: l, i: i})
		}
	}
	s.mu.Unlock()
	if !s.pub.Connected() {
		return
	}
	for _, d := range todo {
		if d.left {
			go s.publish(s.disc.PresentTopic(d.label), []byte("OFF"), false)
			continue
		}
		sg := sightings[d.i]
		if s.opt.Announced != nil {
			s.opt.Announced(sg.Label)
		}
		st := PetState{Label: sg.Label, LastSeen: sg.TS, Confidence: sg.Confidence, Where: s.opt.Device, Sighting: sg.ID}
		var pic []byte
		if snapshot != nil {
			pic = snapshot(d.i)
		}
		go func() {
			s.publish(s.disc.PetTopic(sg.Label), mustJSON(st), true)
			s.publish(s.disc.PresentTopic(sg.Label), []byte("ON"), false)
			if len(pic) > 0 {
				s.publish(s.disc.SnapshotTopic(), pic, true)
			}
		}()
	}
}

func (s *Service) publish(topic string, payload []byte, retained bool) {
	if err := s.pub.PublishRaw(topic, payload, retained); err != nil {
		s.log.Debug("publish", "topic", topic, "err", err)
	}
}

// LabelsChanged brings the entities up to date after labels were added,
// renamed or forgotten, in the background; while the broker is away it
// happens on the next connect (Sync).
func (s *Service) LabelsChanged() {
	if !s.cfg.Enabled || !s.pub.Connected() {
		return
	}
	go func() {
		if err := s.Sync(); err != nil {
			s.log.Warn("Home Assistant discovery", "err", err)
		}
	}()
}

// Sync publishes discovery configs for every pet and removes the entities
// of pets that no longer have samples (including ones forgotten while the
// agent was away: the published set is kept in Memory).
func (s *Service) Sync() error {
	if !s.cfg.Enabled {
		return nil
	}
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	labels, err := s.opt.Pets()
	if err != nil {
		return err
	}
	var pets []string
	for _, l := range labels {
		if s.IsPet(l) {
			pets = append(pets, l)
		}
	}
	msgs := []Message{s.disc.CameraConfig()}
	for _, p := range pets {
		msgs = append(msgs, s.disc.PetConfigs(p)...)
	}
	for _, old := range s.mem.Published() {
		if !slices.Contains(pets, old) {
			s.log.Info("removing Home Assistant entities", "label", old)
			msgs = append(msgs, s.disc.RemovePet(old)...)
		}
	}
	for _, m := range msgs {
		if err := s.pub.PublishRaw(m.Topic, m.Payload, true); err != nil {
			return fmt.Errorf("publish %s: %w", m.Topic, err)
		}
	}
	return s.mem.SetPublished(pets)
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only structs of strings and numbers are marshalled here
	}
	return b
}
