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
	"math"
	"runtime"
	"slices"
	"strings"
	"sync"

	tflite "github.com/tphakala/go-tflite"

	"github.com/whiskercam/whisker/camera/frame"
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

// DefaultThreads is all cores but one (at least one): the core left over
// keeps capture, the camera pipeline's other stages, MQTT and the rest of
// the device (Home Assistant, often) from taking turns with the
// backbone's threads. A TensorFlow Lite worker that loses its core holds
// up the others at the next barrier, which costs more than the work that
// took the core.
func DefaultThreads() int { return max(1, runtime.NumCPU()-1) }

// Backbone is a loaded feature extractor.
type Backbone struct {
	mu       sync.Mutex
	manifest *model.Manifest
	delegate DelegateStatus
	interp   *tflite.Interpreter
	input    *tflite.Tensor
	inType   tflite.TensorType
	inQuant  Quant
	inShape  []int
	inLen    int
	outputs  []output
	quantBuf []byte

	emb      int        // index of the embedding output
	pool     model.Pool // host pooling of a [1,H,W,C] embedding output, or ""
	gridH    int
	gridW    int
	channels int
	boxes    int // index of the box encodings output, or -1
	scores   int // index of the class scores output, or -1
}

type output struct {
	t     *tflite.Tensor
	name  string
	typ   tflite.TensorType
	quant Quant
	shape []int
	n     int
	raw   []byte // scratch for quantised outputs
}

// Quant is a tensor's affine quantisation: real = Scale * (q - Zero).
type Quant struct {
	Scale float32
	Zero  int
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
	b, err := NewWithManifest(data, man, opt)
	if err != nil {
		return nil, fmt.Errorf("backbone %s: %w", man.ModelPath(manifestPath), err)
	}
	return b, nil
}

// NewWithManifest loads a model from memory and reads its outputs as the
// manifest describes them (which output is the embedding, whether the
// backbone pools a feature map, where the detections are).
func NewWithManifest(data []byte, man *model.Manifest, opt Options) (*Backbone, error) {
	if err := man.Validate(); err != nil {
		return nil, err
	}
	b, err := New(data, opt)
	if err != nil {
		return nil, err
	}
	if err := b.checkManifest(man); err != nil {
		b.Close()
		return nil, err
	}
	b.manifest = man
	return b, nil
}

