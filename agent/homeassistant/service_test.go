package homeassistant

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/whiskercam/whisker/agent/homeassistant/hatest"
	"github.com/whiskercam/whisker/agent/protocol"
	"github.com/whiskercam/whisker/learner"
)

// broker records what the service publishes, like a broker's retained
// store plus the stream of messages.
type broker struct {
	mu       sync.Mutex
	log      []Message
	retained map[string][]byte
	notify   chan struct{}
}

func newBroker() *broker {
	return &broker{retained: map[string][]byte{}, notify: make(chan struct{}, 1)}
}

func (b *broker) PublishRaw(topic string, payload []byte, retained bool) error {
	b.mu.Lock()
	b.log = append(b.log, Message{Topic: topic, Payload: slices.Clone(payload), Retained: retained})
	if retained {
		if len(payload) == 0 {
			delete(b.retained, topic)
		} else {
			b.retained[topic] = slices.Clone(payload)
		}
	}
	b.mu.Unlock()
	select {
	case b.notify <- struct{}{}:
	default:
	}
	return nil
}

func (b *broker) Connected() bool { return true }

func (b *broker) take() []Message {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := b.log
	b.log = nil
	return out
}

// waitFor waits until the messages published since the last take
// satisfy cond, and returns them.
func (b *broker) waitFor(t *testing.T, what string, cond func([]Message) bool) []Message {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		b.mu.Lock()
		msgs := slices.Clone(b.log)
		b.mu.Unlock()
		if cond(msgs) {
			b.take()
			return msgs
		}
		select {
		case <-b.notify:
		case <-deadline:
			t.Fatalf("%s: not published; have %v", what, topics(msgs))
		}
	}
}

func topics(msgs []Message) []string {
	var out []string
	for _, m := range msgs {
		out = append(out, fmt.Sprintf("%s (%d bytes, retained %v)", m.Topic, len(m.Payload), m.Retained))
	}
	return out
}

type memory struct {
	mu    sync.Mutex
	st    State
	saves int
	fail  error
}

func (m *memory) HomeAssistant() State {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.st
}

func (m *memory) SetHomeAssistant(st State) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	m.st = st
	m.saves++
	return nil
}

type fixture struct {
	svc    *Service
	broker *broker
	mem    *memory
	mu     sync.Mutex
	labels []string
}

func (f *fixture) setLabels(l ...string) {
	f.mu.Lock()
	f.labels = l
	f.mu.Unlock()
}

func newFixture(t *testing.T, mem *memory, labels ...string) *fixture {
	t.Helper()
	f := &fixture{broker: newBroker(), mem: mem, labels: labels}
	n := 0
	svc, err := New(Default(), Options{
		Device: "porch", Version: "1.2.3", Topics: "whisker/porch/", NoPetLabels: []string{"neither"},
		Announce: learner.AnnouncerConfig{N: 2, M: 3, MaxGap: time.Minute},
		Pets: func() ([]string, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			return slices.Clone(f.labels), nil
		},
		NewID:      func() string { n++; return fmt.Sprintf("pet_%08d", n) },
		BirthDelay: func() time.Duration { return 0 },
	}, slog.New(slog.NewTextHandler(io.Discard, nil)), f.broker, mem)
	if err != nil {
		t.Fatal(err)
	}
	f.svc = svc
	return f
}

// deviceConfigs are the device configs among messages, checked against
// the schema.
func deviceConfigs(t *testing.T, msgs []Message) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, m := range msgs {
		if m.Topic != "homeassistant/device/whisker_porch/config" {
			continue
		}
		if !m.Retained {
			t.Errorf("device config not retained")
		}
		cfg, errs := hatest.DevicePayload(m.Payload)
		for _, err := range errs {
			t.Error(err)
		}
		out = append(out, cfg)
	}
	return out
}

// uniqueIDs maps each pet label's components to their unique_ids.
func uniqueIDs(cfg map[string]any) map[string][]string {
	out := map[string][]string{}
	for _, v := range cfg["components"].(map[string]any) {
		c := v.(map[string]any)
		id, _ := c["unique_id"].(string)
		name, _ := c["name"].(string)
		label, _, _ := strings.Cut(name, " ")
		if topic, _ := c["state_topic"].(string); strings.Contains(topic, "/pet/") || c["image_topic"] != nil {
			out[label] = append(out[label], id)
		}
	}
	for _, ids := range out {
		slices.Sort(ids)
	}
	return out
}

