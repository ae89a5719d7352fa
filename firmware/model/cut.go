package model

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/whiskercam/whisker/firmware/tfl"
)

// Pool is the pooling appended after a cut tensor.
type Pool string

// Pooling choices for Cut.
const (
	PoolNone Pool = "none" // the tensor itself becomes the output
	PoolAvg  Pool = "avg"  // global average over height and width (MEAN)
	PoolMax  Pool = "max"  // global maximum over height and width (REDUCE_MAX)
)

// ParsePool reads a --pool value.
func ParsePool(s string) (Pool, error) {
	switch Pool(s) {
	case PoolNone, PoolAvg, PoolMax:
		return Pool(s), nil
	}
	return "", fmt.Errorf("unknown pooling %q (want none, avg or max)", s)
}

// CutOptions says where to cut a model.
type CutOptions struct {
	Tensor string // a tensor name, or a unique prefix of one
	Pool   Pool
	// KeepOutputs keeps the model's own outputs (a detector's boxes and
	// scores) before the cut tensor, so that one run of the shared trunk
	// yields both. Operators that only the dropped parts need still go.
	KeepOutputs bool
	// Also names more feature maps (names or unique prefixes) to pool like
	// Tensor and concatenate after it, in this order, into one feature
	// vector: features from several depths of the network. It needs avg
	// or max pooling, float32 tensors and no KeepOutputs.
	Also []string
	// Maps names feature maps appended whole (flattened: H*W*C values in
	// the tensor's own order) after the pooled parts: what a head that
	// trains the network's last layers needs to keep of each sample.
	// Same conditions as Also.
	Maps []string
	// InputHeight and InputWidth, when not zero, give the model input a
	// new height and width (a fully convolutional trunk takes any size).
	// The shape of every tensor that depends on the input is inferred
	// again; an operator whose output size this package cannot infer is
	// refused by name. It cannot keep a detector's outputs (its anchors
	// are fixed to its input).
	InputHeight, InputWidth int
}

// CutResult describes a cut model.
type CutResult struct {
	Model       []byte
	Tensor      string // the full name of the cut tensor
	TensorShape []int
	// Also are the full names of the tensors pooled beside Tensor, Maps
	// those appended whole, and Parts the size of each part of the
	// feature vector (Tensor's first, then Also's, then Maps'); Parts is
	// nil for a single tensor.
	Also  []string
	Maps  []string
	Parts []int
	// Resized says that the input has another size than the source's.
	Resized      bool
	Output       Tensor   // the feature output (the new model's last output)
	Outputs      []Tensor // every output of the new model, in order
	Input        Tensor
	KeptOps      int
	DroppedOps   int
	DroppedSigs  int
	EmbeddingDim int
}

// FindTensor resolves a tensor name in the main subgraph: an exact name, or
// a prefix that only one tensor name starts with.
func FindTensor(m *tfl.ModelT, name string) (int, error) {
	sg := m.Subgraphs[0]
	var prefixed []int
	for i, t := range sg.Tensors {
		if t.Name == name {
			return i, nil
		}
		if strings.HasPrefix(t.Name, name) {
			prefixed = append(prefixed, i)
		}
	}
	switch len(prefixed) {
	case 0:
		return -1, fmt.Errorf("no tensor named %q (see `whisker model inspect`)", name)
	case 1:
		return prefixed[0], nil
	}
	names := make([]string, 0, len(prefixed))
	for _, i := range prefixed {
		names = append(names, sg.Tensors[i].Name)
		if len(names) == 5 {
			names = append(names, "...")
			break
		}
	}
	return -1, fmt.Errorf("%d tensors start with %q: %s", len(prefixed), name, strings.Join(names, ", "))
}