// New loads a model from memory. The model is checked in Go before the C
// library sees it; it must have one image input (float32, uint8 or int8)
// and float32, uint8 or int8 outputs. Without a manifest, the embedding is
// the last output.
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
	b := &Backbone{interp: interp, delegate: status, boxes: -1, scores: -1}
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
	b.input, b.inShape, b.inType = in, in.Shape(), in.Type()
	switch b.inType {
	case tflite.Float32:
	case tflite.UInt8, tflite.Int8:
		q := in.QuantizationParams()
		if !(q.Scale > 0) {
			b.Close()
			return nil, fmt.Errorf("input %q is %v without quantisation parameters", in.Name(), b.inType)
		}
		b.inQuant = Quant{Scale: float32(q.Scale), Zero: q.ZeroPoint}
	default:
		b.Close()
		return nil, fmt.Errorf("input %q is %v, want float32, uint8 or int8", in.Name(), b.inType)
	}
	if len(b.inShape) != 4 || b.inShape[0] != 1 || b.inShape[3] != 3 {
		b.Close()
		return nil, fmt.Errorf("input %q has shape %v, want [1,H,W,3]", in.Name(), b.inShape)
	}
	b.inLen = product(b.inShape)
	if b.inType != tflite.Float32 && int(in.ByteSize()) != b.inLen {
		b.Close()
		return nil, fmt.Errorf("input %q has %d bytes for %d values", in.Name(), in.ByteSize(), b.inLen)
	}
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
		o := output{t: t, name: t.Name(), typ: t.Type(), shape: t.Shape()}
		o.n = product(o.shape)
		switch o.typ {
		case tflite.Float32:
			if int(t.ByteSize()) != 4*o.n {
				b.Close()
				return nil, fmt.Errorf("output %q has %d bytes for %d float32 values", o.name, t.ByteSize(), o.n)
			}
		case tflite.UInt8, tflite.Int8:
			q := t.QuantizationParams()
			if !(q.Scale > 0) {
				b.Close()
				return nil, fmt.Errorf("output %q is %v without quantisation parameters", o.name, o.typ)
			}
			if int(t.ByteSize()) != o.n {
				b.Close()
				return nil, fmt.Errorf("output %q has %d bytes for %d values", o.name, t.ByteSize(), o.n)
			}
			o.quant = Quant{Scale: float32(q.Scale), Zero: q.ZeroPoint}
			o.raw = make([]byte, o.n)
		default:
			b.Close()
			return nil, fmt.Errorf("output %q is %v, want float32, uint8 or int8", o.name, o.typ)
		}
		b.outputs = append(b.outputs, o)
	}
	b.emb = len(b.outputs) - 1
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
	if man.Input.Type != "" && !strings.EqualFold(man.Input.Type, typeName(b.inType)) {
		return fmt.Errorf("input type %s does not match the manifest's %s", typeName(b.inType), man.Input.Type)
	}
	idx := func(name, what string) (int, error) {
		for i, o := range b.outputs {
			if o.name == name {
				return i, nil
			}
		}
		if len(b.outputs) == 1 && what == "embedding" && man.Detection == nil {
			return 0, nil // a single output is the embedding, whatever its name
		}
		return -1, fmt.Errorf("the manifest's %s output %q is not among the model's outputs", what, name)
	}
	var err error
	if b.emb, err = idx(man.Output.Name, "embedding"); err != nil {
		return err
	}
	o := b.outputs[b.emb]
	if man.HostPool {
		if len(o.shape) != 4 || o.shape[0] != 1 || o.shape[3] != man.Embedding {
			return fmt.Errorf("output %q has shape %v; the manifest says a [1,H,W,%d] feature map", o.name, o.shape, man.Embedding)
		}
		b.pool, b.gridH, b.gridW, b.channels = man.Pool, o.shape[1], o.shape[2], o.shape[3]
	} else if o.n != man.Embedding {
		return fmt.Errorf("output has %d values, the manifest says %d", o.n, man.Embedding)
	} else if len(b.outputs) != 1 && man.Detection == nil {
		return fmt.Errorf("an embedding model has one output; this one has %d", len(b.outputs))
	}
	if d := man.Detection; d != nil {
		if b.boxes, err = idx(d.Boxes, "box encodings"); err != nil {
			return err
		}
		if b.scores, err = idx(d.Scores, "class scores"); err != nil {
			return err
		}
		nb, ns := b.outputs[b.boxes].n, b.outputs[b.scores].n
		if nb%4 != 0 || ns != nb/4*len(d.Labels) {
			return fmt.Errorf("detection outputs have %d box values and %d scores; %d classes need 4 and %d per anchor", nb, ns, len(d.Labels), len(d.Labels))
		}
	}
	return nil
}

