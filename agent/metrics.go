package agent

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the agent's Prometheus metrics, in a registry of its own.
type metrics struct {
	reg       *prometheus.Registry
	inference prometheus.Histogram
	sightings *prometheus.CounterVec
	trainRuns *prometheus.CounterVec
	trainTime prometheus.Histogram
	announced *prometheus.CounterVec
	requests  *prometheus.CounterVec
}

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
		announced: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "whisker_announcements_total",
			Help: "Pet announcements published, by label.",
		}, []string{"label"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "whisker_requests_total",
			Help: "Label and command requests answered, by topic and outcome.",
		}, []string{"topic", "ok"}),
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
		m.inference, m.sightings, m.trainRuns, m.trainTime, m.announced, m.requests,
		counter("whisker_frames_captured_total", "Frames read from the camera.",
			func() float64 { return float64(a.capture.Status().Frames) }),
		counter("whisker_frames_dropped_total", "Frames replaced in the latest-frame mailbox before inference took them.",
			func() float64 { _, d := a.box.Stats(); return float64(d) }),
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
		gauge("whisker_head_classes", "Classes of the current head (0: no head).",
			func() float64 {
				if h := a.trainer.Head(); h != nil {
					return float64(len(h.Classes))
				}
				return 0
			}),
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
