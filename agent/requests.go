package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"slices"
	"time"

	"github.com/whiskercam/whisker/agent/homeassistant"
	"github.com/whiskercam/whisker/agent/pipeline"
	"github.com/whiskercam/whisker/agent/protocol"
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
			if in.Topic == homeassistant.TopicBirth { // retained or not
				a.ha.Birth(in.Payload)
				in.Ack()
				continue
			}
			if in.Retained {
				// Acted on when it was published (brokers deliver a new
				// message to subscribers as a plain one); what comes with
				// the retained flag is the broker's copy, at a subscription.
				a.log.Warn("retained message ignored: a request is acted on once, when it is published (clear it with an empty retained message)",
					"topic", in.Topic, "bytes", len(in.Payload))
				in.Ack()
				continue
			}
			if in.Topic == topicShared {
				if a.storeShared(in.Payload) {
					in.Ack()
				}
				continue
			}
			res := a.handle(ctx, in)
			res.Topic = in.Topic
			res.TS = protocol.Timestamp(time.Now())
			res.Disk = a.diskTrouble()
			if !res.Ok {
				a.log.Warn("request refused", "topic", in.Topic, "request_id", res.RequestID, "reason", res.Error)
			}
			a.metrics.Request(in.Topic, res.Ok)
			if in.Reply != nil { // from the web page: answered there
				in.Reply <- res
				continue
			}
			if err := a.bus.Load().PublishResult(res); err != nil {
				a.log.Warn("answer not published; the broker will redeliver the request", "request_id", res.RequestID, "err", err)
				continue
			}
			in.Ack()
			a.log.Debug("request answered", "topic", in.Topic, "request_id", res.RequestID, "ok", res.Ok)
		}
	}
}

// handle turns one request into its result; it never panics.
func (a *Agent) handle(ctx context.Context, in Inbound) (res protocol.Result) {
	defer func() {
		if r := recover(); r != nil {
			a.log.Error("request handler panicked", "topic", in.Topic, "panic", r)
			res = protocol.Result{RequestID: res.RequestID, Error: fmt.Sprintf("internal error: %v", r)}
		}
	}()
	switch in.Topic {
	case protocol.TopicLabel:
		return a.handleLabel(ctx, in.Payload)
	case protocol.TopicCmd:
		return a.handleCmd(ctx, in.Payload)
	}
	if isHACommand(in.Topic) {
		return a.handleHA(ctx, in.Topic, in.Payload)
	}
	return protocol.Result{Error: "unknown topic"}
}

func failed(err error) protocol.Result {
	var re *protocol.RequestError
	if errors.As(err, &re) {
		return protocol.Result{RequestID: re.RequestID, Error: re.Reason}
	}
	return protocol.Result{Error: err.Error()}
}