func typeName(t tflite.TensorType) string {
	switch t {
	case tflite.Float32:
		return "FLOAT32"
	case tflite.UInt8:
		return "UINT8"
	case tflite.Int8:
		return "INT8"
	}
	return t.String()
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

// InputType is the input tensor's element type ("FLOAT32", "UINT8" or
// "INT8") and, for the 8-bit types, its quantisation.
func (b *Backbone) InputType() (string, Quant) { return typeName(b.inType), b.inQuant }

// InputSpec is the preprocessing the manifest asks for, with the input
// tensor's type and quantisation, so that an 8-bit model gets its input
// quantised as the tensor says. Infer takes what a preprocessor made to
// this spec: Float for a float32 tensor, Quantized for an 8-bit one
// (Float given to an 8-bit tensor is quantised with its parameters).
func (b *Backbone) InputSpec() (frame.Spec, error) {
	man := b.manifest
	if man == nil {
		return frame.Spec{}, errors.New("the backbone has no manifest")
	}
	spec := frame.Spec{
		Width:  man.Input.Shape[2],
		Height: man.Input.Shape[1],
		RGB:    man.Preprocess.ColorOrder == "RGB",
		Mean:   man.Preprocess.Mean,
		Std:    man.Preprocess.Std,
		Fit:    frame.Fit(man.Preprocess.Resize),
	}
	switch b.inType {
	case tflite.UInt8:
		spec.Type, spec.Scale, spec.Zero = frame.Uint8, b.inQuant.Scale, b.inQuant.Zero
	case tflite.Int8:
		spec.Type, spec.Scale, spec.Zero = frame.Int8, b.inQuant.Scale, b.inQuant.Zero
	}
	if err := spec.Validate(); err != nil {
		return frame.Spec{}, fmt.Errorf("backbone manifest: %w", err)
	}
	return spec, nil
}

// Dim is the size of the embedding.
func (b *Backbone) Dim() int {
	if b.pool != "" {
		return b.channels
	}
	return b.outputs[b.emb].n
}

// Grid is the feature map's height and width when the backbone pools it
// itself (host pooling), else 0, 0.
func (b *Backbone) Grid() (h, w int) { return b.gridH, b.gridW }

// Detects says whether the model yields detections (box encodings and
// class scores) beside the embedding.
func (b *Backbone) Detects() bool { return b.boxes >= 0 && b.scores >= 0 }

// OutputShapes lists the shapes of every output.
func (b *Backbone) OutputShapes() [][]int {
	out := make([][]int, len(b.outputs))
	for i, o := range b.outputs {
		out[i] = slices.Clone(o.shape)
	}
	return out
}

// Result holds one run's outputs, copied out of the interpreter and
// dequantised. Pass the same Result to Infer again to reuse its memory.
type Result struct {
	// Outputs are all outputs, in the model's order.
	Outputs [][]float32
	// Embedding is the image's feature vector (pooled over the whole
	// input when the model outputs a feature map).
	Embedding []float32
	// Map is the feature map ([H][W][C]) when the backbone pools it;
	// RegionEmbedding pools parts of it.
	Map []float32
	// Boxes and Scores are the detector's box encodings and class logits
	// (nil when the model does not detect).
	Boxes, Scores []float32

	pool         model.Pool
	gridH, gridW int
	channels     int
}

// Embed runs the model on one preprocessed float image (H*W*3 values in
// the model's layout) and returns a copy of its embedding.
func (b *Backbone) Embed(input []float32) ([]float32, error) {
	var r Result
	if err := b.Infer(frame.Input{Float: input}, &r); err != nil {
		return nil, err
	}
	return r.Embedding, nil
}

// Run runs the model on a float image and returns copies of all outputs.
func (b *Backbone) Run(input []float32) ([][]float32, error) {
	var r Result
	if err := b.Infer(frame.Input{Float: input}, &r); err != nil {
		return nil, err
	}
	return r.Outputs, nil
}

// Invoke runs the interpreter once on whatever its input tensor holds,
// copying nothing in or out: the model's bare cost, for benchmarks.
func (b *Backbone) Invoke() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.interp == nil {
		return ErrClosed
	}
	if st := b.interp.Invoke(); st != tflite.OK {
		return fmt.Errorf("invoke: %v", st)
	}
	return nil
}

// Infer runs the model on one image and fills r.
func (b *Backbone) Infer(in frame.Input, r *Result) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.interp == nil {
		return ErrClosed
	}
	if err := b.setInput(in); err != nil {
		return err
	}
	if st := b.interp.Invoke(); st != tflite.OK {
		return fmt.Errorf("invoke: %v", st)
	}
	if len(r.Outputs) != len(b.outputs) {
		r.Outputs = make([][]float32, len(b.outputs))
	}
	for i := range b.outputs {
		o := &b.outputs[i]
		buf := r.Outputs[i]
		if cap(buf) < o.n {
			buf = make([]float32, o.n)
		}
		buf = buf[:o.n]
		if err := o.copyOut(buf); err != nil {
			return err
		}
		r.Outputs[i] = buf
	}
	r.Boxes, r.Scores, r.Map = nil, nil, nil
	if b.boxes >= 0 {
		r.Boxes, r.Scores = r.Outputs[b.boxes], r.Outputs[b.scores]
	}
	r.pool, r.gridH, r.gridW, r.channels = b.pool, b.gridH, b.gridW, b.channels
	if b.pool == "" {
		r.Embedding = append(r.Embedding[:0], r.Outputs[b.emb]...)
		return nil
	}
	r.Map = r.Outputs[b.emb]
	var err error
	r.Embedding, err = r.RegionEmbedding(0, 0, 1, 1, r.Embedding)
	return err
}

