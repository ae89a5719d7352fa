package homeassistant

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/whiskercam/whisker/agent/protocol"
	"github.com/whiskercam/whisker/learner"
)

// Config controls Home Assistant MQTT discovery (the homeassistant
// section of the configuration).
type Config struct {
	Enabled bool `yaml:"enabled"`
	// DiscoveryPrefix is Home Assistant's discovery prefix.
	DiscoveryPrefix string `yaml:"discovery_prefix"`
	// OffDelay turns "<pet> here" off after this long without a sighting.
	OffDelay time.Duration `yaml:"off_delay"`
	// MinInterval limits how often one pet's state is published.
	MinInterval time.Duration `yaml:"min_interval"`
	// SuggestedArea is the area Home Assistant puts the camera in when it
	// first sees it (empty: none).
	SuggestedArea string `yaml:"suggested_area"`
	// ConfigurationURL is the page Home Assistant links the device to.
	// Empty: the agent's own page when http.listen is set.
	ConfigurationURL string `yaml:"configuration_url"`
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
	case len(c.SuggestedArea) > 100 || strings.TrimSpace(c.SuggestedArea) != c.SuggestedArea || strings.IndexFunc(c.SuggestedArea, unicode.IsControl) >= 0:
		return bad("suggested_area", fmt.Sprintf("%q", c.SuggestedArea), "must be at most 100 characters, without control characters or leading or trailing spaces")
	case c.ConfigurationURL != "" && !ValidConfigurationURL(c.ConfigurationURL):
		return bad("configuration_url", fmt.Sprintf("%q", c.ConfigurationURL), "must be an http:// or https:// URL with a host")
	}
	return nil
}

// ValidConfigurationURL says whether Home Assistant accepts u as a
// device's configuration_url: an http or https URL with a host.
func ValidConfigurationURL(u string) bool {
	p, err := url.Parse(u)
	return err == nil && (p.Scheme == "http" || p.Scheme == "https") && p.Host != "" && p.User == nil && len(u) <= 2048
}

// Publisher sends MQTT messages: the agent's connection.
type Publisher interface {
	PublishRaw(topic string, payload []byte, retained bool) error
	Connected() bool
}

// Memory keeps the service's State across restarts.
type Memory interface {
	HomeAssistant() State
	SetHomeAssistant(State) error
}

// Options are what the service needs besides its configuration.
type Options struct {
	Device, Version string
	// Topics is the device's topic root: <topic_prefix>/<device>/.
	Topics string
	// ConfigurationURL is the device's page ("" for none).
	ConfigurationURL string
	// NoPetLabels are labels that mean "no pet here": never announced.
	NoPetLabels []string
	Announce    learner.AnnouncerConfig
	// Pets lists the labels that have samples.
	Pets func() ([]string, error)
	// State and Firmware give the device's state and its firmware's.
	State    func() DeviceState
	Firmware func() FirmwareState
	// Announced, if set, is called for every pet state published.
	Announced func(label string)
	// NewID makes pet ids (default NewPetID); BirthDelay is how long to
	// wait after Home Assistant's birth message before publishing
	// (default: a random delay up to two seconds, as Home Assistant asks,
	// so that its devices do not all answer at once).
	NewID      func() string
	BirthDelay func() time.Duration
}

// minBirthGap is the least time between two answers to birth messages:
// anyone may publish one, and each makes the agent publish everything.
const minBirthGap = 10 * time.Second

// maxRemoved bounds the removed components remembered for Home Assistant.
const maxRemoved = 200

// Service publishes the discovery config, the pets' and the device's
// state, and announces pets.
type Service struct {
	cfg  Config
	opt  Options
	log  *slog.Logger
	pub  Publisher
	mem  Memory
	disc *Discovery

	mu           sync.Mutex // announcers, lastAnnounce, ids
	announcers   map[string]*learner.Announcer
	lastAnnounce map[string]time.Time
	ids          map[string]string // label -> pet id, as last synced
	syncMu       sync.Mutex        // one discovery sync, or rename, at a time
	birth        chan struct{}
}