func (a *Agent) handleLabel(ctx context.Context, payload []byte) protocol.Result {
	req, err := protocol.DecodeLabel(payload, a.cfg.MQTT.MaxPayload)
	if err != nil {
		return failed(err)
	}
	req.Label = a.canonicalLabel(req.Label)
	res := protocol.Result{RequestID: req.RequestID, Label: req.Label}
	if req.SightingIDs != nil {
		return a.labelSightings(req, res)
	}
	smp := learner.Sample{Label: req.Label, Backbone: a.identity, Time: time.Now(), RequestID: req.RequestID}
	risky := false
	if req.SightingID != "" {
		seen, err := a.sighting(req.SightingID)
		if err != nil {
			res.Error = err.Error()
			return res
		}
		smp.Features, smp.JPEG, smp.Source = seen.Features, seen.JPEG, "sighting:"+req.SightingID
	} else {
		// A retry of a stored request is answered without decoding again.
		if id, ok, err := a.store.Request(req.RequestID); err == nil && ok {
			res.Ok, res.SampleID, res.Duplicate = true, id, true
			if counts, err := a.store.Counts(a.identity); err == nil {
				res.Labels = labelCounts(counts)
			}
			return res
		}
		// Decoding and embedding an image from outside is the one step a
		// request takes that could take the process down: it is marked on
		// disk first, and a request that was in this step when the agent
		// died is refused when the broker delivers it again.
		if err := a.store.BeginRisky(req.RequestID, "decoding and embedding the image"); err != nil {
			res.Error = err.Error()
			return res
		}
		risky = true
		if a.riskyHook != nil {
			a.riskyHook(req.RequestID)
		}
		feats, jpeg, source, err := a.embedImage(ctx, req.ImageBytes(), req.Detect)
		if err != nil {
			a.endRisky(req.RequestID)
			res.Error = err.Error()
			return res
		}
		smp.Features, smp.JPEG, smp.Source = feats, jpeg, source
	}
	id, dup, err := a.store.Add(smp) // clears the request's in-progress mark
	if err != nil {
		if risky {
			a.endRisky(req.RequestID)
		}
		a.log.Error("store label", "err", err)
		res.Error = fmt.Sprintf("label not stored: %v", err)
		a.diskChanged()
		return res
	}
	res.Ok, res.SampleID, res.Duplicate = true, id, dup
	counts, err := a.store.Counts(a.identity)
	if err == nil {
		res.Labels = labelCounts(counts)
	}
	if !dup {
		a.log.Info("label stored", "label", req.Label, "sample", id, "source", smp.Source, "request_id", req.RequestID)
		smp.ID = id
		a.trainer.Added(smp)
		a.shareSample(id, smp)
		a.diskChanged() // the sample may have brought the disk near its reserve
		for _, c := range res.Labels {
			if c.Label == req.Label && c.Samples == 1 {
				a.labelsChanged() // a new label: its entities appear
			}
		}
		if req.SightingID != "" {
			a.inbox.MarkLabelled([]string{req.SightingID}, req.Label, []uint64{id}, 0)
		}
		a.kickReclassify()
	}
	return res
}

func (a *Agent) handleCmd(ctx context.Context, payload []byte) protocol.Result {
	req, err := protocol.DecodeCmd(payload, a.cfg.MQTT.MaxPayload)
	if err != nil {
		return failed(err)
	}
	return a.runCmd(ctx, req)
}