func (b *Backbone) setInput(in frame.Input) error {
	switch {
	case b.inType == tflite.Float32 && in.Float != nil:
		if len(in.Float) != b.inLen {
			return fmt.Errorf("input has %d values, the model takes %d (%v)", len(in.Float), b.inLen, b.inShape)
		}
		if st := b.input.CopyFromBuffer(in.Float); st != tflite.OK {
			return fmt.Errorf("copy input: %v", st)
		}
		return nil
	case b.inType == tflite.Float32:
		return fmt.Errorf("the model takes float32 input; got %d quantised values", len(in.Quantized))
	case in.Quantized != nil:
		if len(in.Quantized) != b.inLen {
			return fmt.Errorf("input has %d values, the model takes %d (%v)", len(in.Quantized), b.inLen, b.inShape)
		}
		if st := b.input.CopyFromBuffer(in.Quantized); st != tflite.OK {
			return fmt.Errorf("copy input: %v", st)
		}
		return nil
	}
	if len(in.Float) != b.inLen {
		return fmt.Errorf("input has %d values, the model takes %d (%v)", len(in.Float), b.inLen, b.inShape)
	}
	if cap(b.quantBuf) < b.inLen {
		b.quantBuf = make([]byte, b.inLen)
	}
	buf := b.quantBuf[:b.inLen]
	lo, hi := 0, 255
	if b.inType == tflite.Int8 {
		lo, hi = -128, 127
	}
	for i, v := range in.Float {
		q := int(math.Round(float64(v/b.inQuant.Scale))) + b.inQuant.Zero
		buf[i] = byte(min(max(q, lo), hi)) // an int8 becomes its two's complement byte
	}
	if st := b.input.CopyFromBuffer(buf); st != tflite.OK {
		return fmt.Errorf("copy input: %v", st)
	}
	return nil
}

func (o *output) copyOut(dst []float32) error {
	if o.typ == tflite.Float32 {
		if st := o.t.CopyToBuffer(dst); st != tflite.OK {
			return fmt.Errorf("copy output %q: %v", o.name, st)
		}
		return nil
	}
	if st := o.t.CopyToBuffer(o.raw); st != tflite.OK {
		return fmt.Errorf("copy output %q: %v", o.name, st)
	}
	s, z := o.quant.Scale, o.quant.Zero
	if o.typ == tflite.Int8 {
		for i, q := range o.raw {
			dst[i] = s * float32(int(int8(q))-z)
		}
	} else {
		for i, q := range o.raw {
			dst[i] = s * float32(int(q)-z)
		}
	}
	return nil
}

// RegionEmbedding pools the part of the feature map under a box given in
// normalised input coordinates (0..1): every cell the box touches counts.
// It appends to dst[:0] and returns it. It needs a backbone that pools the
// map itself (host_pool in the manifest).
func (r *Result) RegionEmbedding(y0, x0, y1, x1 float32, dst []float32) ([]float32, error) {
	if r.pool == "" || r.Map == nil {
		return nil, errors.New("the model pools its own features; no feature map to pool a region of")
	}
	if !(y1 > y0 && x1 > x0) {
		return nil, fmt.Errorf("empty region %g,%g-%g,%g", y0, x0, y1, x1)
	}
	cy0, cy1 := cells(y0, y1, r.gridH)
	cx0, cx1 := cells(x0, x1, r.gridW)
	return PoolMap(r.Map, r.gridH, r.gridW, r.channels, r.pool, cy0, cx0, cy1, cx1, dst), nil
}

// cells maps a normalised interval to the grid cells it touches, at least
// one. An edge within 1e-4 of a cell border does not touch the cell
// beyond it (0.3 in float32 is a hair above 0.3).
func cells(lo, hi float32, n int) (int, int) {
	const eps = 1e-4
	a := int(math.Floor(float64(lo)*float64(n) + eps))
	b := int(math.Ceil(float64(hi)*float64(n) - eps))
	a = min(max(a, 0), n-1)
	b = min(max(b, a+1), n)
	return a, b
}

// PoolMap pools rows y0..y1-1 and columns x0..x1-1 of an [h][w][c] feature
// map (average or maximum per channel), appending to dst[:0].
func PoolMap(m []float32, h, w, c int, pool model.Pool, y0, x0, y1, x1 int, dst []float32) []float32 {
	dst = append(dst[:0], make([]float32, c)...)
	if pool == model.PoolMax {
		for i := range dst {
			dst[i] = float32(math.Inf(-1))
		}
	}
	for y := y0; y < y1; y++ {
		for x := x0; x < x1; x++ {
			cell := m[(y*w+x)*c : (y*w+x+1)*c]
			if pool == model.PoolMax {
				for i, v := range cell {
					dst[i] = max(dst[i], v)
				}
			} else {
				for i, v := range cell {
					dst[i] += v
				}
			}
		}
	}
	if pool != model.PoolMax {
		inv := 1 / float32((y1-y0)*(x1-x0))
		for i := range dst {
			dst[i] *= inv
		}
	}
	return dst
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