// New prepares the service; nothing is published before Sync or Observe.
func New(cfg Config, opt Options, log *slog.Logger, pub Publisher, mem Memory) (*Service, error) {
	if err := opt.Announce.Validate(); err != nil {
		return nil, err
	}
	if opt.NewID == nil {
		opt.NewID = NewPetID
	}
	if opt.BirthDelay == nil {
		opt.BirthDelay = func() time.Duration { return rand.N(2 * time.Second) }
	}
	if opt.State == nil {
		opt.State = func() DeviceState { return DeviceState{Recognition: PayloadOn} }
	}
	if opt.Firmware == nil {
		opt.Firmware = func() FirmwareState { return FirmwareState{InstalledVersion: opt.Version, LatestVersion: opt.Version} }
	}
	s := &Service{
		cfg: cfg, opt: opt, log: log, pub: pub, mem: mem,
		disc: &Discovery{
			Prefix: cfg.DiscoveryPrefix, Topics: opt.Topics, Device: opt.Device, Version: opt.Version,
			OffDelay: int(cfg.OffDelay.Seconds()), ConfigurationURL: opt.ConfigurationURL, SuggestedArea: cfg.SuggestedArea,
		},
		announcers:   map[string]*learner.Announcer{},
		lastAnnounce: map[string]time.Time{},
		ids:          map[string]string{},
		birth:        make(chan struct{}, 1),
	}
	for _, r := range records(mem.HomeAssistant()) {
		s.ids[r.Label] = r.ID
	}
	return s, nil
}

// Subscriptions are the topics the agent subscribes to for Home
// Assistant, relative to nothing (full names), with the name their
// messages carry: the birth message and the command topics.
func (s *Service) Subscriptions() map[string]string {
	if !s.cfg.Enabled {
		return nil
	}
	subs := map[string]string{s.disc.BirthTopic(): TopicBirth}
	for _, t := range CommandTopics {
		subs[s.disc.Topic(t)] = t
	}
	return subs
}

// TopicBirth is the name birth messages carry (Subscriptions).
const TopicBirth = "ha/birth"

// records are the pet records of a state; before the first sync after
// an upgrade, the pets an earlier version announced, under their old
// ids.
func records(st State) []PetRecord {
	if len(st.Pets) > 0 || len(st.Legacy) == 0 {
		return st.Pets
	}
	var out []PetRecord
	for _, l := range st.Legacy {
		out = append(out, PetRecord{ID: LegacyID(l), Label: l})
	}
	return out
}

// IsPet says whether a label names a pet (not "unknown", not a no-pet
// label).
func (s *Service) IsPet(label string) bool {
	return label != protocol.Unknown && !slices.Contains(s.opt.NoPetLabels, label)
}

// PetID is the id of a pet's entities ("" before its first sync).
func (s *Service) PetID(label string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ids[label]
}

// Snapshot is what Observe needs of a sighting's pictures: the frame with
// the pets' boxes, and the pet's crop.
type Snapshot func(i int) (frame, crop []byte)

// Observe feeds each pet's announcer with a frame's sightings (a pet not
// in the frame counts as a frame without it) and announces the pets that
// enough recent frames agree on: their state, "here", their picture and
// the latest snapshot, and an "arrived" event; a pet whose frames stop
// agreeing gets "left" and "here" off.
func (s *Service) Observe(at time.Time, sightings []protocol.Sighting, snapshot Snapshot) {
	inFrame := map[string]int{}
	for i, sg := range sightings {
		if s.IsPet(sg.Label) {
			if j, ok := inFrame[sg.Label]; !ok || sg.Confidence > sightings[j].Confidence {
				inFrame[sg.Label] = i
			}
		}
	}
	type due struct {
		label, id string
		i         int
		events    []learner.Event
		announce  bool
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
		d := due{label: l, id: s.ids[l], i: i}
		for _, ev := range ann.Observe(at, label, conf) {
			switch ev.Kind {
			case learner.Arrived:
				s.log.Info("pet arrived", "label", ev.Label, "frames", ev.Frames, "confidence", ev.Confidence)
			case learner.Left:
				s.log.Info("pet left", "label", ev.Label)
			}
			d.events = append(d.events, ev)
		}
		if ann.Current() == l && seen && now.Sub(s.lastAnnounce[l]) >= s.cfg.MinInterval {
			s.lastAnnounce[l] = now
			d.announce = true
		}
		if d.id != "" && (d.announce || len(d.events) > 0) {
			todo = append(todo, d)
		}
	}
	s.mu.Unlock()
	if !s.cfg.Enabled || !s.pub.Connected() {
		return
	}
	for _, d := range todo {
		var msgs []Message
		for _, ev := range d.events {
			pe := PetEvent{Label: d.label, Where: s.opt.Device}
			if ev.Kind == learner.Arrived {
				pe.EventType, pe.Confidence = EventArrived, ev.Confidence
				if d.announce {
					pe.Sighting = sightings[d.i].ID
				}
			} else {
				pe.EventType = EventLeft
				msgs = append(msgs, Message{Topic: s.disc.PresentTopic(d.id), Payload: []byte(PayloadOff)})
			}
			msgs = append(msgs, Message{Topic: s.disc.EventTopic(d.id), Payload: mustJSON(pe)})
		}
		if d.announce {
			sg := sightings[d.i]
			if s.opt.Announced != nil {
				s.opt.Announced(sg.Label)
			}
			st := PetState{Label: sg.Label, LastSeen: sg.TS, Confidence: sg.Confidence, Where: s.opt.Device, Sighting: sg.ID}
			msgs = append(msgs,
				Message{Topic: s.disc.PetTopic(d.id), Payload: mustJSON(st), Retained: true},
				Message{Topic: s.disc.PresentTopic(d.id), Payload: []byte(PayloadOn)})
			if snapshot != nil {
				frame, crop := snapshot(d.i)
				if len(crop) == 0 {
					crop = frame
				}
				if len(crop) > 0 {
					msgs = append(msgs, Message{Topic: s.disc.ImageTopic(d.id), Payload: crop, Retained: true})
				}
				if len(frame) > 0 {
					msgs = append(msgs, Message{Topic: s.disc.SnapshotTopic(), Payload: frame, Retained: true})
				}
			}
		}
		go s.publishAll(msgs)
	}
}

