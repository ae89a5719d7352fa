package embedder

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/whiskercam/whisker/camera"
	"github.com/whiskercam/whisker/learner"
)

// Reembed computes, with this embedder's backbone, the features of every
// sample stored with the backbone identity from (from the sample's JPEG),
// stores them under the embedder's identity, and trains that backbone's
// head the way the agent does (a learner.Trainer with train, whose
// HeadPath says where the head goes). Samples already re-embedded by an
// interrupted try are not done twice: each carries a request id naming
// its source. progress, if set, gets the fraction done.
func (e *Embedder) Reembed(ctx context.Context, store *learner.Store, from string, train learner.TrainerConfig,
	log *slog.Logger, progress func(done float64)) error {
	type item struct {
		id    uint64
		label string
		at    time.Time
		jpeg  []byte
	}
	var items []item
	err := store.ForEach(true, func(s learner.Sample) error {
		if s.Backbone == from {
			items = append(items, item{s.ID, s.Label, s.Time, s.JPEG})
		}
		return nil
	})
	if err != nil {
		return err
	}
	log.Info("re-embedding stored samples with the new backbone", "samples", len(items), "backbone", e.identity)
	for i, it := range items {
		if err := ctx.Err(); err != nil {
			return err
		}
		img, err := camera.DecodeImage(it.jpeg)
		if err != nil {
			return fmt.Errorf("sample %d: %w", it.id, err)
		}
		feats, err := e.Embed(&img)
		if err != nil {
			return fmt.Errorf("sample %d: %w", it.id, err)
		}
		_, _, err = store.Add(learner.Sample{
			Label: it.label, Backbone: e.identity, Time: it.at, JPEG: it.jpeg, Features: feats,
			Source: fmt.Sprintf("reembed:%d", it.id), RequestID: fmt.Sprintf("reembed:%s:%d", e.identity, it.id),
		})
		if err != nil {
			return err
		}
		if progress != nil && (i%10 == 0 || i == len(items)-1) {
			progress(float64(i+1) / float64(len(items)))
		}
	}
	rep := learner.NewTrainer(train, store, e.identity, log).Retrain()
	switch {
	case errors.Is(rep.Err, learner.ErrTooFewClasses):
		log.Info("no head to train for the new backbone yet", "samples", rep.Samples)
	case rep.Err != nil:
		return rep.Err
	default:
		log.Info("head trained for the new backbone", "kind", rep.Kind, "classes", rep.Classes, "samples", rep.Samples)
	}
	return nil
}
