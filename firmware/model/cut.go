package model

import (
	"encoding/binary"
	"fmt"
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
}

// CutResult describes a cut model.
type CutResult struct {
	Model        []byte
	Tensor       string // the full name of the cut tensor
	TensorShape  []int
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
	sg := m.Subgraphs[0]
	target, err := FindTensor(m, opt.Tensor)
	if err != nil {
		return nil, err
	}
	tt := sg.Tensors[target]

	// Walk back from the target to the operators it needs.
	producer := make(map[int32]int, len(sg.Tensors))
	for i, op := range sg.Operators {
		for _, o := range op.Outputs {
			producer[o] = i
		}
	}
	keepOp := make([]bool, len(sg.Operators))
	stack := []int32{int32(target)}
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
	outT := mapTensor(int32(target))
	if opt.Pool != PoolNone {
		outT, err = appendPool(out, nsg, outT, opt.Pool)
		if err != nil {
			return nil, err
		}
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
