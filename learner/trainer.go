package learner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// TrainerConfig is the learner's slice of the agent configuration.
type TrainerConfig struct {
	HeadPath string
	Train    TrainConfig
	// Select tunes the capacity and threshold choices (see Fit).
	Select SelectConfig
	// Background, with a reference set (LoadReference of the backbone's
	// ReferencePath), teaches the head a class of other animals and
	// scenes: strangers and empty scenes then come out unknown from the
	// first labels, and a single pet's label makes a head.
	Background BackgroundConfig
	// Delay coalesces bursts: training starts once no label has arrived for
	// Delay, or MaxDelay after the first pending one.
	Delay    time.Duration
	MaxDelay time.Duration
}

// TrainReport describes one training run.
type TrainReport struct {
	Samples int      `json:"samples"`
	Classes []string `json:"classes"`
	// Kind is the kind of head trained, and Threshold its calibrated
	// open-set threshold (0 when it could not be calibrated).
	Kind      string  `json:"kind,omitempty"`
	Threshold float64 `json:"threshold,omitempty"`
	// Selected is true when this run re-chose capacity and threshold by
	// cross-validation; SelectTime is what that took (part of Duration).
	Selected   bool          `json:"selected,omitempty"`
	SelectTime time.Duration `json:"-"`
	Duration   time.Duration `json:"-"`
	Iters      int           `json:"iterations"`
	// Latency is the time from the first label this run includes to the
	// new head being in use.
	Latency time.Duration `json:"-"`
	Err     error         `json:"-"`
}

// maxPending bounds the vectors kept per label for imprinting.
const maxPending = 32

// headEdit is a change made to the head between trainings (a forgotten,
// renamed or imprinted class). Edits are idempotent, so a training that
// started before an edit applies it to its result again.
type headEdit struct {
	gen   uint64
	apply func(*Head) *Head
}

// Trainer keeps a head current with the store: labels kick it, it trains
// in the background (never on the caller's goroutine) and swaps the new
// head in atomically. Between trainings, a label new to the head is
// imprinted at once, and forgotten or renamed labels are removed from or
// renamed in the head at once.
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
	gen       uint64
	edits     []headEdit
	pending   map[string][][]float32 // vectors of labels the trained head lacks

	// OnTrained, if set, is called after every training run.
	OnTrained func(*Head, TrainReport)

	// loaded, if set, runs once a training has read the store (tests use
	// it to change the store while a training runs).
	loaded func()
}

// NewTrainer loads the saved head if it was trained on this backbone; a
// head of another backbone is never loaded (it is retrained from the
// store's samples of the current backbone instead). A saved head that no
// longer matches the store (labels forgotten or added while it was not
// saved) is corrected at once where it can be and retrained soon.
func NewTrainer(cfg TrainerConfig, store *Store, backbone string, log *slog.Logger) *Trainer {
	if cfg.Delay <= 0 {
		cfg.Delay = 200 * time.Millisecond
	}
	if cfg.MaxDelay < cfg.Delay {
		cfg.MaxDelay = 5 * cfg.Delay
	}
	t := &Trainer{cfg: cfg, store: store, backbone: backbone, log: log, kick: make(chan struct{}, 1),
		pending: map[string][][]float32{}}
	if cfg.HeadPath != "" {
		h, err := LoadHead(cfg.HeadPath, backbone)
		switch {
		case err == nil:
			t.head.Store(h)
			log.Info("head loaded", "path", cfg.HeadPath, "kind", h.Kind, "classes", h.Classes, "samples", h.Samples)
			t.reconcile(h)
		case errors.Is(err, os.ErrNotExist):
			if n, err := store.Len(); err == nil && n > 0 {
				t.Kick()
			}
		default:
			log.Warn("saved head not used; retraining from the store", "err", err)
			t.Kick()
		}
	}
	return t
}

