// Package backbone runs a frozen TensorFlow Lite feature extractor through
// go-tflite. It is the only package that touches the TensorFlow Lite C
// library: it checks every handle the library returns, turns status codes
// into errors, checks input sizes against the tensor and copies outputs out
// of tensor memory before returning them.
//
// A Backbone is meant to be owned by one goroutine; a mutex makes misuse
// safe rather than fast.
package backbone

/*
#include <tensorflow/lite/c/c_api.h>
*/
import "C"

import (
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"

	tflite "github.com/tphakala/go-tflite"

	"github.com/whiskercam/whisker/firmware/model"
)

// RuntimeVersion is the TensorFlow Lite library's version string.
func RuntimeVersion() string {
	return C.GoString(C.TfLiteVersion())
}

// Options tune the interpreter.
type Options struct {
	// Threads for the CPU kernels; 0 means all cores.
	Threads int
	// Delegate to hand the model to; "" or DelegateNone keeps it on the
	// CPU kernels. One that is not compiled in or cannot take the model
	// falls back to the CPU (see Backbone.Delegate).
	Delegate Delegate
}

// Backbone is a loaded feature extractor.
type Backbone struct {
	mu       sync.Mutex
	manifest *model.Manifest
	delegate DelegateStatus
	interp   *tflite.Interpreter
	input    *tflite.Tensor
	inShape  []int
	inLen    int
	outputs  []output
}

type output struct {
	t     *tflite.Tensor
	name  string
	shape []int
	n     int
}

// ErrClosed is returned by a closed Backbone.
var ErrClosed = errors.New("backbone is closed")

// Open loads the backbone a manifest describes, after checking that the
// model file matches the manifest and parses.
func Open(manifestPath string, opt Options) (*Backbone, error) {
	man, data, err := model.LoadBackbone(manifestPath)
	if err != nil {
		return nil, err
	}
	b, err := New(data, opt)
	if err != nil {
		return nil, fmt.Errorf("backbone %s: %w", man.ModelPath(manifestPath), err)
	}
	if err := b.checkManifest(man); err != nil {
		b.Close()
		return nil, fmt.Errorf("backbone %s: %w", man.ModelPath(manifestPath), err)
	}
	b.manifest = man
	return b, nil
}

// New loads a model from memory. The model is checked in Go before the C
// library sees it; it must have one float32 image input and float32
// outputs.
func New(data []byte, opt Options) (*Backbone, error) {
	if _, err := model.Parse(data); err != nil {
		return nil, err
	}
	requested, err := ParseDelegate(string(opt.Delegate))
	if err != nil {
		return nil, err
	}
	m := tflite.NewModel(data)
	if m == nil {
		return nil, errors.New("TensorFlow Lite could not load the model (see its message above)")
	}
	threads := opt.Threads
	if threads <= 0 {
		threads = runtime.NumCPU()
	}
	status := DelegateStatus{Requested: requested, Active: requested}
	interp, err := newInterpreter(m, threads, requested)
	if err != nil && requested != DelegateNone {
		// The delegate is not compiled in, did not start, or could not
		// take the model: run on the CPU kernels instead.
		status.Active, status.Fallback = DelegateNone, err
		interp, err = newInterpreter(m, threads, DelegateNone)
	}
	if err != nil {
		m.Delete()
		return nil, err
	}
	b := &Backbone{interp: interp, delegate: status}
	if st := interp.AllocateTensors(); st != tflite.OK {
		b.Close()
		return nil, fmt.Errorf("allocate tensors: %v", st)
	}
	if n := interp.GetInputTensorCount(); n != 1 {
		b.Close()
		return nil, fmt.Errorf("model has %d inputs, want one image input", n)
	}
	in := interp.GetInputTensor(0)
	if in == nil {
		b.Close()
		return nil, errors.New("input tensor unavailable")
	}
	if in.Type() != tflite.Float32 {
		b.Close()
		return nil, fmt.Errorf("input %q is %v, want float32", in.Name(), in.Type())
	}
	b.input, b.inShape = in, in.Shape()
	if len(b.inShape) != 4 || b.inShape[0] != 1 || b.inShape[3] != 3 {
		b.Close()
		return nil, fmt.Errorf("input %q has shape %v, want [1,H,W,3]", in.Name(), b.inShape)
	}
	b.inLen = product(b.inShape)
	nout := interp.GetOutputTensorCount()
	if nout < 1 {
		b.Close()
		return nil, errors.New("model has no outputs")
	}
	for i := range nout {
		t := interp.GetOutputTensor(i)
		if t == nil {
			b.Close()
			return nil, fmt.Errorf("output %d unavailable", i)
		}
		if t.Type() != tflite.Float32 {
			b.Close()
			return nil, fmt.Errorf("output %q is %v, want float32", t.Name(), t.Type())
		}
		sh := t.Shape()
		b.outputs = append(b.outputs, output{t: t, name: t.Name(), shape: sh, n: product(sh)})
	}
	return b, nil
}

