// Package embedder turns images into feature vectors with a backbone
// described by a manifest: the same preprocessing and model the agent
// uses, for tools that embed photographs outside the agent (bulk import,
// evaluation on a folder, benchmarks, re-embedding after a backbone
// update), and the input spec the agent's pipeline prepares frames to.
package embedder

import (
	"fmt"
	"image"
	"slices"

	"github.com/whiskercam/whisker/camera/frame"

	"github.com/whiskercam/whisker/camera"
	"github.com/whiskercam/whisker/learner/backbone"
)

// Embedder owns a backbone and its preprocessor. It belongs to one
// goroutine.
type Embedder struct {
	bb       *backbone.Backbone
	pre      *camera.Preprocessor
	identity string
	in       frame.Input
	res      backbone.Result
}

// Open loads the backbone a manifest describes, with the given options
// (threads, delegate), and the preprocessing its manifest and input
// tensor ask for.
func Open(manifestPath string, opt backbone.Options) (*Embedder, error) {
	bb, err := backbone.Open(manifestPath, opt)
	if err != nil {
		return nil, fmt.Errorf("backbone: %w", err)
	}
	spec, err := bb.InputSpec()
	if err == nil {
		var pre *camera.Preprocessor
		if pre, err = camera.NewPreprocessor(spec); err == nil {
			return &Embedder{bb: bb, pre: pre, identity: bb.Manifest().Identity}, nil
		}
	}
	bb.Close()
	return nil, fmt.Errorf("backbone manifest %s: %w", manifestPath, err)
}

// Backbone is the embedder's backbone (for its manifest and delegate
// status); the embedder still owns it.
func (e *Embedder) Backbone() *backbone.Backbone { return e.bb }

// Identity is the backbone identity stored with every feature vector.
func (e *Embedder) Identity() string { return e.identity }

// Spec is the model input the preprocessor produces.
func (e *Embedder) Spec() frame.Spec { return e.pre.Spec() }

// Dim is the feature vector's length.
func (e *Embedder) Dim() int { return e.bb.Dim() }

// Embed preprocesses a frame and runs the backbone; the feature vector
// is the caller's.
func (e *Embedder) Embed(f *frame.Frame) ([]float32, error) {
	if err := e.pre.Prepare(f, image.Rectangle{}, &e.in); err != nil {
		return nil, err
	}
	if err := e.bb.Infer(e.in, &e.res); err != nil {
		return nil, err
	}
	return slices.Clone(e.res.Embedding), nil
}

// EmbedRegion embeds one part of a frame, stretched or fitted to the
// input as the manifest says (a pet's crop); the feature vector is the
// caller's.
func (e *Embedder) EmbedRegion(f *frame.Frame, r image.Rectangle) ([]float32, error) {
	if r.Empty() {
		return nil, fmt.Errorf("empty region %v", r)
	}
	if err := e.pre.Prepare(f, r, &e.in); err != nil {
		return nil, err
	}
	if err := e.bb.Infer(e.in, &e.res); err != nil {
		return nil, err
	}
	return slices.Clone(e.res.Embedding), nil
}

// Close frees the backbone and the preprocessor.
func (e *Embedder) Close() error {
	e.pre.Close()
	return e.bb.Close()
}
