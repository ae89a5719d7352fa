// Package metrics holds the agent's Prometheus metrics, in a registry of
// their own: what the agent counts as it works (frames embedded,
// sightings, training runs, announcements, requests), and what it reads
// from its state once per scrape (Reading: frames, the broker, the
// camera, the firmware, the head and the samples). Counters that count
// outcomes label them "outcome". Series of a label are removed when the
// label is forgotten or renamed (Prune). It is pure Go.
package metrics

import (
	"errors"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/whiskercam/whisker/agent/protocol"
	"github.com/whiskercam/whisker/learner"
)

// Metrics are the agent's metrics.
type Metrics struct {
	reg       *prometheus.Registry
	inference prometheus.Histogram
	sightings *prometheus.CounterVec
	trainRuns *prometheus.CounterVec
	trainTime prometheus.Histogram
	announces *prometheus.CounterVec
	requests  *prometheus.CounterVec
	lastSeen  *prometheus.GaugeVec

	mu     sync.Mutex
	labels map[string]bool // label values in sightings, announces, lastSeen
	// gone are labels pruned since: a frame classified just before a
	// rename must not bring their series back.
	gone map[string]bool
}

// Reading is the agent's state as the metrics show it, read when scraped.
type Reading struct {
	// FramesCaptured were read from the camera; FramesDropped were
	// replaced in the latest-frame mailbox before inference took them.
	FramesCaptured, FramesDropped uint64
	// Still and Paused are frames not sent through the backbone: the
	// motion gate found them still, or recognition was paused.
	Still, Paused uint64
	// SightingsDropped while the broker was slow or away; Reconnects are
	// the broker connections lost; CameraReopens after a failure.
	SightingsDropped, Reconnects, CameraReopens uint64
	Connected, CameraUp, RecognitionPaused      bool
	Firmware                                    protocol.FirmwareStatus
	// HeadClasses are the current head's classes (0: no head); Accuracy
	// is its cross-validated accuracy, when Measured.
	HeadClasses int
	Accuracy    float64
	Measured    bool
	// Samples are the labelled samples stored, by label.
	Samples []learner.LabelCount
}

// Outcomes of requests (the outcome label of whisker_requests_total).
const (
	outcomeOK      = "ok"
	outcomeRefused = "refused"
)

// New makes the metrics of an agent of a version running a backbone;
// read gives the agent's state when the metrics are scraped.
func New(version, backbone string, read func() Reading) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		inference: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "whisker_inference_seconds",
			Help:    "Time to preprocess and embed one frame with the backbone.",
			Buckets: prometheus.ExponentialBuckets(0.005, 1.6, 14),
		}),
		sightings: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "whisker_sightings_total",
			Help: "Classified frames, by the label they were given.",
		}, []string{"label"}),
		trainRuns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "whisker_training_runs_total",
			Help: "Head training runs, by outcome (ok, too_few_labels, error).",
		}, []string{"outcome"}),
		trainTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "whisker_training_seconds",
			Help:    "Time of successful head training runs.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 12),
		}),
		announces: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "whisker_announcements_total",
			Help: "Pet announcements published, by label.",
		}, []string{"label"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "whisker_requests_total",
			Help: "Label and command requests answered (Home Assistant's commands too), by topic and outcome (ok, refused).",
		}, []string{"topic", "outcome"}),
		lastSeen: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "whisker_pet_last_seen_timestamp_seconds",
			Help: "When each pet was last sighted (Unix time of the frame).",
		}, []string{"label"}),
		labels: map[string]bool{},
		gone:   map[string]bool{},
	}
	info := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "whisker_build_info",
		Help:        "Version and backbone of the running agent.",
		ConstLabels: prometheus.Labels{"version": version, "backbone": backbone},
	})
	info.Set(1)
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.inference, m.sightings, m.trainRuns, m.trainTime, m.announces, m.requests, m.lastSeen,
		stateCollector(read), info,
	)
	return m
}

// Handler serves the metrics in Prometheus' text format.
func (m *Metrics) Handler() http.Handler { return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}) }

// Inferred records the time one frame took through the backbone.
func (m *Metrics) Inferred(d time.Duration) { m.inference.Observe(d.Seconds()) }

// Trained counts a training run by its outcome, and times one that
// succeeded.
func (m *Metrics) Trained(rep learner.TrainReport) {
	switch {
	case rep.Err == nil:
		m.trainRuns.WithLabelValues("ok").Inc()
		m.trainTime.Observe(rep.Duration.Seconds())
	case errors.Is(rep.Err, learner.ErrTooFewClasses):
		m.trainRuns.WithLabelValues("too_few_labels").Inc()
	default:
		m.trainRuns.WithLabelValues("error").Inc()
	}
}