func TestRenameKeepsUniqueIDsAndForgetRemoves(t *testing.T) {
	f := newFixture(t, &memory{}, "Tigger", "Misty", "neither")
	if err := f.svc.Sync(); err != nil {
		t.Fatal(err)
	}
	cfgs := deviceConfigs(t, f.broker.take())
	if len(cfgs) != 1 {
		t.Fatalf("%d device configs", len(cfgs))
	}
	before := uniqueIDs(cfgs[0])
	if len(before["Tigger"]) != 5 || len(before["Misty"]) != 5 || len(before["neither"]) != 0 {
		t.Fatalf("pets' components: %v", before)
	}

	// Rename Tigger to Tiger: every unique_id stays, the names follow.
	err := f.svc.Rename("Tigger", "Tiger", func() error {
		st := f.mem.HomeAssistant()
		if !slices.ContainsFunc(st.Pets, func(r PetRecord) bool { return r.Label == "Tiger" && r.Pending }) {
			t.Error("the rename was applied before the pending record was kept")
		}
		f.setLabels("Tiger", "Misty", "neither")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.svc.Sync(); err != nil {
		t.Fatal(err)
	}
	cfgs = deviceConfigs(t, f.broker.take())
	after := uniqueIDs(cfgs[len(cfgs)-1])
	if !slices.Equal(after["Tiger"], before["Tigger"]) || !slices.Equal(after["Misty"], before["Misty"]) {
		t.Errorf("unique_ids changed by the rename: before %v, after %v", before, after)
	}
	if f.svc.PetID("Tiger") == "" || f.svc.PetID("Tigger") != "" {
		t.Errorf("ids after the rename: Tiger %q, Tigger %q", f.svc.PetID("Tiger"), f.svc.PetID("Tigger"))
	}

	// A rename that fails leaves everything as it was.
	misty := f.svc.PetID("Misty")
	if err := f.svc.Rename("Misty", "Mist", func() error { return errors.New("no") }); err == nil {
		t.Fatal("the rename's error was lost")
	}
	if st := f.mem.HomeAssistant(); slices.ContainsFunc(st.Pets, func(r PetRecord) bool { return r.Label == "Mist" }) || f.svc.PetID("Misty") != misty {
		t.Errorf("a failed rename left %v", st.Pets)
	}

	// Forget Misty: her components are sent as removals, then the config
	// without them; her retained state is emptied.
	f.setLabels("Tiger", "neither")
	if err := f.svc.Sync(); err != nil {
		t.Fatal(err)
	}
	msgs := f.broker.take()
	cfgs = deviceConfigs(t, msgs)
	if len(cfgs) != 2 {
		t.Fatalf("%d device configs, want the removal and the final one", len(cfgs))
	}
	removal := cfgs[0]["components"].(map[string]any)
	for _, r := range PetRemoved(misty) {
		if c := removal[r.Key].(map[string]any); len(c) != 1 || c["platform"] != r.Platform {
			t.Errorf("removal of %s: %v", r.Key, c)
		}
	}
	if ids := uniqueIDs(cfgs[1]); len(ids["Misty"]) != 0 || len(ids["Tiger"]) != 5 {
		t.Errorf("final config: %v", ids)
	}
	for _, topic := range []string{"whisker/porch/pet/" + misty, "whisker/porch/pet/" + misty + "/image"} {
		if !slices.ContainsFunc(msgs, func(m Message) bool { return m.Topic == topic && len(m.Payload) == 0 && m.Retained }) {
			t.Errorf("%s not emptied", topic)
		}
	}
	// The removals are told again at Home Assistant's next start, then
	// forgotten.
	if st := f.mem.HomeAssistant(); len(st.Removed) != 5 {
		t.Errorf("removed components remembered: %v", st.Removed)
	}
}

func TestMigrationFromPerEntityConfigs(t *testing.T) {
	mem := &memory{st: State{Legacy: []string{"Tigger", "Gone"}}}
	f := newFixture(t, mem, "Tigger", "Misty")
	if id := f.svc.PetID("Tigger"); id != "tigger_49df5f" {
		t.Fatalf("before the first sync, Tigger's id is %q", id)
	}
	if err := f.svc.Sync(); err != nil {
		t.Fatal(err)
	}
	msgs := f.broker.take()
	tigger := "homeassistant/sensor/whisker_porch/tigger_49df5f_last_seen/config"
	camera := "homeassistant/camera/whisker_porch/snapshot/config"
	gone := "homeassistant/binary_sensor/whisker_porch/" + LegacyID("Gone") + "_here/config"
	index := func(topic string, payload []byte) int {
		return slices.IndexFunc(msgs, func(m Message) bool {
			return m.Topic == topic && string(m.Payload) == string(payload) && m.Retained
		})
	}
	migrate, device := index(tigger, MigratePayload), slices.IndexFunc(msgs, func(m Message) bool { return strings.HasPrefix(m.Topic, "homeassistant/device/") })
	cleanup := index(tigger, nil)
	if migrate < 0 || device < 0 || cleanup < 0 || !(migrate < device && device < cleanup) {
		t.Fatalf("migration out of order (migrate %d, device config %d, cleanup %d): %v", migrate, device, cleanup, topics(msgs))
	}
	if index(camera, MigratePayload) < 0 || index(camera, nil) < device {
		t.Errorf("the camera entity is not migrated: %v", topics(msgs))
	}
	// A pet forgotten while the old version ran is removed, not migrated.
	if index(gone, MigratePayload) >= 0 || index(gone, nil) < 0 {
		t.Errorf("forgotten pet: %v", topics(msgs))
	}
	cfg := deviceConfigs(t, msgs)[0]
	c := cfg["components"].(map[string]any)["tigger_49df5f_last_seen"].(map[string]any)
	if c["unique_id"] != "whisker_porch_tigger_49df5f_last_seen" || c["state_topic"] != "whisker/porch/pet/tigger_49df5f" {
		t.Errorf("migrated component: %v", c)
	}
	if snap := cfg["components"].(map[string]any)["snapshot"].(map[string]any); snap["unique_id"] != "whisker_porch_snapshot" {
		t.Errorf("camera: %v", snap)
	}
	if st := mem.HomeAssistant(); len(st.Legacy) != 0 || len(st.Pets) != 2 {
		t.Errorf("after the migration: %+v", st)
	}
	// Nothing is migrated twice.
	if err := f.svc.Sync(); err != nil {
		t.Fatal(err)
	}
	if again := f.broker.take(); slices.ContainsFunc(again, func(m Message) bool { return strings.Contains(string(m.Payload), "migrate_discovery") }) {
		t.Errorf("migrated again: %v", topics(again))
	}
}

// A pet renamed before the first sync after an upgrade is migrated under
// its new name, keeping its entities.
func TestRenameBeforeMigration(t *testing.T) {
	mem := &memory{st: State{Legacy: []string{"Tigger"}}}
	f := newFixture(t, mem, "Tigger")
	if err := f.svc.Rename("Tigger", "Tiger", func() error { f.setLabels("Tiger"); return nil }); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.Sync(); err != nil {
		t.Fatal(err)
	}
	msgs := f.broker.take()
	old := "homeassistant/sensor/whisker_porch/tigger_49df5f_last_seen/config"
	if !slices.ContainsFunc(msgs, func(m Message) bool { return m.Topic == old && string(m.Payload) == string(MigratePayload) }) {
		t.Errorf("the renamed pet was not migrated: %v", topics(msgs))
	}
	ids := uniqueIDs(deviceConfigs(t, msgs)[0])
	if !slices.Contains(ids["Tiger"], "whisker_porch_tigger_49df5f_last_seen") {
		t.Errorf("unique_ids after the rename: %v", ids)
	}
}

// A rename interrupted by a crash is settled by the next sync, whether
// the store had the rename or not.
func TestInterruptedRenameSettles(t *testing.T) {
	for _, c := range []struct {
		labels []string
		want   string
	}{{[]string{"Tigger"}, "Tigger"}, {[]string{"Tiger"}, "Tiger"}} {
		mem := &memory{st: State{Pets: []PetRecord{{ID: "pet_a", Label: "Tiger"}, {ID: "pet_a", Label: "Tigger", Pending: true}}}}
		f := newFixture(t, mem, c.labels...)
		if err := f.svc.Sync(); err != nil {
			t.Fatal(err)
		}
		if st := mem.HomeAssistant(); !slices.Equal(st.Pets, []PetRecord{{ID: "pet_a", Label: c.want}}) {
			t.Errorf("labels %v: records %v", c.labels, st.Pets)
		}
	}
}

func TestBirthPublishesAgainAtMostEveryGap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, &memory{}, "Tigger")
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- f.svc.Run(ctx) }()
		defer func() { cancel(); <-done }()

		f.svc.Birth([]byte("offline")) // Home Assistant's will: nothing to do
		synctest.Wait()
		if msgs := f.broker.take(); len(msgs) != 0 {
			t.Fatalf("published after an offline message: %v", topics(msgs))
		}
		start := time.Now()
		f.svc.Birth([]byte("online"))
		synctest.Wait()
		msgs := f.broker.take()
		if len(deviceConfigs(t, msgs)) != 1 {
			t.Fatalf("no discovery after the birth message: %v", topics(msgs))
		}
		if !slices.ContainsFunc(msgs, func(m Message) bool { return strings.HasSuffix(m.Topic, "/present") && string(m.Payload) == "OFF" }) {
			t.Errorf("presence not published after the birth message: %v", topics(msgs))
		}
		for _, topic := range []string{"whisker/porch/ha/state", "whisker/porch/ha/firmware"} {
			if !slices.ContainsFunc(msgs, func(m Message) bool { return m.Topic == topic && m.Retained }) {
				t.Errorf("%s not published", topic)
			}
		}
		// A flood of birth messages is answered once per gap.
		for range 5 {
			f.svc.Birth([]byte("online"))
		}
		synctest.Wait()
		if msgs := f.broker.take(); len(msgs) != 0 {
			t.Fatalf("answered again within the gap: %v", topics(msgs))
		}
		time.Sleep(minBirthGap)
		synctest.Wait()
		if msgs := f.broker.take(); len(deviceConfigs(t, msgs)) != 1 {
			t.Fatalf("not answered after the gap: %v", topics(msgs))
		}
		if d := time.Since(start); d < minBirthGap {
			t.Errorf("second answer after %v", d)
		}
	})
}

