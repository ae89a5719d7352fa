package learner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// TrainerConfig is the learner's slice of the agent configuration.
type TrainerConfig struct {
	HeadPath string
	Train    TrainConfig
	// Delay coalesces bursts: training starts once no label has arrived for
	// Delay, or MaxDelay after the first pending one.
	Delay    time.Duration
	MaxDelay time.Duration
}

// TrainReport describes one training run.
type TrainReport struct {
	Samples  int           `json:"samples"`
	Classes  []string      `json:"classes"`
	Duration time.Duration `json:"-"`
	Iters    int           `json:"iterations"`
	// Latency is the time from the first label this run includes to the
	// new head being in use.
	Latency time.Duration `json:"-"`
	Err     error         `json:"-"`
}

// Trainer keeps a head current with the store: labels kick it, it trains
// in the background (never on the caller's goroutine) and swaps the new
// head in atomically.
type Trainer struct {
	cfg      TrainerConfig
	store    *Store
	backbone string
	log      *slog.Logger

	head  atomic.Pointer[Head]
	kick  chan struct{}
	train sync.Mutex // one training at a time

	mu        sync.Mutex
	firstKick time.Time // first kick not yet covered by a training
	last      TrainReport
	runs      uint64

	// OnTrained, if set, is called after every training run.
	OnTrained func(*Head, TrainReport)
}

// NewTrainer loads the saved head if it was trained on this backbone; a
// head of another backbone is never loaded (it is retrained from the
// store's samples of the current backbone instead).
func NewTrainer(cfg TrainerConfig, store *Store, backbone string, log *slog.Logger) *Trainer {
	if cfg.Delay <= 0 {
		cfg.Delay = 200 * time.Millisecond
	}
	if cfg.MaxDelay < cfg.Delay {
		cfg.MaxDelay = 5 * cfg.Delay
	}
	t := &Trainer{cfg: cfg, store: store, backbone: backbone, log: log, kick: make(chan struct{}, 1)}
	if cfg.HeadPath != "" {
		h, err := LoadHead(cfg.HeadPath, backbone)
		switch {
		case err == nil:
			t.head.Store(h)
			log.Info("head loaded", "path", cfg.HeadPath, "classes", h.Classes, "samples", h.Samples)
		case errors.Is(err, os.ErrNotExist):
		default:
			log.Warn("saved head not used; retraining from the store", "err", err)
			t.Kick()
		}
	}
	return t
}

// Head returns the current head, or nil while there is none.
func (t *Trainer) Head() *Head { return t.head.Load() }

// Kick asks for a retrain soon; bursts of kicks make one training run.
func (t *Trainer) Kick() {
	t.mu.Lock()
	if t.firstKick.IsZero() {
		t.firstKick = time.Now()
	}
	t.mu.Unlock()
	select {
	case t.kick <- struct{}{}:
	default:
	}
}

// Last returns the last training report and the number of runs.
func (t *Trainer) Last() (TrainReport, uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.last, t.runs
}

// Run trains whenever kicked, until ctx ends.
func (t *Trainer) Run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.kick:
		}
		// Coalesce: wait for a quiet spell, bounded by MaxDelay.
		deadline := time.NewTimer(t.cfg.MaxDelay)
	wait:
		for {
			quiet := time.NewTimer(t.cfg.Delay)
			select {
			case <-ctx.Done():
				quiet.Stop()
				deadline.Stop()
				return nil
			case <-t.kick:
				quiet.Stop()
			case <-quiet.C:
				break wait
			case <-deadline.C:
				quiet.Stop()
				break wait
			}
		}
		deadline.Stop()
		t.Retrain()
	}
}

// Retrain trains a head on the store's samples of the current backbone now
// and swaps it in. With fewer than two labels the head is cleared.
func (t *Trainer) Retrain() TrainReport {
	t.train.Lock()
	defer t.train.Unlock()
	t.mu.Lock()
	first := t.firstKick
	t.firstKick = time.Time{}
	t.mu.Unlock()

	rep := t.retrain()
	if !first.IsZero() {
		rep.Latency = time.Since(first)
	}
	t.mu.Lock()
	t.last = rep
	t.runs++
	t.mu.Unlock()
	switch {
	case rep.Err == nil:
		t.log.Info("head trained", "samples", rep.Samples, "classes", rep.Classes, "iterations", rep.Iters,
			"took", rep.Duration.Round(time.Microsecond), "label_to_head", rep.Latency.Round(time.Microsecond))
	case errors.Is(rep.Err, ErrTooFewClasses):
		t.log.Info("no head yet", "reason", rep.Err.Error(), "classes", rep.Classes)
	default:
		t.log.Error("training failed", "err", rep.Err)
	}
	if t.OnTrained != nil {
		t.OnTrained(t.Head(), rep)
	}
	return rep
}

func (t *Trainer) retrain() TrainReport {
	start := time.Now()
	d, err := t.store.Dataset(t.backbone)
	if err != nil {
		return TrainReport{Err: fmt.Errorf("load samples: %w", err)}
	}
	rep := TrainReport{Samples: len(d.X), Classes: d.Classes()}
	h, err := Train(d, t.backbone, t.cfg.Train, t.head.Load())
	if errors.Is(err, ErrTooFewClasses) {
		t.head.Store(nil)
		if t.cfg.HeadPath != "" {
			if rerr := os.Remove(t.cfg.HeadPath); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
				t.log.Warn("remove stale head", "err", rerr)
			}
		}
		rep.Err = err
		return rep
	}
	if err != nil {
		rep.Err = err
		return rep
	}
	if t.cfg.HeadPath != "" {
		if err := h.Save(t.cfg.HeadPath); err != nil {
			rep.Err = err
			return rep
		}
	}
	t.head.Store(h)
	rep.Iters = h.Iters
	rep.Duration = time.Since(start)
	return rep
}
