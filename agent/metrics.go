package agent

import (
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/whiskercam/whisker/agent/protocol"
)

// metrics are the agent's Prometheus metrics, in a registry of its own.
// Counters that count outcomes label them "outcome". Series of a label
// are removed when the label is forgotten or renamed (prune).
type metrics struct {
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

// Outcomes of requests (the outcome label of whisker_requests_total).
const (
	outcomeOK      = "ok"
	outcomeRefused = "refused"
)

func newMetrics(a *Agent) *metrics {
	m := &metrics{
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
	counter := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, f)
	}
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	b2f := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.inference, m.sightings, m.trainRuns, m.trainTime, m.announces, m.requests, m.lastSeen,
		counter("whisker_frames_captured_total", "Frames read from the camera.",
			func() float64 { return float64(a.capture.Status().Frames) }),
		counter("whisker_frames_dropped_total", "Frames replaced in the latest-frame mailbox before inference took them.",
			func() float64 { _, d := a.box.Stats(); return float64(d) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "whisker_frames_skipped_total", Help: "Frames not sent through the backbone, by reason: the motion gate found them still, or recognition was paused.",
			ConstLabels: prometheus.Labels{"reason": "motion_gate"},
		}, func() float64 { return float64(a.pipe.Stats().Still) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "whisker_frames_skipped_total", Help: "Frames not sent through the backbone, by reason: the motion gate found them still, or recognition was paused.",
			ConstLabels: prometheus.Labels{"reason": "paused"},
		}, func() float64 { return float64(a.pipe.Stats().Paused) }),
		counter("whisker_sightings_dropped_total", "Sightings dropped while the broker was slow or away.",
			func() float64 {
				if b := a.bus.Load(); b != nil {
					return float64(b.Dropped())
				}
				return 0
			}),
		counter("whisker_mqtt_reconnects_total", "MQTT connections lost (each is followed by reconnect attempts).",
			func() float64 {
				if b := a.bus.Load(); b != nil {
					return float64(b.Reconnects())
				}
				return 0
			}),
		counter("whisker_camera_reopens_total", "Times the camera was reopened after a failure.",
			func() float64 { return float64(a.capture.Status().Reopens) }),
		gauge("whisker_mqtt_connected", "1 while the broker connection is up.",
			func() float64 { return b2f(a.connected()) }),
		gauge("whisker_camera_up", "1 while the camera delivers frames.",
			func() float64 { return b2f(a.capture.Status().Up) }),
		gauge("whisker_firmware_fallback", "1 while boot runs something other than the firmware slot that should run (firmware.fallback on the status topic).",
			func() float64 { return b2f(a.ota.Fallback() != nil) }),
		gauge("whisker_recognition_paused", "1 while recognition is paused.",
			func() float64 { return b2f(a.pipe.Paused()) }),
		gauge("whisker_head_classes", "Classes of the current head (0: no head).",
			func() float64 {
				if h := a.trainer.Head(); h != nil {
					return float64(len(h.Labels()))
				}
				return 0
			}),
		&agentCollector{a: a},
	)
	info := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "whisker_build_info",
		Help:        "Version and backbone of the running agent.",
		ConstLabels: prometheus.Labels{"version": a.version, "backbone": a.identity},
	})
	info.Set(1)
	m.reg.MustRegister(info)
	return m
}

// sighted counts a sighting, and for a pet, when it was seen.
func (m *metrics) sighted(label string, at time.Time, pet bool) {
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

// announced counts an announcement of a pet.
func (m *metrics) announced(label string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.gone[label] {
		return
	}
	m.labels[label] = true
	m.announces.WithLabelValues(label).Inc()
}

// prune removes the series of labels that are gone (forgotten, or
// renamed away); "unknown" stays.
func (m *metrics) prune(labels []string) {
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

// request counts an answered request.
func (m *metrics) request(topic string, ok bool) {
	outcome := outcomeOK
	if !ok {
		outcome = outcomeRefused
	}
	m.requests.WithLabelValues(topic, outcome).Inc()
}

// agentCollector exports what is read from the agent's state when
// scraped: samples per label, the firmware, and the head's
// cross-validated accuracy (only once measured).
type agentCollector struct{ a *Agent }

var (
	samplesDesc  = prometheus.NewDesc("whisker_samples", "Labelled samples stored, by label.", []string{"label"}, nil)
	firmwareDesc = prometheus.NewDesc("whisker_firmware_info", "The firmware running: version, slot (a, b, or empty for the installed binary) and bundle.",
		[]string{"version", "slot", "bundle"}, nil)
	accuracyDesc = prometheus.NewDesc("whisker_head_cv_accuracy", "Cross-validated accuracy of the current head (0 to 1), once measured.", nil, nil)
)

func (c *agentCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- samplesDesc
	ch <- firmwareDesc
	ch <- accuracyDesc
}

func (c *agentCollector) Collect(ch chan<- prometheus.Metric) {
	a := c.a
	if counts, err := a.store.Counts(a.identity); err == nil {
		for _, lc := range counts {
			ch <- prometheus.MustNewConstMetric(samplesDesc, prometheus.GaugeValue, float64(lc.Samples), lc.Label)
		}
	}
	fw := a.ota.Firmware()
	ch <- prometheus.MustNewConstMetric(firmwareDesc, prometheus.GaugeValue, 1, fw.Version, fw.Slot, fw.Bundle)
	if acc, ok := headAccuracy(a.trainer.Head()); ok {
		ch <- prometheus.MustNewConstMetric(accuracyDesc, prometheus.GaugeValue, acc)
	}
}