// runCmd carries out a command, from the cmd topic or from Home
// Assistant.
func (a *Agent) runCmd(ctx context.Context, req *protocol.CmdRequest) protocol.Result {
	switch req.Cmd {
	case "rename":
		from := a.canonicalLabel(req.Label)
		to := req.To
		if !protocol.SameLabel(from, to) { // a new spelling of one label stays as sent
			to = a.canonicalLabel(to)
		}
		return a.change(req, learner.Change{Op: learner.OpRename, Label: from, To: to})
	case "move":
		return a.change(req, learner.Change{Op: learner.OpMoveSample, SampleID: req.SampleID, To: a.canonicalLabel(req.To)})
	case "forget":
		if req.SampleID != 0 {
			return a.change(req, learner.Change{Op: learner.OpForgetSample, SampleID: req.SampleID})
		}
		return a.change(req, learner.Change{Op: learner.OpForget, Label: a.canonicalLabel(req.Label)})
	case "threshold":
		return a.setThreshold(req)
	case "pause", "resume":
		return a.setPaused(req, req.Cmd == "pause")
	}
	res := protocol.Result{RequestID: req.RequestID, Cmd: req.Cmd}
	switch req.Cmd {
	case "retrain":
		rep := a.trainer.Retrain()
		res.Train = &protocol.TrainResult{Samples: rep.Samples, Classes: rep.Classes, Iterations: rep.Iters,
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
		res.Labels = labelCounts(counts)
	case "stats":
		st, err := a.Stats()
		if err != nil {
			res.Error = err.Error()
			return res
		}
		res.Stats = st
	case "capture":
		s, err := a.pipe.Capture(ctx)
		if err != nil {
			res.Error = err.Error()
			return res
		}
		res.Sighting = s
	case "update":
		if err := a.ota.Start(ctx, req); err != nil {
			res.Error = err.Error()
			return res
		}
		res.Update = &protocol.UpdateStatus{State: "started", Bundle: req.SHA256}
	case "snapshot":
		return a.publishSnapshot(req, res)
	}
	res.Ok = true
	return res
}

// publishSnapshot publishes the frame of a recent sighting, with the
// pets' boxes drawn, and the pet's crop; for a sighting the snapshot store
// no longer holds, the stored frame.
func (a *Agent) publishSnapshot(req *protocol.CmdRequest, res protocol.Result) protocol.Result {
	id := req.SightingID
	if id == "latest" {
		r, _ := a.pipe.Recent(id)
		id = r.ID
	}
	img, crop, ok := a.pipe.Snapshot(id)
	if !ok {
		if r, found := a.pipe.Recent(id); found && len(r.JPEG) > 0 {
			img, ok = r.JPEG, true
		}
	}
	if !ok {
		res.Error = fmt.Sprintf("no snapshot of sighting %q: it is not among the recent sightings (camera.snapshots, learner.recent)", req.SightingID)
		return res
	}
	bus := a.bus.Load()
	topic := bus.Topic(protocol.TopicSnapshot + "/" + id)
	if err := bus.PublishRaw(topic, img, false); err != nil {
		res.Error = fmt.Sprintf("snapshot not published: %v", err)
		return res
	}
	if len(crop) > 0 {
		if err := bus.PublishRaw(topic+"/crop", crop, false); err != nil {
			a.log.Warn("crop snapshot not published", "err", err)
		}
	}
	res.Ok, res.SightingID, res.SnapshotTopic, res.Bytes = true, id, topic, len(img)
	return res
}

// change renames or forgets labels and samples, once per request id: a
// retried request is answered with the first answer instead of being
// applied again.
func (a *Agent) change(req *protocol.CmdRequest, c learner.Change) protocol.Result {
	res := protocol.Result{RequestID: req.RequestID, Cmd: req.Cmd}
	var done learner.Changed
	var recorded []byte
	apply := func() (err error) {
		done, recorded, err = a.trainer.Apply(req.RequestID, c, func(d learner.Changed) ([]byte, error) {
			ok := res
			ok.Ok, ok.Label, ok.To, ok.SampleID, ok.Changed = true, d.Label, d.To, d.SampleID, d.N
			ok.TS = protocol.Timestamp(time.Now())
			return json.Marshal(ok)
		})
		return err
	}
	var err error
	if c.Op == learner.OpRename {
		// The pet keeps its Home Assistant entities under the new name.
		err = a.ha.Rename(c.Label, c.To, apply)
	} else {
		err = apply()
	}
	if errors.Is(err, learner.ErrDuplicate) {
		return replay(req, recorded)
	}
	if err != nil {
		res.Error = err.Error()
		return res
	}
	res.Ok, res.Label, res.To, res.SampleID, res.Changed = true, done.Label, done.To, done.SampleID, done.N
	a.log.Info("command applied", "cmd", req.Cmd, "label", res.Label, "to", res.To, "changed", res.Changed, "request_id", req.RequestID)
	a.labelsChanged()
	switch c.Op { // the inbox shows what people named
	case learner.OpRename, learner.OpForget:
		a.inbox.Relabelled(c.Label, c.To)
	case learner.OpForgetSample, learner.OpMoveSample:
		a.inbox.SampleRelabelled(c.SampleID, c.To)
	}
	a.kickReclassify()
	a.diskChanged() // a forget may have made room
	if counts, err := a.store.Counts(a.identity); err == nil {
		res.Labels = labelCounts(counts)
	}
	return res
}

// setThreshold sets and keeps the threshold, once per request id.
func (a *Agent) setThreshold(req *protocol.CmdRequest) protocol.Result {
	res := protocol.Result{RequestID: req.RequestID, Cmd: req.Cmd, Threshold: *req.Value}
	recorded, err := a.store.ApplyOnce(req.RequestID, func(*learner.Tx) (any, error) {
		return nil, a.settings.SetThreshold(*req.Value)
	}, func(any) ([]byte, error) {
		ok := res
		ok.Ok, ok.TS = true, protocol.Timestamp(time.Now())
		return json.Marshal(ok)
	})
	switch {
	case errors.Is(err, learner.ErrDuplicate):
		return replay(req, recorded)
	case err != nil:
		res.Error = err.Error()
		return res
	}
	a.log.Info("threshold set", "value", res.Threshold, "request_id", req.RequestID)
	a.kickReclassify()
	res.Ok = true
	a.publishStatusAsync()
	return res
}

// setPaused pauses or resumes recognition and keeps it so, once per
// request id.
func (a *Agent) setPaused(req *protocol.CmdRequest, paused bool) protocol.Result {
	res := protocol.Result{RequestID: req.RequestID, Cmd: req.Cmd, Paused: &paused}
	recorded, err := a.store.ApplyOnce(req.RequestID, func(*learner.Tx) (any, error) {
		return nil, a.settings.SetPaused(paused)
	}, func(any) ([]byte, error) {
		ok := res
		ok.Ok, ok.TS = true, protocol.Timestamp(time.Now())
		return json.Marshal(ok)
	})
	switch {
	case errors.Is(err, learner.ErrDuplicate):
		return replay(req, recorded)
	case err != nil:
		res.Error = err.Error()
		return res
	}
	a.pipe.SetPaused(paused)
	a.log.Info("recognition", "paused", paused, "request_id", req.RequestID)
	res.Ok = true
	a.publishStatusAsync()
	return res
}

// replay is the answer to a request applied before: its first answer.
func replay(req *protocol.CmdRequest, recorded []byte) protocol.Result {
	var first protocol.Result
	if json.Unmarshal(recorded, &first) != nil {
		return protocol.Result{RequestID: req.RequestID, Cmd: req.Cmd, Error: "request was applied before; its answer is unreadable"}
	}
	first.Duplicate = true
	return first
}

func labelCounts(counts []learner.LabelCount) []protocol.LabelCount {
	out := make([]protocol.LabelCount, len(counts))
	for i, c := range counts {
		out[i] = protocol.LabelCount{Label: c.Label, Samples: c.Samples}
	}
	return out
}

// Stats gathers the numbers the stats command reports.
func (a *Agent) Stats() (*protocol.Stats, error) {
	counts, err := a.store.Counts(a.identity)
	if err != nil {
		return nil, err
	}
	cs := a.capture.Status()
	_, dropped := a.box.Stats()
	_, runs := a.trainer.Last()
	a.embedMu.Lock()
	embed := a.embedAvg
	a.embedMu.Unlock()
	st := &protocol.Stats{
		Device: a.cfg.Device, Version: a.version, UptimeSeconds: time.Since(a.started).Seconds(),
		Backbone: a.identity, Runtime: "TensorFlow Lite " + backbone.RuntimeVersion(),
		Labels: labelCounts(counts), Sightings: a.sightings.Load(), EmbedMillis: round4(embed),
		TrainingRuns: runs, Threshold: a.threshold(), Paused: a.pipe.Paused(),
		Camera: protocol.CameraStats{Up: cs.Up, State: cs.State, Source: cs.Source, Frames: cs.Frames, Dropped: dropped, Reopens: cs.Reopens,
			Error: cs.LastErr, FPS: round4(cs.FPS)},
		Pipeline: a.pipe.Stats(),
	}
	for _, c := range counts {
		st.Samples += c.Samples
	}
	st.Unknown = a.pipe.Unknown()
	st.Advice = advice(counts, st.Unknown, a.trainer.Head(), a.cfg.Learner.NoPetLabels)
	st.Disk = a.diskHealth()
	if h := a.trainer.Head(); h != nil {
		st.Head = &protocol.HeadInfo{Classes: h.Labels(), Samples: h.Samples, Trained: protocol.Timestamp(h.Trained)}
		if st.Learner, err = json.Marshal(a.trainer.Summary()); err != nil {
			return nil, err
		}
		if st.Threshold == 0 {
			st.Threshold = round4(h.ThresholdFor(0))
		}
	}
	return st, nil
}

func round4(x float64) float64 {
	return float64(int64(x*10000+0.5)) / 10000
}

// fewSamples is how many samples a pet needs before its own sightings,
// rather than priors, set how sure the head must be (the learner's
// calibration from a reference set).
const fewSamples = 6

// advice says in words what to label next: what is missing for a head,
// which pets have too few samples, and what the unknown sightings were.
func advice(counts []learner.LabelCount, unknown map[string]uint64, h *learner.Head, noPet []string) []string {
	var out []string
	if h == nil {
		return append(out, pipeline.WhyNoHead+".")
	}
	for _, c := range counts {
		if c.Samples < fewSamples && !slices.Contains(noPet, c.Label) {
			out = append(out, fmt.Sprintf("%s has %d sample(s): label a few more sightings of %s, in other poses and light; from %d on its limits are learnt from its own sightings.",
				c.Label, c.Samples, c.Label, fewSamples))
		}
	}
	if n := unknown[learner.WhyUnsure]; n > 0 {
		out = append(out, fmt.Sprintf("%d sighting(s) were too unsure between your labels: label the ones you recognise (each sighting says which name it came closest to).", n))
	}
	if n := unknown[learner.WhyFar] + unknown[learner.WhyBackground]; n > 0 {
		out = append(out, fmt.Sprintf("%d sighting(s) looked unlike every pet you labelled: strangers need nothing; if some were your pets, label them so that such views are learnt.", n))
	}
	return out
}

// embedImage decodes an image from outside within the configured limits
// (its real size read from its header before any pixel is decoded), runs
// the backbone on it (on the pet the detector finds in it, with detect)
// and re-encodes it (or the pet's crop) as the sample's JPEG. source says
// which: "image" or "image:pet".
func (a *Agent) embedImage(ctx context.Context, data []byte, detect bool) (feats []float32, jpeg []byte, source string, err error) {
	img, err := camera.DecodeImageLimits(data, a.cfg.Images.Limits())
	if err != nil {
		return nil, nil, "", fmt.Errorf("image cannot be read: %v (send a base64 JPEG, PNG, BMP or WebP within images.max_bytes and images.max_pixels)", err)
	}
	crop := image.Rectangle{}
	if detect {
		pet, err := a.pipe.EmbedPet(ctx, &img)
		if err != nil {
			return nil, nil, "", fmt.Errorf("image could not be embedded: %v", err)
		}
		feats = pet.Features
		if pet.Found {
			crop = pet.Crop
		}
	} else if feats, err = a.pipe.Embed(ctx, &img); err != nil {
		return nil, nil, "", fmt.Errorf("image could not be embedded: %v", err)
	}
	source = "image"
	if crop.Empty() {
		jpeg, err = camera.EncodeJPEG(&img, a.cfg.Learner.SnapshotSize, camera.JPEGQuality)
	} else {
		jpeg, err = camera.CropJPEG(&img, crop, a.cfg.Learner.SnapshotSize, camera.JPEGQuality)
		source = "image:pet"
	}
	if err != nil {
		return nil, nil, "", fmt.Errorf("image could not be re-encoded: %v", err)
	}
	return feats, jpeg, source, nil
}

// endRisky clears a request's in-progress mark after its risky step
// failed without taking the process down.
func (a *Agent) endRisky(requestID string) {
	if err := a.store.EndRisky(requestID); err != nil {
		a.log.Error("clear the in-progress mark of a request", "request_id", requestID, "err", err)
	}
}

// canonicalLabel is the spelling a label name is stored under: that of a
// stored label (or a no-pet label) it names the same as (NFKC, case
// folded), else the name as sent.
func (a *Agent) canonicalLabel(l string) string {
	known := append([]string(nil), a.cfg.Learner.NoPetLabels...)
	if counts, err := a.store.Counts(a.identity); err == nil {
		stored := make([]string, len(counts))
		for i, c := range counts {
			stored[i] = c.Label
		}
		known = append(stored, known...)
	}
	if k, ok := protocol.FindLabel(l, known); ok {
		return k
	}
	return l
}