func TestObservePublishesEventsPicturesAndPresence(t *testing.T) {
	f := newFixture(t, &memory{}, "Tigger", "neither")
	if err := f.svc.Sync(); err != nil {
		t.Fatal(err)
	}
	f.broker.take()
	id := f.svc.PetID("Tigger")
	pics := func(i int) ([]byte, []byte) { return []byte("frame"), []byte("crop") }
	at := time.Now()
	frame := func(label string, conf float64) []protocol.Sighting {
		at = at.Add(time.Second)
		return []protocol.Sighting{{ID: fmt.Sprintf("s-%d", at.Unix()), Label: label, Confidence: conf, TS: protocol.Timestamp(at)}}
	}
	// 2 of 3 frames agree: arrived.
	f.svc.Observe(at, frame("Tigger", 0.9), pics)
	f.svc.Observe(at, frame("Tigger", 0.95), pics)
	msgs := f.broker.waitFor(t, "the arrival", func(m []Message) bool { return len(m) >= 5 })
	has := func(topic, payload string, retained bool) bool {
		return slices.ContainsFunc(msgs, func(m Message) bool {
			return m.Topic == topic && m.Retained == retained && (payload == "" || strings.Contains(string(m.Payload), payload))
		})
	}
	root := "whisker/porch/pet/" + id
	for _, c := range []struct {
		topic, payload string
		retained       bool
	}{
		{root + "/event", `"event_type":"arrived"`, false},
		{root, `"last_seen"`, true},
		{root + "/present", "ON", false},
		{root + "/image", "crop", true},
		{"whisker/porch/snapshot/latest", "frame", true},
	} {
		if !has(c.topic, c.payload, c.retained) {
			t.Errorf("no %s with %q (retained %v): %v", c.topic, c.payload, c.retained, topics(msgs))
		}
	}
	var ev PetEvent
	for _, m := range msgs {
		if m.Topic == root+"/event" {
			json.Unmarshal(m.Payload, &ev)
		}
	}
	if ev.Label != "Tigger" || ev.Where != "porch" || ev.Sighting == "" {
		t.Errorf("event %+v", ev)
	}
	// Frames without her: left, and "here" off. A no-pet label is never
	// announced.
	for range 3 {
		f.svc.Observe(at, frame("neither", 0.99), pics)
	}
	msgs = f.broker.waitFor(t, "the departure", func(m []Message) bool { return len(m) >= 2 })
	if !has(root+"/event", `"event_type":"left"`, false) || !has(root+"/present", "OFF", false) {
		t.Errorf("departure: %v", topics(msgs))
	}
	if slices.ContainsFunc(msgs, func(m Message) bool { return strings.Contains(string(m.Payload), "neither") }) {
		t.Errorf("a no-pet label was announced: %v", topics(msgs))
	}
}
