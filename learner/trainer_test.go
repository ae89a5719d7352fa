package learner

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// trainerWith stores d and returns a trainer with a trained head.
func trainerWith(t *testing.T, d *Dataset) (*Trainer, *Store, string) {
	t.Helper()
	dir := t.TempDir()
	s, err := OpenStore(filepath.Join(dir, "samples.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	for i, x := range d.X {
		if _, _, err := s.Add(Sample{Label: d.Labels[i], Backbone: "bb", Features: x}); err != nil {
			t.Fatal(err)
		}
	}
	head := filepath.Join(dir, "head.json")
	tr := NewTrainer(TrainerConfig{HeadPath: head, Train: TrainConfig{Balanced: true}}, s, "bb", quietLog())
	if rep := tr.Retrain(); rep.Err != nil {
		t.Fatal(rep.Err)
	}
	return tr, s, head
}

func TestTrainerImprintsForgetsAndRenamesAtOnce(t *testing.T) {
	rng := rand.New(rand.NewPCG(51, 52))
	cs := centres(rng, 3, 12)
	tr, s, head := trainerWith(t, blobsAround(rng, cs[:2], 12, 1)) // enough to calibrate
	h := tr.Head()
	if h == nil || h.Calibration == nil || !slices.Equal(h.Classes, []string{"pet0", "pet1"}) {
		t.Fatalf("head %+v", h)
	}

	// A label new to the head: imprinted at once, before any training.
	smp := Sample{Label: "Tigger", Backbone: "bb", Features: blobsAround(rng, cs[2:], 1, 1).X[0]}
	if _, _, err := s.Add(smp); err != nil {
		t.Fatal(err)
	}
	tr.Added(smp)
	h = tr.Head()
	if h.ClassIndex("Tigger") < 0 || !slices.Equal(h.Imprinted, []string{"Tigger"}) {
		t.Fatalf("after Added: classes %v imprinted %v", h.Classes, h.Imprinted)
	}
	if p, _ := h.Classify(smp.Features, 0.01); p.Label != "Tigger" {
		t.Fatalf("the imprinted head calls its own sample %q", p.Label)
	}
	rep := tr.Retrain()
	if rep.Err != nil || !rep.Selected || slices.Contains(tr.Head().Imprinted, "Tigger") {
		t.Fatalf("retrain: %+v, imprinted %v", rep, tr.Head().Imprinted)
	}

	// Rename: at once, and it stays after a retrain.
	if c, _, err := tr.Apply("r1", Change{Op: OpRename, Label: "pet0", To: "Misty"}, nil); err != nil || c.N != 12 {
		t.Fatalf("rename: %+v, %v", c, err)
	}
	if _, _, err := tr.Apply("r1", Change{Op: OpRename, Label: "pet0", To: "Misty"}, nil); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("a retried rename: %v, want ErrDuplicate", err)
	}
	if tr.Head().ClassIndex("Misty") < 0 || tr.Head().ClassIndex("pet0") >= 0 {
		t.Fatalf("after rename: %v", tr.Head().Classes)
	}
	// Forget: at once.
	if c, _, err := tr.Apply("r2", Change{Op: OpForget, Label: "pet1"}, nil); err != nil || c.N != 12 {
		t.Fatalf("forget: %+v, %v", c, err)
	}
	if tr.Head().ClassIndex("pet1") >= 0 {
		t.Fatalf("after forget: %v", tr.Head().Classes)
	}
	if _, _, err := tr.Apply("r3", Change{Op: OpForget, Label: "pet1"}, nil); !errors.Is(err, ErrNoSuchLabel) {
		t.Fatalf("forget twice: %v", err)
	}
	if _, _, err := tr.Apply("r4", Change{Op: OpRename, Label: "nobody", To: "Shadow"}, nil); !errors.Is(err, ErrNoSuchLabel) {
		t.Fatalf("rename a label nobody has: %v", err)
	}
	tr.Retrain()
	if got := tr.Head().Classes; !slices.Equal(got, []string{"Misty", "Tigger"}) {
		t.Fatalf("after retrain: %v", got)
	}
	// The saved head is the retrained one.
	saved, err := LoadHead(head, "bb")
	if err != nil || !slices.Equal(saved.Classes, []string{"Misty", "Tigger"}) {
		t.Fatalf("saved head: %v, %v", saved, err)
	}

	// Forgetting the last sample of a label removes it; fewer than two
	// labels leave no head.
	d, _ := s.Dataset("bb")
	var tiggerID uint64
	for i, l := range d.Labels {
		if l == "Tigger" {
			tiggerID = d.IDs[i]
		}
	}
	if got, _, err := tr.Apply("r5", Change{Op: OpForgetSample, SampleID: tiggerID}, nil); err != nil || got.Label != "Tigger" {
		t.Fatalf("forget sample: %+v, %v", got, err)
	}
	if tr.Head() != nil {
		t.Fatalf("a head with classes %v after its second label lost its last sample", tr.Head().Classes)
	}
	if _, _, err := tr.Apply("r6", Change{Op: OpForgetSample, SampleID: tiggerID}, nil); !errors.Is(err, ErrNotFound) {
		t.Fatal("forgot a sample twice")
	}
}