// Sighted counts a sighting, and for a pet, when it was seen.
func (m *Metrics) Sighted(label string, at time.Time, pet bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.gone[label] {
		return
	}
	m.labels[label] = true
	m.sightings.WithLabelValues(label).Inc()
	if pet {
		m.lastSeen.WithLabelValues(label).Set(float64(at.UnixNano()) / 1e9)
	}
}

// Announced counts an announcement of a pet.
func (m *Metrics) Announced(label string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.gone[label] {
		return
	}
	m.labels[label] = true
	m.announces.WithLabelValues(label).Inc()
}

// Prune removes the series of labels that are gone (forgotten, or
// renamed away): every one but labels; "unknown" stays.
func (m *Metrics) Prune(labels []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, l := range labels {
		delete(m.gone, l)
	}
	for l := range m.labels {
		if l == protocol.Unknown || slices.Contains(labels, l) {
			continue
		}
		m.sightings.DeleteLabelValues(l)
		m.announces.DeleteLabelValues(l)
		m.lastSeen.DeleteLabelValues(l)
		delete(m.labels, l)
		m.gone[l] = true
	}
}

// Request counts an answered request.
func (m *Metrics) Request(topic string, ok bool) {
	outcome := outcomeOK
	if !ok {
		outcome = outcomeRefused
	}
	m.requests.WithLabelValues(topic, outcome).Inc()
}

// stateCollector exports a Reading, taken once per scrape.
type stateCollector func() Reading

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

var (
	capturedDesc   = desc("whisker_frames_captured_total", "Frames read from the camera.")
	droppedDesc    = desc("whisker_frames_dropped_total", "Frames replaced in the latest-frame mailbox before inference took them.")
	skippedDesc    = desc("whisker_frames_skipped_total", "Frames not sent through the backbone, by reason: the motion gate found them still, or recognition was paused.", "reason")
	sightDropDesc  = desc("whisker_sightings_dropped_total", "Sightings dropped while the broker was slow or away.")
	reconnectsDesc = desc("whisker_mqtt_reconnects_total", "MQTT connections lost (each is followed by reconnect attempts).")
	reopensDesc    = desc("whisker_camera_reopens_total", "Times the camera was reopened after a failure.")
	connectedDesc  = desc("whisker_mqtt_connected", "1 while the broker connection is up.")
	cameraUpDesc   = desc("whisker_camera_up", "1 while the camera delivers frames.")
	fallbackDesc   = desc("whisker_firmware_fallback", "1 while boot runs something other than the firmware slot that should run (firmware.fallback on the status topic).")
	pausedDesc     = desc("whisker_recognition_paused", "1 while recognition is paused.")
	classesDesc    = desc("whisker_head_classes", "Classes of the current head (0: no head).")
	samplesDesc    = desc("whisker_samples", "Labelled samples stored, by label.", "label")
	firmwareDesc   = desc("whisker_firmware_info", "The firmware running: version, slot (a, b, or empty for the installed binary) and bundle.",
		"version", "slot", "bundle")
	accuracyDesc = desc("whisker_head_cv_accuracy", "Cross-validated accuracy of the current head (0 to 1), once measured.")
)

func (c stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{capturedDesc, droppedDesc, skippedDesc, sightDropDesc, reconnectsDesc, reopensDesc,
		connectedDesc, cameraUpDesc, fallbackDesc, pausedDesc, classesDesc, samplesDesc, firmwareDesc, accuracyDesc} {
		ch <- d
	}
}

func (c stateCollector) Collect(ch chan<- prometheus.Metric) {
	r := c()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	flag := func(d *prometheus.Desc, b bool) {
		if b {
			gauge(d, 1)
		} else {
			gauge(d, 0)
		}
	}
	counter(capturedDesc, r.FramesCaptured)
	counter(droppedDesc, r.FramesDropped)
	counter(skippedDesc, r.Still, "motion_gate")
	counter(skippedDesc, r.Paused, "paused")
	counter(sightDropDesc, r.SightingsDropped)
	counter(reconnectsDesc, r.Reconnects)
	counter(reopensDesc, r.CameraReopens)
	flag(connectedDesc, r.Connected)
	flag(cameraUpDesc, r.CameraUp)
	flag(fallbackDesc, r.Firmware.Fallback != nil)
	flag(pausedDesc, r.RecognitionPaused)
	gauge(classesDesc, float64(r.HeadClasses))
	for _, lc := range r.Samples {
		gauge(samplesDesc, float64(lc.Samples), lc.Label)
	}
	gauge(firmwareDesc, 1, r.Firmware.Version, r.Firmware.Slot, r.Firmware.Bundle)
	if r.Measured {
		gauge(accuracyDesc, r.Accuracy)
	}
}
