package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/whiskercam/whisker/camera/frame"

	"github.com/whiskercam/whisker/camera"
	"github.com/whiskercam/whisker/learner"
	"github.com/whiskercam/whisker/learner/backbone"
)

// serveRequests answers label and command messages one at a time. A
// message is acknowledged to the broker only after its answer is
// published, so a request whose answer was lost is delivered again (and
// its request_id keeps it from being applied twice).
func (a *Agent) serveRequests(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case in := <-a.inbound:
			if in.Topic == topicShared {
				a.storeShared(in.Payload)
				in.Ack()
				continue
			}
			res := a.handle(ctx, in)
			res.Topic = in.Topic
			res.TS = timestamp(time.Now())
			if !res.Ok {
				a.log.Warn("request refused", "topic", in.Topic, "request_id", res.RequestID, "reason", res.Error)
			}
			a.metrics.requests.WithLabelValues(in.Topic, fmt.Sprint(res.Ok)).Inc()
			if err := a.bus.PublishResult(res); err != nil {
				a.log.Warn("answer not published; the broker will redeliver the request", "request_id", res.RequestID, "err", err)
				continue
			}
			in.Ack()
			a.log.Debug("request answered", "topic", in.Topic, "request_id", res.RequestID, "ok", res.Ok)
		}
	}
}

// handle turns one request into its result; it never panics.
func (a *Agent) handle(ctx context.Context, in Inbound) (res Result) {
	defer func() {
		if r := recover(); r != nil {
			a.log.Error("request handler panicked", "topic", in.Topic, "panic", r)
			res = Result{RequestID: res.RequestID, Error: fmt.Sprintf("internal error: %v", r)}
		}
	}()
	switch in.Topic {
	case TopicLabel:
		return a.handleLabel(ctx, in.Payload)
	case TopicCmd:
		return a.handleCmd(ctx, in.Payload)
	}
	return Result{Error: "unknown topic"}
}

func failed(err error) Result {
	var re *RequestError
	if errors.As(err, &re) {
		return Result{RequestID: re.RequestID, Error: re.Reason}
	}
	return Result{Error: err.Error()}
}

func (a *Agent) handleLabel(ctx context.Context, payload []byte) Result {
	req, err := DecodeLabel(payload, a.cfg.MQTT.MaxPayload)
	if err != nil {
		return failed(err)
	}
	res := Result{RequestID: req.RequestID, Label: req.Label}
	smp := learner.Sample{Label: req.Label, Backbone: a.identity, Time: time.Now(), RequestID: req.RequestID}
	if req.SightingID != "" {
		r, ok := a.recent.get(req.SightingID)
		if !ok {
			res.Error = fmt.Sprintf("unknown sighting id %q: it is not among the last %d sightings (learner.recent)", req.SightingID, a.cfg.Learner.Recent)
			return res
		}
		smp.Features, smp.JPEG, smp.Source = r.features, r.jpeg, "sighting:"+req.SightingID
	} else {
		frame, err := camera.DecodeImage(req.ImageBytes())
		if err != nil {
			res.Error = fmt.Sprintf("image cannot be read: %v (send a base64 JPEG or PNG)", err)
			return res
		}
		feats, err := a.embedOnWorker(ctx, frame)
		if err != nil {
			res.Error = fmt.Sprintf("image could not be embedded: %v", err)
			return res
		}
		jpeg, err := camera.EncodeJPEG(&frame, a.cfg.Learner.SnapshotSize, 85)
		if err != nil {
			res.Error = fmt.Sprintf("image could not be re-encoded: %v", err)
			return res
		}
		smp.Features, smp.JPEG, smp.Source = feats, jpeg, "image"
	}
	id, dup, err := a.store.Add(smp)
	if err != nil {
		a.log.Error("store label", "err", err)
		res.Error = fmt.Sprintf("label not stored: %v", err)
		return res
	}
	res.Ok, res.SampleID, res.Duplicate = true, id, dup
	if counts, err := a.store.Counts(a.identity); err == nil {
		res.Labels = counts
	}
	if !dup {
		a.log.Info("label stored", "label", req.Label, "sample", id, "source", smp.Source, "request_id", req.RequestID)
		smp.ID = id
		a.trainer.Added(smp)
		a.shareSample(id, smp)
		for _, c := range res.Labels {
			if c.Label == req.Label && c.Samples == 1 {
				a.labelsChanged([]string{req.Label}) // a new label: its entities appear
			}
		}
	}
	return res
}