func TestTrainerRelabelSample(t *testing.T) {
	rng := rand.New(rand.NewPCG(53, 54))
	tr, s, _ := trainerWith(t, blobs(rng, 3, 6, 5, 1))
	d, _ := s.Dataset("bb")
	old, _, err := tr.Apply("m1", Change{Op: OpMoveSample, SampleID: d.IDs[0], To: "Shadow"}, nil)
	if err != nil || old.Label != d.Labels[0] || old.To != "Shadow" {
		t.Fatalf("relabel: %+v, %v", old, err)
	}
	if tr.Head().ClassIndex("Shadow") < 0 {
		t.Fatalf("a new label by relabelling is not imprinted: %v", tr.Head().Classes)
	}
	if got, _ := s.Get(d.IDs[0]); got.Label != "Shadow" {
		t.Fatalf("stored label %q", got.Label)
	}
	if _, _, err := tr.Apply("m2", Change{Op: OpMoveSample, SampleID: d.IDs[0], To: Unknown}, nil); err == nil {
		t.Fatal("relabelled to the reserved label")
	}
}

// An edit made while a training runs must not be undone by the training's
// result, which was computed from the store as it was before.
func TestTrainerReappliesEditsMadeDuringTraining(t *testing.T) {
	rng := rand.New(rand.NewPCG(55, 56))
	tr, _, _ := trainerWith(t, blobs(rng, 3, 6, 5, 1))
	tr.loaded = func() {
		tr.loaded = nil
		if _, _, err := tr.Apply("f", Change{Op: OpForget, Label: "pet2"}, nil); err != nil {
			t.Error(err)
		}
		if _, _, err := tr.Apply("r", Change{Op: OpRename, Label: "pet0", To: "Misty"}, nil); err != nil {
			t.Error(err)
		}
	}
	rep := tr.Retrain()
	if rep.Err != nil {
		t.Fatal(rep.Err)
	}
	if !slices.Contains(rep.Classes, "pet2") {
		t.Fatalf("the training did not see the old store: %v", rep.Classes)
	}
	if got := tr.Head().Classes; slices.Contains(got, "pet2") || slices.Contains(got, "pet0") || !slices.Contains(got, "Misty") {
		t.Fatalf("edits made during training were lost: %v", got)
	}
}

func TestTrainerCatchesUpWithTheStoreAtStart(t *testing.T) {
	rng := rand.New(rand.NewPCG(57, 58))
	_, s, head := trainerWith(t, blobs(rng, 3, 6, 5, 1))
	if _, err := s.Relabel("pet1", ""); err != nil { // as if forgotten just before a crash
		t.Fatal(err)
	}
	again := NewTrainer(TrainerConfig{HeadPath: head}, s, "bb", quietLog())
	if got := again.Head().Classes; slices.Contains(got, "pet1") {
		t.Fatalf("a forgotten label is still named after a restart: %v", got)
	}
	trained := make(chan TrainReport, 1)
	again.OnTrained = func(_ *Head, rep TrainReport) { trained <- rep }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- again.Run(ctx) }()
	select {
	case rep := <-trained:
		if rep.Err != nil {
			t.Fatal(rep.Err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no retrain after starting with a stale head")
	}
	cancel()
	<-done
	if h := again.Head(); h == nil || h.Samples != 12 {
		t.Fatalf("retrained head %+v", h)
	}
}
