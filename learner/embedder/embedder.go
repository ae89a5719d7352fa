// Package embedder turns images into feature vectors with a backbone
// described by a manifest: the same preprocessing and model the agent
// uses, for tools that embed photographs outside the agent (bulk import,
// evaluation on a folder, benchmarks).
package embedder

import (
	"fmt"

	"github.com/whiskercam/whisker/camera"
	"github.com/whiskercam/whisker/learner/backbone"
)

// Embedder owns a backbone and its preprocessor. It belongs to one
// goroutine.
type Embedder struct {
	bb       *backbone.Backbone
	pre      *camera.Preprocessor
	identity string
	input    []float32
}

// Open loads the backbone a manifest describes, with threads CPU threads
// (0: all cores).
func Open(manifestPath string, threads int) (*Embedder, error) {
	bb, err := backbone.Open(manifestPath, backbone.Options{Threads: threads})
	if err != nil {
		return nil, fmt.Errorf("backbone: %w", err)
	}
	man := bb.Manifest()
	pre, err := camera.NewPreprocessor(camera.Spec{
		Width:  man.Input.Shape[2],
		Height: man.Input.Shape[1],
		RGB:    man.Preprocess.ColorOrder == "RGB",
		Mean:   man.Preprocess.Mean,
		Std:    man.Preprocess.Std,
		Fit:    camera.Fit(man.Preprocess.Resize),
	})
	if err != nil {
		bb.Close()
		return nil, fmt.Errorf("backbone manifest %s: %w", manifestPath, err)
	}
	return &Embedder{bb: bb, pre: pre, identity: man.Identity}, nil
}

// Identity is the backbone identity stored with every feature vector.
func (e *Embedder) Identity() string { return e.identity }

// Spec is the model input the preprocessor produces.
func (e *Embedder) Spec() camera.Spec { return e.pre.Spec() }

// Dim is the feature vector's length.
func (e *Embedder) Dim() int { return e.bb.Dim() }

// Embed preprocesses a frame and runs the backbone.
func (e *Embedder) Embed(f *camera.Frame) ([]float32, error) {
	in, err := e.pre.Process(f, e.input)
	if err != nil {
		return nil, err
	}
	e.input = in
	return e.bb.Embed(in)
}

// Close frees the backbone and the preprocessor.
func (e *Embedder) Close() error {
	e.pre.Close()
	return e.bb.Close()
}