// publishAll publishes messages in order, logging failures.
func (s *Service) publishAll(msgs []Message) {
	for _, m := range msgs {
		if err := s.pub.PublishRaw(m.Topic, m.Payload, m.Retained); err != nil {
			s.log.Debug("publish", "topic", m.Topic, "err", err)
		}
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

// Rename renames a pet's records for a rename that apply carries out (in
// the store): its entities keep their unique_ids under the new name. When
// the new name is a label of its own already (a merge), that label keeps
// its entities and the old one's are removed at the next Sync. The
// pending record is kept before apply runs, so that a rename interrupted
// by a crash is settled by the next Sync either way.
func (s *Service) Rename(from, to string, apply func() error) error {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	st := s.mem.HomeAssistant()
	pets := records(st)
	i := slices.IndexFunc(pets, func(r PetRecord) bool { return r.Label == from && !r.Pending })
	taken := slices.ContainsFunc(pets, func(r PetRecord) bool { return r.Label == to })
	move := i >= 0 && !taken
	if move {
		pets = append(slices.Clone(pets), PetRecord{ID: pets[i].ID, Label: to, Pending: true})
		if err := s.mem.SetHomeAssistant(State{Pets: pets, Removed: st.Removed, Legacy: st.Legacy}); err != nil {
			return fmt.Errorf("keep the pet's id across the rename: %w", err)
		}
	}
	err := apply()
	if !move {
		return err
	}
	var settled []PetRecord
	for _, r := range pets {
		switch {
		case err == nil && r.Label == from:
		case err != nil && r.Pending && r.Label == to:
		default:
			r.Pending = r.Pending && err != nil
			settled = append(settled, r)
		}
	}
	if serr := s.mem.SetHomeAssistant(State{Pets: settled, Removed: st.Removed, Legacy: st.Legacy}); serr != nil {
		s.log.Warn("pet ids not saved; the next sync settles them", "err", serr)
	}
	if err == nil {
		s.mu.Lock()
		s.ids[to] = s.ids[from]
		delete(s.ids, from)
		if ann, ok := s.announcers[from]; ok && s.announcers[to] == nil {
			s.announcers[to] = ann
			s.lastAnnounce[to] = s.lastAnnounce[from]
		}
		delete(s.announcers, from)
		delete(s.lastAnnounce, from)
		s.mu.Unlock()
	}
	return err
}

// Sync publishes the device's discovery config, with every pet's
// components, and removes the components of pets that are gone (also of
// pets forgotten while the agent was away: the pets are kept in Memory).
// The first sync after an upgrade migrates the entities an earlier
// version announced one config at a time.
func (s *Service) Sync() error { return s.sync(false) }

func (s *Service) sync(birth bool) error {
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
	st := s.mem.HomeAssistant()
	kept, dropped := reconcile(records(st), pets, s.opt.NewID)
	removed := slices.Clone(st.Removed)
	for _, id := range dropped {
		s.log.Info("removing a pet's Home Assistant entities", "pet", id)
		for _, r := range PetRemoved(id) {
			if !slices.Contains(removed, r) {
				removed = append(removed, r)
			}
		}
	}
	if len(removed) > maxRemoved {
		removed = removed[len(removed)-maxRemoved:]
	}

	var msgs []Message
	// Migration of an earlier version's per-entity configs: the pets
	// still here are handed over, the others removed.
	// A legacy pet is handed over when its id is still a pet's (it may
	// have been renamed since).
	var legacyKept, legacyGone []string
	for _, l := range st.Legacy {
		id := LegacyID(l)
		if slices.ContainsFunc(kept, func(r PetRecord) bool { return r.ID == id }) {
			legacyKept = append(legacyKept, id)
		} else {
			legacyGone = append(legacyGone, id)
		}
	}
	migrate := len(st.Legacy) > 0
	if migrate {
		s.log.Info("migrating Home Assistant entities to device-based discovery", "pets", len(legacyKept))
		for _, t := range s.disc.LegacyTopics(legacyKept) {
			msgs = append(msgs, Message{Topic: t, Payload: MigratePayload, Retained: true})
		}
	}
	if len(removed) > 0 && (len(dropped) > 0 || birth || migrate) {
		// Components named with their platform alone are removed; then
		// the config is published again without them.
		msgs = append(msgs, s.disc.DeviceConfig(kept, removed))
	}
	msgs = append(msgs, s.disc.DeviceConfig(kept, nil))
	if migrate {
		for _, t := range s.disc.LegacyTopics(legacyKept) {
			msgs = append(msgs, Message{Topic: t, Retained: true})
		}
		for _, t := range s.disc.LegacyTopics(legacyGone)[1:] {
			msgs = append(msgs, Message{Topic: t, Retained: true})
		}
		for _, id := range legacyGone {
			msgs = append(msgs, s.disc.ClearPet(id)...)
		}
	}
	for _, id := range dropped {
		msgs = append(msgs, s.disc.ClearPet(id)...)
	}
	msgs = append(msgs, s.stateMessages()...)
	for _, m := range msgs {
		if err := s.pub.PublishRaw(m.Topic, m.Payload, m.Retained); err != nil {
			return fmt.Errorf("publish %s: %w", m.Topic, err)
		}
	}
	if birth {
		removed = nil // Home Assistant has heard of them now
	}
	if err := s.mem.SetHomeAssistant(State{Pets: kept, Removed: removed}); err != nil {
		return err
	}
	s.mu.Lock()
	s.ids = map[string]string{}
	for _, r := range kept {
		s.ids[r.Label] = r.ID
	}
	for l := range s.announcers {
		if !slices.Contains(pets, l) {
			delete(s.announcers, l)
			delete(s.lastAnnounce, l)
		}
	}
	s.mu.Unlock()
	return nil
}

// stateMessages are the device's and the firmware's retained state.
func (s *Service) stateMessages() []Message {
	return []Message{
		{Topic: s.disc.Topic(TopicState), Payload: mustJSON(s.opt.State()), Retained: true},
		{Topic: s.disc.Topic(TopicFirmware), Payload: mustJSON(s.opt.Firmware()), Retained: true},
	}
}

// StateChanged publishes the device's and the firmware's state, in the
// background.
func (s *Service) StateChanged() {
	if !s.cfg.Enabled || !s.pub.Connected() {
		return
	}
	go s.publishAll(s.stateMessages())
}

// Birth handles a message on Home Assistant's status topic: when it says
// Home Assistant is online (it has just started), everything is
// published again after a short delay (Run does it), at most once per
// minBirthGap.
func (s *Service) Birth(payload []byte) {
	if !s.cfg.Enabled || strings.TrimSpace(string(payload)) != "online" {
		return
	}
	select {
	case s.birth <- struct{}{}:
	default: // one is pending already
	}
}

// Run answers Home Assistant's birth messages until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.birth:
		}
		wait := s.opt.BirthDelay()
		if !last.IsZero() {
			wait = max(wait, minBirthGap-time.Since(last))
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		last = time.Now()
		s.log.Info("Home Assistant started: publishing discovery and state again")
		if err := s.sync(true); err != nil {
			s.log.Warn("Home Assistant discovery", "err", err)
			continue
		}
		s.publishAll(s.presence())
	}
}

// presence says for each pet whether it is here, for a Home Assistant
// that has just started (the "here" topic is not retained, so that a
// stale "ON" never outlives the agent).
func (s *Service) presence() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	var msgs []Message
	for l, id := range s.ids {
		state := PayloadOff
		if ann := s.announcers[l]; ann != nil && ann.Current() == l {
			state = PayloadOn
		}
		msgs = append(msgs, Message{Topic: s.disc.PresentTopic(id), Payload: []byte(state)})
	}
	slices.SortFunc(msgs, func(a, b Message) int { return strings.Compare(a.Topic, b.Topic) })
	return msgs
}