// Cut writes a model whose single output is the named tensor, optionally
// pooled over its spatial dimensions, keeping only the operators that
// tensor depends on. Operators whose options this package cannot carry
// over are refused by name rather than written without them.
func Cut(data []byte, opt CutOptions) (*CutResult, error) {
	m, unknown, err := parse(data)
	if err != nil {
		return nil, err
	}
	if len(unknown) > 0 {
		return nil, fmt.Errorf("%w: the model has fields this tool does not know (%s); it was written by a newer converter",
			ErrUnsupported, strings.Join(unknown, ", "))
	}
	if len(m.Subgraphs) != 1 {
		return nil, fmt.Errorf("%w: model has %d subgraphs; cut handles single-subgraph models", ErrUnsupported, len(m.Subgraphs))
	}
	if opt.Pool == "" {
		opt.Pool = PoolNone
	}
	resize := opt.InputHeight != 0 || opt.InputWidth != 0
	switch {
	case len(opt.Also)+len(opt.Maps) > 0 && (opt.Pool == PoolNone || opt.KeepOutputs):
		return nil, errors.New("more tensors (--also, --map) need avg or max pooling and no detector outputs")
	case resize && opt.KeepOutputs:
		return nil, errors.New("a new input size cannot keep the detector's outputs (its anchors are fixed to its input)")
	case resize && (opt.InputHeight < 32 || opt.InputWidth < 32 || opt.InputHeight > 4096 || opt.InputWidth > 4096):
		return nil, fmt.Errorf("input size %dx%d: want 32 to 4096 pixels each way", opt.InputHeight, opt.InputWidth)
	}
	sg := m.Subgraphs[0]
	target, err := FindTensor(m, opt.Tensor)
	if err != nil {
		return nil, err
	}
	tt := sg.Tensors[target]
	var also []int32
	flat := map[int32]bool{}
	for k, name := range append(slices.Clip(opt.Also), opt.Maps...) {
		i, err := FindTensor(m, name)
		if err != nil {
			return nil, err
		}
		if i == target || slices.Contains(also, int32(i)) {
			return nil, fmt.Errorf("tensor %q is named twice", sg.Tensors[i].Name)
		}
		if t := sg.Tensors[i]; t.Type != tfl.TensorTypeFLOAT32 || tt.Type != tfl.TensorTypeFLOAT32 {
			return nil, fmt.Errorf("%w: concatenating pooled %s and %s tensors", ErrUnsupported, tt.Type, t.Type)
		}
		also = append(also, int32(i))
		flat[int32(i)] = k >= len(opt.Also)
	}

	// Walk back from the target to the operators it needs.
	producer := make(map[int32]int, len(sg.Tensors))
	for i, op := range sg.Operators {
		for _, o := range op.Outputs {
			producer[o] = i
		}
	}
	keepOp := make([]bool, len(sg.Operators))
	stack := append([]int32{int32(target)}, also...)
	if opt.KeepOutputs {
		stack = append(stack, sg.Outputs...)
	}
	seen := map[int32]bool{}
	for len(stack) > 0 {
		t := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if t < 0 || seen[t] {
			continue
		}
		seen[t] = true
		if oi, ok := producer[t]; ok && !keepOp[oi] {
			keepOp[oi] = true
			stack = append(stack, sg.Operators[oi].Inputs...)
		}
	}
	for i, op := range sg.Operators {
		if !keepOp[i] {
			continue
		}
		if err := checkCarriable(m, i, op); err != nil {
			return nil, err
		}
	}

	// New tensor, buffer and operator-code tables.
	out := &tfl.ModelT{Version: 3, Description: m.Description}
	out.Buffers = []*tfl.BufferT{{}} // buffer 0: the empty sentinel
	bufMap := map[uint32]uint32{0: 0}
	mapBuf := func(b uint32) uint32 {
		if b == 0 || len(m.Buffers[b].Data) == 0 && m.Buffers[b].Size == 0 {
			return 0
		}
		return keepBuffer(out, m, bufMap, b)
	}
	nsg := &tfl.SubGraphT{Name: sg.Name}
	tensorMap := map[int32]int32{}
	mapTensor := func(t int32) int32 {
		if t < 0 {
			return t
		}
		if nt, ok := tensorMap[t]; ok {
			return nt
		}
		src := *sg.Tensors[t]
		src.Buffer = mapBuf(src.Buffer)
		nt := int32(len(nsg.Tensors))
		nsg.Tensors = append(nsg.Tensors, &src)
		tensorMap[t] = nt
		return nt
	}
	codeMap := map[uint32]uint32{}
	mapCode := func(c uint32) uint32 {
		if nc, ok := codeMap[c]; ok {
			return nc
		}
		nc := uint32(len(out.OperatorCodes))
		out.OperatorCodes = append(out.OperatorCodes, m.OperatorCodes[c])
		codeMap[c] = nc
		return nc
	}
	// Graph inputs keep their order and come first.
	for _, in := range sg.Inputs {
		if seen[in] {
			nsg.Inputs = append(nsg.Inputs, mapTensor(in))
		}
	}
	if len(nsg.Inputs) == 0 {
		return nil, fmt.Errorf("tensor %q does not depend on any model input", tt.Name)
	}
	kept := 0
	for i, op := range sg.Operators {
		if !keepOp[i] {
			continue
		}
		kept++
		nop := *op
		nop.OpcodeIndex = mapCode(op.OpcodeIndex)
		nop.Inputs = mapAll(op.Inputs, mapTensor)
		nop.Outputs = mapAll(op.Outputs, mapTensor)
		if op.Intermediates != nil {
			nop.Intermediates = mapAll(op.Intermediates, mapTensor)
		}
		nsg.Operators = append(nsg.Operators, &nop)
	}
	if resize {
		if err := resizeInput(out, nsg, opt.InputHeight, opt.InputWidth); err != nil {
			return nil, err
		}
	}
	outT := mapTensor(int32(target))
	if opt.Pool != PoolNone {
		outT, err = appendPool(out, nsg, outT, opt.Pool)
		if err != nil {
			return nil, err
		}
	}
	var parts []int
	if len(also) > 0 {
		pooled := []int32{outT}
		parts = []int{int(sg.Tensors[target].Shape[len(sg.Tensors[target].Shape)-1])}
		for _, a := range also {
			var p int32
			if flat[a] {
				p, err = appendFlatten(out, nsg, mapTensor(a))
			} else {
				p, err = appendPool(out, nsg, mapTensor(a), opt.Pool)
			}
			if err != nil {
				return nil, err
			}
			pooled = append(pooled, p)
			parts = append(parts, int(nsg.Tensors[p].Shape[1]))
		}
		outT = appendConcat(out, nsg, pooled)
	}
	nsg.Outputs = nil
	if opt.KeepOutputs {
		for _, o := range sg.Outputs {
			if o == int32(target) {
				continue
			}
			nsg.Outputs = append(nsg.Outputs, mapTensor(o))
		}
	}
	nsg.Outputs = append(nsg.Outputs, outT)
	out.Subgraphs = []*tfl.SubGraphT{nsg}

	// Metadata that points at buffers is carried over; signatures name the
	// old outputs and are dropped.
	for _, md := range m.Metadata {
		if md == nil {
			continue
		}
		nmd := *md
		nmd.Buffer = keepBuffer(out, m, bufMap, md.Buffer)
		out.Metadata = append(out.Metadata, &nmd)
	}
	for _, b := range m.MetadataBuffer {
		if b >= 0 && int(b) < len(m.Buffers) {
			out.MetadataBuffer = append(out.MetadataBuffer, int32(keepBuffer(out, m, bufMap, uint32(b))))
		}
	}

	enc := Encode(out)
	info, err := Inspect(enc)
	if err != nil {
		return nil, fmt.Errorf("cut model does not read back: %w", err)
	}
	res := &CutResult{
		Model:       enc,
		Tensor:      tt.Name,
		Input:       info.Inputs[0],
		Output:      info.Outputs[len(info.Outputs)-1],
		Outputs:     info.Outputs,
		KeptOps:     kept,
		DroppedOps:  len(sg.Operators) - kept,
		DroppedSigs: len(m.SignatureDefs),
		Parts:       parts,
		Resized:     resize,
	}
	for _, a := range also {
		if flat[a] {
			res.Maps = append(res.Maps, sg.Tensors[a].Name)
		} else {
			res.Also = append(res.Also, sg.Tensors[a].Name)
		}
	}
	for _, d := range tt.Shape {
		res.TensorShape = append(res.TensorShape, int(d))
	}
	if len(res.Output.Shape) > 1 {
		res.EmbeddingDim = 1
		for _, d := range res.Output.Shape[1:] {
			res.EmbeddingDim *= d
		}
	}
	return res, nil
}