func (a *Agent) embedOnWorker(ctx context.Context, f frame.Frame) ([]float32, error) {
	r := embedRequest{frame: f, reply: make(chan embedResult, 1)}
	t := time.NewTimer(30 * time.Second)
	defer t.Stop()
	select {
	case a.embedReqs <- r:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-t.C:
		return nil, errors.New("inference is busy")
	}
	select {
	case out := <-r.reply:
		return out.features, out.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (a *Agent) handleCmd(ctx context.Context, payload []byte) Result {
	req, err := DecodeCmd(payload, a.cfg.MQTT.MaxPayload)
	if err != nil {
		return failed(err)
	}
	if req.Mutating() {
		return a.applyOnce(req)
	}
	res := Result{RequestID: req.RequestID, Cmd: req.Cmd}
	switch req.Cmd {
	case "retrain":
		rep := a.trainer.Retrain()
		res.Train = &TrainResult{Samples: rep.Samples, Classes: rep.Classes, Iterations: rep.Iters,
			Millis: float64(rep.Duration.Microseconds()) / 1000}
		if rep.Err != nil {
			res.Error = rep.Err.Error()
			return res
		}
	case "labels":
		counts, err := a.store.Counts(a.identity)
		if err != nil {
			res.Error = err.Error()
			return res
		}
		res.Labels = counts
	case "stats":
		st, err := a.Stats()
		if err != nil {
			res.Error = err.Error()
			return res
		}
		res.Stats = st
	case "capture":
		s, err := a.captureNow(ctx)
		if err != nil {
			res.Error = err.Error()
			return res
		}
		res.Sighting = s
	case "update":
		if err := a.startUpdate(ctx, req); err != nil {
			res.Error = err.Error()
			return res
		}
		res.Update = &UpdateStatus{State: "started", Bundle: req.SHA256}
	case "snapshot":
		id := req.SightingID
		if id == "latest" {
			id = a.recent.latest()
		}
		// The frame with the pets' boxes drawn, and the pet's crop; for a
		// sighting the snapshot store no longer holds, the stored frame.
		frame, crop, ok := a.pipe.Snapshot(id)
		if !ok {
			if r, found := a.recent.get(id); found && len(r.jpeg) > 0 {
				frame, ok = r.jpeg, true
			}
		}
		if !ok {
			res.Error = fmt.Sprintf("no snapshot of sighting %q: it is not among the recent sightings (camera.snapshots, learner.recent)", req.SightingID)
			return res
		}
		topic := a.bus.Topic(TopicSnapshot + "/" + id)
		if err := a.bus.PublishRaw(topic, frame, false); err != nil {
			res.Error = fmt.Sprintf("snapshot not published: %v", err)
			return res
		}
		if len(crop) > 0 {
			if err := a.bus.PublishRaw(topic+"/crop", crop, false); err != nil {
				a.log.Warn("crop snapshot not published", "err", err)
			}
		}
		res.SightingID, res.SnapshotTopic, res.Bytes = id, topic, len(frame)
	}
	res.Ok = true
	return res
}

// applyOnce runs a state-changing command so that a retried request id is
// answered with the first answer instead of being applied again.
func (a *Agent) applyOnce(req *CmdRequest) Result {
	res := Result{RequestID: req.RequestID, Cmd: req.Cmd}
	var changed []string // labels whose entities change
	answer, err := a.store.ApplyOnce(req.RequestID, func(tx *learner.Tx) (any, error) {
		switch req.Cmd {
		case "rename":
			n, err := tx.Relabel(req.Label, req.To)
			if err == nil && n == 0 {
				err = fmt.Errorf("no samples are labelled %q", req.Label)
			}
			res.Label, res.To, res.Changed = req.Label, req.To, n
			changed = []string{req.Label, req.To}
			return nil, err
		case "forget":
			if req.SampleID != 0 {
				label, err := tx.Delete(req.SampleID)
				res.SampleID, res.Label, res.Changed = req.SampleID, label, 1
				changed = []string{label}
				return nil, err
			}
			n, err := tx.Relabel(req.Label, "")
			if err == nil && n == 0 {
				err = fmt.Errorf("no samples are labelled %q", req.Label)
			}
			res.Label, res.Changed = req.Label, n
			changed = []string{req.Label}
			return nil, err
		case "threshold":
			if err := a.settings.SetThreshold(*req.Value); err != nil {
				return nil, err
			}
			res.Threshold = *req.Value
			return nil, nil
		}
		return nil, fmt.Errorf("command %q is not a change", req.Cmd)
	}, func(any) ([]byte, error) {
		res.Ok = true
		res.TS = timestamp(time.Now())
		return json.Marshal(res)
	})
	switch {
	case errors.Is(err, learner.ErrDuplicate):
		var first Result
		if json.Unmarshal(answer, &first) != nil {
			return Result{RequestID: req.RequestID, Cmd: req.Cmd, Error: "request was applied before; its answer is unreadable"}
		}
		first.Duplicate = true
		return first
	case err != nil:
		res.Ok = false
		res.Error = err.Error()
		return res
	}
	a.log.Info("command applied", "cmd", req.Cmd, "label", res.Label, "to", res.To, "changed", res.Changed, "request_id", req.RequestID)
	switch {
	case req.Cmd == "rename":
		a.trainer.Renamed(req.Label, req.To)
	case req.Cmd == "forget" && req.SampleID != 0:
		a.trainer.SampleRemoved(res.Label)
	case req.Cmd == "forget":
		a.trainer.Forgotten(req.Label)
	}
	if req.Cmd != "threshold" {
		a.labelsChanged(changed)
	}
	if counts, err := a.store.Counts(a.identity); err == nil {
		res.Labels = counts
	}
	return res
}

// Stats gathers the numbers the stats command reports.
func (a *Agent) Stats() (*Stats, error) {
	counts, err := a.store.Counts(a.identity)
	if err != nil {
		return nil, err
	}
	cs := a.capture.Status()
	_, dropped := a.box.Stats()
	_, runs := a.trainer.Last()
	a.mu.Lock()
	st := &Stats{
		Device: a.cfg.Device, Version: a.version, UptimeSeconds: time.Since(a.started).Seconds(),
		Backbone: a.identity, Runtime: "TensorFlow Lite " + backbone.RuntimeVersion(),
		Labels: counts, Sightings: a.sightings, EmbedMillis: round4(a.embedAvgMS),
		TrainingRuns: runs, Threshold: a.threshold(),
		Camera: CameraStats{Up: cs.Up, State: cs.State, Source: cs.Source, Frames: cs.Frames, Dropped: dropped, Reopens: cs.Reopens,
			Error: cs.LastErr, FPS: round4(cs.FPS)},
		Pipeline: a.pipe.Stats(),
	}
	a.mu.Unlock()
	for _, c := range counts {
		st.Samples += c.Samples
	}
	if h := a.trainer.Head(); h != nil {
		st.Head = &HeadInfo{Classes: h.Classes, Samples: h.Samples, Trained: timestamp(h.Trained)}
		st.Learner = a.trainer.Summary()
		if st.Threshold == 0 {
			st.Threshold = round4(h.ThresholdFor(0))
		}
	}
	return st, nil
}
