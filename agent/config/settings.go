package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/whiskercam/whisker/agent/homeassistant"
	"github.com/whiskercam/whisker/internal/atomicfile"
)

// settingsFormat is the version of settings.json.
const settingsFormat = 1

// Settings are the values changed at run time over MQTT, kept in
// state_dir/settings.json so that they survive restarts.
type Settings struct {
	mu   sync.Mutex
	path string
	v    settingsFile
}

type settingsFile struct {
	Format int `json:"format"`
	// Threshold overrides learner.threshold when set.
	Threshold *float64 `json:"threshold,omitempty"`
	// Paused stops recognition (the pause command) until resumed.
	Paused bool `json:"paused,omitempty"`
	// HomeAssistant keeps the ids of the pets' Home Assistant entities.
	HomeAssistant *homeassistant.State `json:"homeassistant,omitempty"`
	// Published are the pets an earlier version announced to Home
	// Assistant one config per entity; they are migrated once.
	Published []string `json:"ha_published,omitempty"`
}

// LoadSettings reads the settings file, if there is one.
func LoadSettings(dir string) (*Settings, error) {
	s := &Settings{path: filepath.Join(dir, "settings.json"), v: settingsFile{Format: settingsFormat}}
	data, err := os.ReadFile(s.path)
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, err
	}
	var v settingsFile
	if err := json.Unmarshal(data, &v); err != nil {
		return nil, fmt.Errorf("%s: %w", s.path, err)
	}
	if v.Format != settingsFormat {
		return nil, fmt.Errorf("%s: format %d, this build reads %d", s.path, v.Format, settingsFormat)
	}
	if t := v.Threshold; t != nil && !(*t >= 0 && *t <= 1) {
		return nil, fmt.Errorf("%s: threshold %g is not between 0 and 1", s.path, *t)
	}
	s.v = v
	return s, nil
}

// Threshold returns the threshold set at run time, if any.
func (s *Settings) Threshold() (float64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.v.Threshold == nil {
		return 0, false
	}
	return *s.v.Threshold, true
}

// SetThreshold sets and stores the threshold.
func (s *Settings) SetThreshold(t float64) error {
	return s.update(func(v *settingsFile) { v.Threshold = &t })
}

// Paused says whether recognition is paused.
func (s *Settings) Paused() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.v.Paused
}

// SetPaused pauses or resumes recognition, and keeps it so.
func (s *Settings) SetPaused(p bool) error {
	return s.update(func(v *settingsFile) { v.Paused = p })
}

// HomeAssistant returns what the Home Assistant service keeps: the pets'
// ids, and the pets an earlier version announced (to migrate).
func (s *Settings) HomeAssistant() homeassistant.State {
	s.mu.Lock()
	defer s.mu.Unlock()
	var st homeassistant.State
	if s.v.HomeAssistant != nil {
		st.Pets = append(st.Pets, s.v.HomeAssistant.Pets...)
		st.Removed = append(st.Removed, s.v.HomeAssistant.Removed...)
	}
	st.Legacy = append([]string(nil), s.v.Published...)
	return st
}

// SetHomeAssistant keeps the Home Assistant service's state; the pets of
// an earlier version stay listed until the state says they are migrated.
func (s *Settings) SetHomeAssistant(st homeassistant.State) error {
	return s.update(func(v *settingsFile) {
		keep := homeassistant.State{Pets: append([]homeassistant.PetRecord(nil), st.Pets...), Removed: append([]homeassistant.Removed(nil), st.Removed...)}
		v.HomeAssistant = &keep
		v.Published = append([]string(nil), st.Legacy...)
	})
}

func (s *Settings) update(change func(*settingsFile)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.v
	change(&v)
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if err := atomicfile.Write(s.path, data, 0o644); err != nil {
		return err
	}
	s.v = v
	return nil
}