func mapAll(ts []int32, f func(int32) int32) []int32 {
	out := make([]int32, len(ts))
	for i, t := range ts {
		out[i] = f(t)
	}
	return out
}

// keepBuffer copies a buffer into the new model once, returning its index
// there.
func keepBuffer(out, m *tfl.ModelT, bufMap map[uint32]uint32, b uint32) uint32 {
	if int(b) >= len(m.Buffers) {
		return 0
	}
	if nb, ok := bufMap[b]; ok {
		return nb
	}
	nb := uint32(len(out.Buffers))
	out.Buffers = append(out.Buffers, m.Buffers[b])
	bufMap[b] = nb
	return nb
}

// checkCarriable refuses operators whose content cannot be copied
// faithfully: option tables this package does not declare, the second
// option union, and fields newer than the declared schema.
func checkCarriable(m *tfl.ModelT, i int, op *tfl.OperatorT) error {
	name := OpName(m.OperatorCodes[op.OpcodeIndex])
	if op.BuiltinOptions != nil && op.BuiltinOptions.Type != tfl.BuiltinOptionsNONE && op.BuiltinOptions.Value == nil {
		return fmt.Errorf("%w: operator %d (%s) uses option table %d, which the model tools do not handle",
			ErrUnsupported, i, name, op.BuiltinOptions.Type)
	}
	if op.BuiltinOptions2 != nil && op.BuiltinOptions2.Type != tfl.BuiltinOptions2NONE {
		return fmt.Errorf("%w: operator %d (%s) uses StableHLO options (union 2, table %d)",
			ErrUnsupported, i, name, op.BuiltinOptions2.Type)
	}
	if op.LargeCustomOptionsOffset > 1 {
		return fmt.Errorf("%w: operator %d (%s) keeps its custom options outside the flatbuffer", ErrUnsupported, i, name)
	}
	return nil
}

