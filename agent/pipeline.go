package agent

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/whiskercam/whisker/camera"
)

// embedRequest asks the inference goroutine (which owns the backbone) to
// embed an image.
type embedRequest struct {
	frame camera.Frame
	reply chan embedResult
}

type embedResult struct {
	features []float32
	err      error
}

// inference owns the preprocessor and the backbone: it classifies the
// latest frame whenever one arrives, and embeds images for label requests.
func (a *Agent) inference(ctx context.Context) error {
	var f camera.Frame
	var input []float32
	for {
		select {
		case <-ctx.Done():
			return nil
		case r := <-a.embedReqs:
			feats, err := a.embed(&r.frame, &input)
			r.reply <- embedResult{feats, err}
		case reply := <-a.captureReqs:
			// Capture now: classify the next frame, whatever the gates say.
			wait, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := a.box.Take(wait, &f)
			cancel()
			if err != nil {
				reply <- captureResult{err: fmt.Errorf("no frame from the camera: %w", err)}
				continue
			}
			s := a.classify(&f, &input)
			if s == nil {
				reply <- captureResult{err: errors.New("the frame could not be classified (see the log)")}
				continue
			}
			reply <- captureResult{sighting: s}
		case <-a.box.Ready():
			if a.box.TryTake(&f) {
				a.classify(&f, &input)
			}
		}
	}
}

func (a *Agent) embed(f *camera.Frame, input *[]float32) ([]float32, error) {
	in, err := a.pre.Process(f, *input)
	if err != nil {
		return nil, err
	}
	*input = in
	return a.bb.Embed(in)
}

func (a *Agent) classify(f *camera.Frame, input *[]float32) *Sighting {
	start := time.Now()
	feats, err := a.embed(f, input)
	if err != nil {
		a.log.Error("embed frame", "frame", f.Seq, "err", err)
		return nil
	}
	took := time.Since(start)
	s := Sighting{Label: Unknown, Scores: map[string]float64{}, TS: timestamp(f.Time), Frame: f.Seq}
	if h := a.trainer.Head(); h != nil {
		p, err := h.Predict(feats)
		if err != nil {
			a.log.Error("predict", "err", err)
		} else {
			best, conf := h.Best(p)
			for i, c := range h.Classes {
				s.Scores[c] = round4(p[i])
			}
			s.Confidence = round4(conf)
			if conf >= a.threshold() {
				s.Label = best
			}
		}
	}
	jpeg, err := camera.EncodeJPEG(f, a.cfg.Learner.SnapshotSize, 85)
	if err != nil {
		a.log.Error("encode snapshot", "err", err)
	}
	a.mu.Lock()
	a.sightings++
	s.ID = fmt.Sprintf("%s-%d", a.bootID, a.sightings)
	if a.embedAvgMS == 0 {
		a.embedAvgMS = float64(took.Microseconds()) / 1000
	} else {
		a.embedAvgMS = 0.9*a.embedAvgMS + 0.1*float64(took.Microseconds())/1000
	}
	a.mu.Unlock()
	a.recent.add(recentSighting{id: s.ID, features: feats, jpeg: jpeg, at: f.Time})
	a.log.Debug("sighting", "id", s.ID, "label", s.Label, "confidence", s.Confidence, "embed", took.Round(time.Microsecond))
	a.bus.PublishSighting(s)
	a.onSighting(&s, jpeg, took)
	return &s
}

func round4(x float64) float64 {
	return float64(int64(x*10000+0.5)) / 10000
}

// recentSightings keeps the features and frames of the last sightings so
// that they can be labelled by id.
type recentSightings struct {
	mu    sync.Mutex
	max   int
	order []string
	byID  map[string]recentSighting
}

type recentSighting struct {
	id       string
	features []float32
	jpeg     []byte
	at       time.Time
}

func newRecentSightings(n int) *recentSightings {
	return &recentSightings{max: n, byID: make(map[string]recentSighting, n)}
}

func (r *recentSightings) add(s recentSighting) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.order) == r.max {
		delete(r.byID, r.order[0])
		r.order = r.order[1:]
	}
	r.order = append(r.order, s.id)
	r.byID[s.id] = s
}

// latest is the id of the newest sighting, or "".
func (r *recentSightings) latest() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.order) == 0 {
		return ""
	}
	return r.order[len(r.order)-1]
}

func (r *recentSightings) get(id string) (recentSighting, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.byID[id]
	return s, ok
}
