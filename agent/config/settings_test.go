package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/whiskercam/whisker/agent/homeassistant"
)

// Pausing and the pets' Home Assistant ids survive a restart; the pets an
// earlier version announced are read, and forgotten once migrated.
func TestSettingsSurviveARestart(t *testing.T) {
	dir := t.TempDir()
	// What an earlier version wrote.
	if err := os.WriteFile(filepath.Join(dir, "settings.json"), []byte(`{"format":1,"threshold":0.7,"ha_published":["Tigger","Misty"]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := LoadSettings(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st := s.HomeAssistant(); !slices.Equal(st.Legacy, []string{"Tigger", "Misty"}) || len(st.Pets) != 0 {
		t.Fatalf("legacy pets: %+v", st)
	}
	if s.Paused() {
		t.Fatal("paused by default")
	}
	if err := s.SetPaused(true); err != nil {
		t.Fatal(err)
	}
	pets := []homeassistant.PetRecord{{ID: homeassistant.LegacyID("Tigger"), Label: "Tigger"}}
	if err := s.SetHomeAssistant(homeassistant.State{Pets: pets, Removed: homeassistant.PetRemoved("pet_0000abcd")}); err != nil {
		t.Fatal(err)
	}
	s, err = LoadSettings(dir)
	if err != nil {
		t.Fatal(err)
	}
	st := s.HomeAssistant()
	if !s.Paused() || !slices.Equal(st.Pets, pets) || len(st.Removed) != 5 || len(st.Legacy) != 0 {
		t.Errorf("after a restart: paused %v, %+v", s.Paused(), st)
	}
	if v, ok := s.Threshold(); !ok || v != 0.7 {
		t.Errorf("threshold %v %v", v, ok)
	}
	data, _ := os.ReadFile(filepath.Join(dir, "settings.json"))
	if strings.Contains(string(data), "ha_published") {
		t.Errorf("migrated pets still listed: %s", data)
	}
}