// appendPool adds a global pooling over axes 1 and 2 of a [N,H,W,C] tensor.
func appendPool(m *tfl.ModelT, sg *tfl.SubGraphT, in int32, pool Pool) (int32, error) {
	t := sg.Tensors[in]
	if len(t.Shape) != 4 {
		return 0, fmt.Errorf("pooling needs a 4-D [N,H,W,C] tensor; %q is %v", t.Name, t.Shape)
	}
	code, version := tfl.BuiltinOperatorMEAN, int32(1)
	if pool == PoolMax {
		code = tfl.BuiltinOperatorREDUCE_MAX
	}
	switch t.Type {
	case tfl.TensorTypeFLOAT32, tfl.TensorTypeUINT8:
	case tfl.TensorTypeINT8:
		version = 2
	default:
		return 0, fmt.Errorf("%w: pooling a %s tensor", ErrUnsupported, t.Type)
	}
	stem, _, _ := strings.Cut(t.Name, ";")
	axes := make([]byte, 8)
	binary.LittleEndian.PutUint32(axes[0:], 1)
	binary.LittleEndian.PutUint32(axes[4:], 2)
	m.Buffers = append(m.Buffers, &tfl.BufferT{Data: axes})
	axesT := int32(len(sg.Tensors))
	sg.Tensors = append(sg.Tensors, &tfl.TensorT{
		Name: stem + "/whisker_pool_axes", Type: tfl.TensorTypeINT32,
		Shape: []int32{2}, Buffer: uint32(len(m.Buffers) - 1),
	})
	outT := int32(len(sg.Tensors))
	pooled := &tfl.TensorT{
		Name: stem + "/whisker_" + string(pool) + "_pool", Type: t.Type,
		Shape: []int32{t.Shape[0], t.Shape[3]},
	}
	if t.Quantization != nil {
		q := *t.Quantization
		pooled.Quantization = &q
	}
	sg.Tensors = append(sg.Tensors, pooled)

	// Reuse an existing operator code for the reduction if there is one.
	opcode := -1
	for i, oc := range m.OperatorCodes {
		if BuiltinCode(oc) == code && oc.Version >= version {
			opcode = i
		}
	}
	if opcode < 0 {
		opcode = len(m.OperatorCodes)
		m.OperatorCodes = append(m.OperatorCodes, &tfl.OperatorCodeT{
			DeprecatedBuiltinCode: int8(code), BuiltinCode: code, Version: version,
		})
	}
	sg.Operators = append(sg.Operators, &tfl.OperatorT{
		OpcodeIndex: uint32(opcode),
		Inputs:      []int32{in, axesT},
		Outputs:     []int32{outT},
		BuiltinOptions: &tfl.BuiltinOptionsT{
			Type:  tfl.BuiltinOptionsReducerOptions,
			Value: &tfl.ReducerOptionsT{KeepDims: false},
		},
	})
	return outT, nil
}

