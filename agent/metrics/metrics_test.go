package metrics

import (
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/whiskercam/whisker/agent/protocol"
	"github.com/whiskercam/whisker/learner"
)

func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		t.Fatalf("scrape: %d\n%s", rec.Code, rec.Body)
	}
	return rec.Body.String()
}

// The agent's state is read once per scrape and shown as counters and
// gauges; the accuracy only once measured.
func TestReadingIsShownWhenScraped(t *testing.T) {
	reads := 0
	r := Reading{FramesCaptured: 7, FramesDropped: 2, Still: 3, Paused: 1, Reconnects: 4, Connected: true, HeadClasses: 3,
		Firmware: protocol.FirmwareStatus{Version: "1.2", Slot: "a", Bundle: "b1"},
		Samples:  []learner.LabelCount{{Label: "Tigger", Samples: 5}, {Label: "neither", Samples: 2}}}
	m := New("1.2", "mobilenet", func() Reading { reads++; return r })
	out := scrape(t, m)
	for _, want := range []string{
		"# TYPE whisker_frames_captured_total counter", "whisker_frames_captured_total 7", "whisker_frames_dropped_total 2",
		`whisker_frames_skipped_total{reason="motion_gate"} 3`, `whisker_frames_skipped_total{reason="paused"} 1`,
		"whisker_mqtt_reconnects_total 4", "whisker_sightings_dropped_total 0",
		"# TYPE whisker_mqtt_connected gauge", "whisker_mqtt_connected 1", "whisker_camera_up 0", "whisker_firmware_fallback 0",
		"whisker_recognition_paused 0", "whisker_head_classes 3",
		`whisker_samples{label="Tigger"} 5`, `whisker_samples{label="neither"} 2`,
		`whisker_firmware_info{bundle="b1",slot="a",version="1.2"} 1`, `whisker_build_info{backbone="mobilenet",version="1.2"} 1`,
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("no %q in\n%s", want, out)
		}
	}
	if strings.Contains(out, "whisker_head_cv_accuracy") {
		t.Error("accuracy shown before it was measured")
	}
	if reads != 1 {
		t.Errorf("state read %d times in one scrape", reads)
	}
	r.Accuracy, r.Measured, r.Firmware.Fallback = 0.9, true, &protocol.Fallback{From: "b"}
	out = scrape(t, m)
	for _, want := range []string{"whisker_head_cv_accuracy 0.9", "whisker_firmware_fallback 1"} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("no %q in\n%s", want, out)
		}
	}
}

// A forgotten or renamed label's series go, and a sighting classified
// just before the rename does not bring them back; "unknown" stays.
func TestPruneRemovesGoneLabels(t *testing.T) {
	m := New("dev", "bb", func() Reading { return Reading{} })
	at := time.Unix(1700000000, 0)
	m.Sighted("Tigger", at, true)
	m.Sighted(protocol.Unknown, at, false)
	m.Announced("Tigger")
	m.Request("cmd", true)
	m.Request("label", false)
	m.Trained(learner.TrainReport{Duration: time.Millisecond})
	m.Trained(learner.TrainReport{Err: learner.ErrTooFewClasses})
	m.Trained(learner.TrainReport{Err: errors.New("disk")})
	out := scrape(t, m)
	for _, want := range []string{
		`whisker_sightings_total{label="Tigger"} 1`, `whisker_announcements_total{label="Tigger"} 1`,
		`whisker_pet_last_seen_timestamp_seconds{label="Tigger"} 1.7e+09`,
		`whisker_requests_total{outcome="ok",topic="cmd"} 1`, `whisker_requests_total{outcome="refused",topic="label"} 1`,
		`whisker_training_runs_total{outcome="ok"} 1`, `whisker_training_runs_total{outcome="too_few_labels"} 1`,
		`whisker_training_runs_total{outcome="error"} 1`, "whisker_training_seconds_count 1",
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("no %q in\n%s", want, out)
		}
	}
	m.Prune([]string{"Tiger"}) // renamed
	m.Sighted("Tigger", at, true)
	m.Announced("Tigger")
	out = scrape(t, m)
	if strings.Contains(out, `label="Tigger"`) {
		t.Errorf("series of a renamed label:\n%s", out)
	}
	if !strings.Contains(out, `whisker_sightings_total{label="unknown"} 1`) {
		t.Errorf("unknown pruned:\n%s", out)
	}
	m.Prune([]string{"Tiger", "Tigger"}) // labelled again
	m.Sighted("Tigger", at, true)
	if out = scrape(t, m); !strings.Contains(out, `whisker_sightings_total{label="Tigger"} 1`) {
		t.Errorf("a label given again is not counted:\n%s", out)
	}
}