// newInterpreter builds an interpreter for m with the given delegate.
// On failure it frees what it made, but not the model.
func newInterpreter(m *tflite.Model, threads int, d Delegate) (*tflite.Interpreter, error) {
	opts := tflite.NewInterpreterOptions()
	if opts == nil {
		return nil, errors.New("TensorFlow Lite could not create interpreter options")
	}
	opts.SetNumThread(threads)
	if d != DelegateNone {
		del, err := newDelegate(d, threads)
		if err != nil {
			opts.Delete()
			return nil, err
		}
		opts.AddDelegate(del)
	}
	interp := tflite.NewInterpreter(m, opts)
	if interp == nil {
		opts.Delete() // and the delegate with it
		if d != DelegateNone {
			return nil, fmt.Errorf("%s: the delegate could not take the model (see the TensorFlow Lite message above)", d)
		}
		return nil, errors.New("TensorFlow Lite could not build an interpreter; the model may use operators this library version lacks")
	}
	return interp, nil
}

func (b *Backbone) checkManifest(man *model.Manifest) error {
	if !slices.Equal(b.inShape, man.Input.Shape) {
		return fmt.Errorf("input shape %v does not match the manifest's %v", b.inShape, man.Input.Shape)
	}
	if len(b.outputs) != 1 {
		return fmt.Errorf("an embedding model has one output; this one has %d", len(b.outputs))
	}
	if b.outputs[0].n != man.Embedding {
		return fmt.Errorf("output has %d values, the manifest says %d", b.outputs[0].n, man.Embedding)
	}
	return nil
}

func product(s []int) int {
	n := 1
	for _, d := range s {
		n *= d
	}
	return n
}

// Delegate says which delegate was asked for, which one runs the model,
// and why they differ.
func (b *Backbone) Delegate() DelegateStatus { return b.delegate }

// Manifest is the manifest the backbone was opened with (nil for New).
func (b *Backbone) Manifest() *model.Manifest { return b.manifest }

// InputShape is the input tensor's shape, [1,H,W,3].
func (b *Backbone) InputShape() []int { return slices.Clone(b.inShape) }

// Dim is the number of values in the first output.
func (b *Backbone) Dim() int { return b.outputs[0].n }

// OutputShapes lists the shapes of every output.
func (b *Backbone) OutputShapes() [][]int {
	out := make([][]int, len(b.outputs))
	for i, o := range b.outputs {
		out[i] = slices.Clone(o.shape)
	}
	return out
}

// Embed runs the model on one preprocessed image (H*W*3 float32 values in
// the model's layout) and returns a copy of the first output.
func (b *Backbone) Embed(input []float32) ([]float32, error) {
	outs, err := b.Run(input)
	if err != nil {
		return nil, err
	}
	return outs[0], nil
}

// Run runs the model and returns copies of all outputs.
func (b *Backbone) Run(input []float32) ([][]float32, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.interp == nil {
		return nil, ErrClosed
	}
	if len(input) != b.inLen {
		return nil, fmt.Errorf("input has %d values, the model takes %d (%v)", len(input), b.inLen, b.inShape)
	}
	if st := b.input.CopyFromBuffer(input); st != tflite.OK {
		return nil, fmt.Errorf("copy input: %v", st)
	}
	if st := b.interp.Invoke(); st != tflite.OK {
		return nil, fmt.Errorf("invoke: %v", st)
	}
	outs := make([][]float32, len(b.outputs))
	for i, o := range b.outputs {
		buf := make([]float32, o.n)
		if st := o.t.CopyToBuffer(buf); st != tflite.OK {
			return nil, fmt.Errorf("copy output %q: %v", o.name, st)
		}
		outs[i] = buf
	}
	return outs, nil
}

// Close frees the interpreter, its options and the model. It is safe to
// call more than once.
func (b *Backbone) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.interp != nil {
		b.interp.Delete()
		b.interp = nil
	}
	return nil
}