// appendFlatten adds a RESHAPE of a [N,...] tensor to [N, the rest].
func appendFlatten(m *tfl.ModelT, sg *tfl.SubGraphT, in int32) (int32, error) {
	t := sg.Tensors[in]
	if len(t.Shape) < 2 {
		return 0, fmt.Errorf("flattening needs a [N,...] tensor; %q is %v", t.Name, t.Shape)
	}
	n := int32(1)
	for _, d := range t.Shape[1:] {
		n *= d
	}
	stem, _, _ := strings.Cut(t.Name, ";")
	shape := make([]byte, 8)
	binary.LittleEndian.PutUint32(shape[0:], uint32(t.Shape[0]))
	binary.LittleEndian.PutUint32(shape[4:], uint32(n))
	m.Buffers = append(m.Buffers, &tfl.BufferT{Data: shape})
	shapeT := int32(len(sg.Tensors))
	sg.Tensors = append(sg.Tensors, &tfl.TensorT{
		Name: stem + "/whisker_flat_shape", Type: tfl.TensorTypeINT32,
		Shape: []int32{2}, Buffer: uint32(len(m.Buffers) - 1),
	})
	outT := int32(len(sg.Tensors))
	sg.Tensors = append(sg.Tensors, &tfl.TensorT{Name: stem + "/whisker_flat", Type: t.Type, Shape: []int32{t.Shape[0], n}})
	opcode := -1
	for i, oc := range m.OperatorCodes {
		if BuiltinCode(oc) == tfl.BuiltinOperatorRESHAPE {
			opcode = i
		}
	}
	if opcode < 0 {
		opcode = len(m.OperatorCodes)
		m.OperatorCodes = append(m.OperatorCodes, &tfl.OperatorCodeT{
			DeprecatedBuiltinCode: int8(tfl.BuiltinOperatorRESHAPE), BuiltinCode: tfl.BuiltinOperatorRESHAPE, Version: 1,
		})
	}
	sg.Operators = append(sg.Operators, &tfl.OperatorT{
		OpcodeIndex: uint32(opcode),
		Inputs:      []int32{in, shapeT},
		Outputs:     []int32{outT},
		BuiltinOptions: &tfl.BuiltinOptionsT{
			Type:  tfl.BuiltinOptionsReshapeOptions,
			Value: &tfl.ReshapeOptionsT{NewShape: []int32{t.Shape[0], n}},
		},
	})
	return outT, nil
}

// appendConcat adds a CONCATENATION of [N,C_i] float tensors along their
// channels and returns the output tensor.
func appendConcat(m *tfl.ModelT, sg *tfl.SubGraphT, ins []int32) int32 {
	n, c := sg.Tensors[ins[0]].Shape[0], int32(0)
	for _, i := range ins {
		c += sg.Tensors[i].Shape[1]
	}
	stem, _, _ := strings.Cut(sg.Tensors[ins[0]].Name, ";")
	outT := int32(len(sg.Tensors))
	sg.Tensors = append(sg.Tensors, &tfl.TensorT{Name: stem + "/whisker_concat", Type: tfl.TensorTypeFLOAT32, Shape: []int32{n, c}})
	opcode := -1
	for i, oc := range m.OperatorCodes {
		if BuiltinCode(oc) == tfl.BuiltinOperatorCONCATENATION {
			opcode = i
		}
	}
	if opcode < 0 {
		opcode = len(m.OperatorCodes)
		m.OperatorCodes = append(m.OperatorCodes, &tfl.OperatorCodeT{
			DeprecatedBuiltinCode: int8(tfl.BuiltinOperatorCONCATENATION), BuiltinCode: tfl.BuiltinOperatorCONCATENATION, Version: 1,
		})
	}
	sg.Operators = append(sg.Operators, &tfl.OperatorT{
		OpcodeIndex: uint32(opcode),
		Inputs:      slices.Clone(ins),
		Outputs:     []int32{outT},
		BuiltinOptions: &tfl.BuiltinOptionsT{
			Type:  tfl.BuiltinOptionsConcatenationOptions,
			Value: &tfl.ConcatenationOptionsT{Axis: 1},
		},
	})
	return outT
}

