package agent

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/whiskercam/whisker/agent/protocol"
	"github.com/whiskercam/whisker/agent/web"
	"github.com/whiskercam/whisker/learner"
)

// webBackend is what the web page asks of the agent. Every change goes
// through the request worker, exactly as a label or command from MQTT
// does (same validation, idempotency by request_id, durability).
type webBackend struct{ a *Agent }

// Do hands a request to the request worker and waits for its answer.
func (w webBackend) Do(ctx context.Context, topic string, payload []byte) protocol.Result {
	reply := make(chan protocol.Result, 1)
	select {
	case w.a.inbound <- Inbound{Topic: topic, Payload: payload, Ack: func() {}, Reply: reply}:
	case <-ctx.Done():
		return protocol.Result{Error: "the agent is busy; try again"}
	}
	select {
	case r := <-reply:
		return r
	case <-ctx.Done():
		// The worker still applies it; a retry with the same request id
		// gets its answer.
		return protocol.Result{Error: "no answer in time; try again (it is applied once)"}
	}
}

func (w webBackend) Labels() ([]protocol.LabelCount, error) {
	counts, err := w.a.store.Counts(w.a.identity)
	if err != nil {
		return nil, err
	}
	return labelCounts(counts), nil
}

func (w webBackend) Samples() ([]web.Sample, error) {
	var out []web.Sample
	err := w.a.store.ForEach(false, func(s learner.Sample) error {
		if s.Backbone == w.a.identity {
			out = append(out, web.Sample{ID: s.ID, Label: s.Label, Time: s.Time, Source: s.Source})
		}
		return nil
	})
	return out, err
}

func (w webBackend) SampleJPEG(id uint64) ([]byte, error) {
	s, err := w.a.store.Get(id)
	if err != nil {
		return nil, err
	}
	if s.Backbone != w.a.identity {
		return nil, learner.ErrNotFound
	}
	return s.JPEG, nil
}

func (w webBackend) Head() *learner.HeadSummary { return w.a.trainer.Summary() }

func (w webBackend) Threshold() float64 { return w.a.threshold() }

func (w webBackend) Evaluate(ctx context.Context) (*learner.Report, error) {
	return w.a.trainer.Evaluate(ctx, learner.EvalConfig{Repeats: 5})
}

// Recent returns the last frames' sightings, newest first, with their
// current names.
func (w webBackend) Recent(n int) []protocol.Sighting {
	a := w.a
	a.obsMu.Lock()
	defer a.obsMu.Unlock()
	var out []protocol.Sighting
	for i := len(a.ring) - 1; i >= 0 && len(out) < n; i-- {
		for _, s := range slices.Backward(a.ring[i].sightings) {
			if len(out) < n {
				out = append(out, s)
			}
		}
	}
	return out
}

func (w webBackend) Latest() (string, []byte, bool) {
	r, ok := w.a.pipe.Recent("latest")
	if !ok {
		return "", nil, false
	}
	img, _, ok := w.a.pipe.Snapshot(r.ID)
	return r.ID, img, ok
}

func (w webBackend) Snapshot(id string) ([]byte, []byte, bool) { return w.a.pipe.Snapshot(id) }

func (w webBackend) IsPet(label string) bool { return w.a.ha.IsPet(label) }

func (w webBackend) Health() web.Health {
	h := w.a.Health()
	cs := w.a.capture.Status()
	return web.Health{OK: h.OK, Problems: h.Problems, Camera: cs.Source, CameraState: cs.State, FPS: cs.FPS,
		MQTT: h.MQTTConnected, Sightings: w.a.sightings.Load(), Uptime: time.Since(w.a.started).Round(time.Second),
		Backbone: w.a.identity, Embed: fmt.Sprintf("%.0f ms", w.a.embedMillis())}
}

// embedMillis is the moving average of the backbone's time per frame.
func (a *Agent) embedMillis() float64 {
	a.embedMu.Lock()
	defer a.embedMu.Unlock()
	return a.embedAvg
}