// reconcile compares a loaded head with the store.
func (t *Trainer) reconcile(h *Head) {
	counts, err := t.store.Counts(t.backbone)
	if err != nil {
		t.log.Warn("cannot compare the saved head with the store; retraining", "err", err)
		t.Kick()
		return
	}
	total := 0
	for _, c := range counts {
		total += c.Samples
	}
	cur := h
	for _, c := range h.Classes {
		if !slices.ContainsFunc(counts, func(lc LabelCount) bool { return lc.Label == c }) && cur != nil {
			cur = cur.WithoutClass(c)
		}
	}
	if cur != h || len(counts) != len(h.Classes) || total != h.Samples || len(h.Imprinted) > 0 {
		t.head.Store(cur)
		t.log.Info("saved head is behind the store; retraining", "head_samples", h.Samples, "store_samples", total)
		t.Kick()
	}
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

// editLocked records an edit and applies it to the current head. t.mu is
// held.
func (t *Trainer) editLocked(apply func(*Head) *Head) {
	t.gen++
	t.edits = append(t.edits, headEdit{gen: t.gen, apply: apply})
	if cur := t.head.Load(); cur != nil {
		t.head.Store(apply(cur))
	}
}

// Added tells the trainer that a sample was stored. If its label is new to
// the head, the head gets an imprinted row for it at once (see
// Head.Imprint), so the very next frame can be named; a retrain is
// scheduled either way.
func (t *Trainer) Added(s Sample) {
	if s.Backbone == t.backbone && len(s.Features) > 0 {
		t.mu.Lock()
		if cur := t.head.Load(); cur != nil && cur.Dim == len(s.Features) &&
			(cur.ClassIndex(s.Label) < 0 || slices.Contains(cur.Imprinted, s.Label)) {
			p := t.pending[s.Label]
			if len(p) < maxPending {
				p = append(p, s.Features)
				t.pending[s.Label] = p
			}
			xs, label := slices.Clone(p), s.Label
			t.editLocked(func(h *Head) *Head {
				nh, err := h.Imprint(label, xs)
				if err != nil {
					return h
				}
				return nh
			})
		}
		t.mu.Unlock()
	}
	t.Kick()
}

// ErrNoSuchLabel is returned for a label no stored sample has.
var ErrNoSuchLabel = errors.New("no sample has this label")

// ChangeOp names an edit of the stored labels.
type ChangeOp string

// The edits Apply makes.
const (
	OpRename       ChangeOp = "rename"        // every sample of Label becomes To (merging into To if it exists)
	OpForget       ChangeOp = "forget"        // every sample of Label is deleted
	OpForgetSample ChangeOp = "forget_sample" // sample SampleID is deleted
	OpMoveSample   ChangeOp = "move_sample"   // sample SampleID gets the label To
)

// Change is an edit of the stored labels.
type Change struct {
	Op       ChangeOp
	Label    string
	To       string
	SampleID uint64
}

// Changed says what a change did.
type Changed struct {
	// Label is the label changed (for one sample: its label before).
	Label string
	// To is the new label of a rename or move.
	To       string
	SampleID uint64
	// N is the number of samples changed.
	N int
}

// Apply edits the stored labels in one store transaction, recorded under
// requestID so that a retried request is not applied twice (the second
// time it returns ErrDuplicate and the answer recorded the first time),
// then updates the head at once (a forgotten label leaves it, a renamed
// one keeps its function under the new name, a label new to the head is
// imprinted) and schedules a retrain. answer, if set, makes the answer
// recorded with the change.
func (t *Trainer) Apply(requestID string, c Change, answer func(Changed) ([]byte, error)) (Changed, []byte, error) {
	var out Changed
	var moved Sample
	if (c.Op == OpRename || c.Op == OpMoveSample) && checkLabel(c.To) != nil {
		return out, nil, checkLabel(c.To)
	}
	if answer == nil {
		answer = func(Changed) ([]byte, error) { return []byte("{}"), nil }
	}
	recorded, err := t.store.ApplyOnce(requestID, func(tx *Tx) (any, error) {
		var err error
		switch c.Op {
		case OpRename, OpForget:
			out.Label, out.To = c.Label, c.To
			if out.N, err = tx.Relabel(c.Label, c.To); err == nil && out.N == 0 {
				err = fmt.Errorf("%s %q: %w", c.Op, c.Label, ErrNoSuchLabel)
			}
		case OpForgetSample:
			out.SampleID, out.N = c.SampleID, 1
			if out.Label, err = tx.Delete(c.SampleID); err != nil {
				err = fmt.Errorf("forget sample %d: %w", c.SampleID, err)
			}
		case OpMoveSample:
			out.SampleID, out.To, out.N = c.SampleID, c.To, 1
			var old Sample
			if old, err = tx.SetLabel(c.SampleID, c.To); err != nil {
				err = fmt.Errorf("move sample %d: %w", c.SampleID, err)
			}
			out.Label, moved = old.Label, old
			moved.Label = c.To
		default:
			err = fmt.Errorf("unknown change %q", c.Op)
		}
		return out, err
	}, func(any) ([]byte, error) { return answer(out) })
	if err != nil {
		return out, recorded, err
	}
	switch c.Op {
	case OpRename:
		t.mu.Lock()
		if p, ok := t.pending[c.Label]; ok {
			t.pending[c.To] = append(t.pending[c.To], p...)
			delete(t.pending, c.Label)
		}
		t.editLocked(func(h *Head) *Head { return h.Renamed(c.Label, c.To) })
		t.mu.Unlock()
		t.Kick()
	case OpForget:
		t.mu.Lock()
		delete(t.pending, c.Label)
		t.editLocked(func(h *Head) *Head { return h.WithoutClass(c.Label) })
		t.mu.Unlock()
		t.Kick()
	case OpForgetSample:
		t.dropIfEmpty(out.Label)
		t.Kick()
	case OpMoveSample:
		t.dropIfEmpty(out.Label)
		t.Added(moved)
	}
	return out, recorded, nil
}

func checkLabel(l string) error {
	if l == "" || l == Unknown || l == Background {
		return fmt.Errorf("label %q is empty or reserved", l)
	}
	return nil
}

func (t *Trainer) dropIfEmpty(label string) {
	counts, err := t.store.Counts(t.backbone)
	if err != nil {
		return // the retrain will sort it out
	}
	if slices.ContainsFunc(counts, func(c LabelCount) bool { return c.Label == label }) {
		return
	}
	t.mu.Lock()
	delete(t.pending, label)
	t.editLocked(func(h *Head) *Head { return h.WithoutClass(label) })
	t.mu.Unlock()
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

// Retrain fits a head (see Fit) on the store's samples of the current
// backbone now and swaps it in. With fewer than two labels the head is
// cleared.
func (t *Trainer) Retrain() TrainReport {
	t.train.Lock()
	defer t.train.Unlock()
	t.mu.Lock()
	first := t.firstKick
	t.firstKick = time.Time{}
	gen := t.gen
	t.mu.Unlock()

	rep := t.retrain(gen)
	if !first.IsZero() {
		rep.Latency = time.Since(first)
	}
	t.mu.Lock()
	t.last = rep
	t.runs++
	t.mu.Unlock()
	switch {
	case rep.Err == nil:
		t.log.Info("head trained", "kind", rep.Kind, "samples", rep.Samples, "classes", rep.Classes, "iterations", rep.Iters,
			"threshold", rep.Threshold, "selected", rep.Selected, "select", rep.SelectTime.Round(time.Microsecond),
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

// retrain trains on the store as of edit generation gen.
func (t *Trainer) retrain(gen uint64) TrainReport {
	start := time.Now()
	d, err := t.store.Dataset(t.backbone)
	if err != nil {
		return TrainReport{Err: fmt.Errorf("load samples: %w", err)}
	}
	if t.loaded != nil {
		t.loaded()
	}
	rep := TrainReport{Samples: len(d.X), Classes: d.Classes()}
	h, info, err := Fit(d, t.backbone, FitConfig{Train: t.cfg.Train, Select: t.cfg.Select, Background: t.cfg.Background}, t.head.Load())
	if errors.Is(err, ErrTooFewClasses) {
		t.mu.Lock()
		t.head.Store(nil)
		t.pruneLocked(gen)
		t.mu.Unlock()
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
	rep.Kind, rep.Selected, rep.SelectTime, rep.Iters = h.Kind, info.Selected, info.SelectTime, h.Iters
	if h.Calibration != nil {
		rep.Threshold = h.Calibration.Threshold
	}
	if t.cfg.HeadPath != "" {
		if err := h.Save(t.cfg.HeadPath); err != nil {
			rep.Err = err
			return rep
		}
	}
	t.mu.Lock()
	// Edits made while training apply to the new head too.
	for _, e := range t.edits {
		if e.gen > gen && h != nil {
			h = e.apply(h)
		}
	}
	t.head.Store(h)
	t.pruneLocked(gen)
	for l := range t.pending {
		if h != nil && h.ClassIndex(l) >= 0 && !slices.Contains(h.Imprinted, l) {
			delete(t.pending, l)
		}
	}
	t.mu.Unlock()
	rep.Duration = time.Since(start)
	return rep
}

// pruneLocked drops the edits a training from generation gen has seen.
func (t *Trainer) pruneLocked(gen uint64) {
	t.edits = slices.DeleteFunc(t.edits, func(e headEdit) bool { return e.gen <= gen })
}

// Summary describes the current head for reports such as the agent's
// stats; nil while there is no head.
func (t *Trainer) Summary() *HeadSummary {
	h := t.head.Load()
	if h == nil {
		return nil
	}
	s := h.Summary()
	return &s
}

// Evaluate cross-validates the store's samples of the current backbone
// (see Evaluate). It trains many heads: with thousands of samples it takes
// seconds, so call it off any latency-sensitive goroutine.
func (t *Trainer) Evaluate(ctx context.Context, cfg EvalConfig) (*Report, error) {
	d, err := t.store.Dataset(t.backbone)
	if err != nil {
		return nil, fmt.Errorf("load samples: %w", err)
	}
	if cfg.Train.C == 0 {
		cfg.Train = t.cfg.Train
	}
	if cfg.Select == (SelectConfig{}) {
		cfg.Select = t.cfg.Select
	}
	if cfg.Background.Reference == nil {
		cfg.Background = t.cfg.Background
	}
	return Evaluate(ctx, d, t.backbone, cfg)
}

// HeadSummary is what a report says about a head.
type HeadSummary struct {
	Kind string `json:"kind"`
	// Classes are the labels the head names (not its Background class);
	// Background says whether it has one.
	Classes    []string  `json:"classes"`
	Background bool      `json:"background,omitempty"`
	Samples    int       `json:"samples"`
	Trained    time.Time `json:"trained"`
	// Threshold is the calibrated open-set threshold (DefaultThreshold
	// when Calibration is nil).
	Threshold   float64      `json:"threshold"`
	Calibration *Calibration `json:"calibration,omitempty"`
	Capacity    *Capacity    `json:"capacity,omitempty"`
	Imprinted   []string     `json:"imprinted,omitempty"`
	Iterations  int          `json:"iterations"`
	TrainMillis float64      `json:"train_ms"`
}

// Summary describes the head.
func (h *Head) Summary() HeadSummary {
	s := HeadSummary{
		Kind: h.Kind, Classes: h.Labels(), Background: slices.Contains(h.Classes, Background), Samples: h.Samples, Trained: h.Trained,
		Threshold: h.ThresholdFor(0), Imprinted: slices.Clone(h.Imprinted),
		Iterations: h.Iters, TrainMillis: h.TrainTime * 1000,
	}
	if h.Calibration != nil {
		c := *h.Calibration
		s.Calibration = &c
	}
	if h.Capacity != nil {
		c := *h.Capacity
		s.Capacity = &c
	}
	return s
}