// resizeInput gives a cut model's image input a new height and width and
// infers the shape of every tensor that depends on it, in operator order.
// Only the operators of a convolutional trunk are understood: 2-D and
// depthwise convolutions, element-wise additions and multiplications of
// equal shapes, and operators on constants (weight dequantisation).
func resizeInput(m *tfl.ModelT, sg *tfl.SubGraphT, h, w int) error {
	if len(sg.Inputs) != 1 {
		return fmt.Errorf("%w: resizing a model with %d inputs", ErrUnsupported, len(sg.Inputs))
	}
	in := sg.Tensors[sg.Inputs[0]]
	if len(in.Shape) != 4 {
		return fmt.Errorf("%w: resizing input %q of shape %v; want [N,H,W,C]", ErrUnsupported, in.Name, in.Shape)
	}
	in.Shape = []int32{in.Shape[0], int32(h), int32(w), in.Shape[3]}
	in.ShapeSignature = nil
	changed := map[int32]bool{sg.Inputs[0]: true}
	for i, op := range sg.Operators {
		depends := false
		for _, t := range op.Inputs {
			if t >= 0 && changed[t] {
				depends = true
			}
		}
		if !depends {
			continue
		}
		name := OpName(m.OperatorCodes[op.OpcodeIndex])
		shape, err := inferShape(m, sg, op)
		if err != nil {
			return fmt.Errorf("%w: cannot resize the input through operator %d (%s): %v", ErrUnsupported, i, name, err)
		}
		if len(op.Outputs) != 1 {
			return fmt.Errorf("%w: cannot resize the input through operator %d (%s) with %d outputs", ErrUnsupported, i, name, len(op.Outputs))
		}
		out := sg.Tensors[op.Outputs[0]]
		out.Shape, out.ShapeSignature = shape, nil
		changed[op.Outputs[0]] = true
	}
	return nil
}

// inferShape is the output shape of a trunk operator from its inputs'
// shapes.
func inferShape(m *tfl.ModelT, sg *tfl.SubGraphT, op *tfl.OperatorT) ([]int32, error) {
	shape := func(i int) []int32 { return sg.Tensors[op.Inputs[i]].Shape }
	conv := func(padding tfl.Padding, sh, sw, dh, dw int32, kh, kw, out int32) ([]int32, error) {
		x := shape(0)
		if len(x) != 4 {
			return nil, fmt.Errorf("input shape %v", x)
		}
		dh, dw = max(dh, 1), max(dw, 1)
		size := func(n, k, s, d int32) int32 {
			if s < 1 {
				s = 1
			}
			if padding == tfl.PaddingVALID {
				n -= (k - 1) * d
			}
			return (n + s - 1) / s
		}
		oh, ow := size(x[1], kh, sh, dh), size(x[2], kw, sw, dw)
		if oh < 1 || ow < 1 {
			return nil, fmt.Errorf("input %v too small", x)
		}
		return []int32{x[0], oh, ow, out}, nil
	}
	switch code := BuiltinCode(m.OperatorCodes[op.OpcodeIndex]); code {
	case tfl.BuiltinOperatorCONV_2D:
		o, ok := op.BuiltinOptions.Value.(*tfl.Conv2DOptionsT)
		f := shape(1)
		if !ok || len(f) != 4 {
			return nil, errors.New("no convolution options or filter")
		}
		return conv(o.Padding, o.StrideH, o.StrideW, o.DilationHFactor, o.DilationWFactor, f[1], f[2], f[0])
	case tfl.BuiltinOperatorDEPTHWISE_CONV_2D:
		o, ok := op.BuiltinOptions.Value.(*tfl.DepthwiseConv2DOptionsT)
		f := shape(1)
		if !ok || len(f) != 4 {
			return nil, errors.New("no convolution options or filter")
		}
		return conv(o.Padding, o.StrideH, o.StrideW, o.DilationHFactor, o.DilationWFactor, f[1], f[2], f[3])
	case tfl.BuiltinOperatorADD, tfl.BuiltinOperatorMUL, tfl.BuiltinOperatorSUB:
		a, b := shape(0), shape(1)
		if !slices.Equal(a, b) {
			return nil, fmt.Errorf("operands of shapes %v and %v", a, b)
		}
		return slices.Clone(a), nil
	default:
		return nil, errors.New("its output size cannot be inferred")
	}
}
