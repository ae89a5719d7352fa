// Package model reads, checks, describes and edits TensorFlow Lite model
// files. It is pure Go: it never runs a model, so it can check a file before
// a runtime sees it and edit models on any machine.
package model

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/whiskercam/whisker/firmware/tfl"
)

// ErrNotModel is returned for data that is not a TensorFlow Lite model.
var ErrNotModel = errors.New("not a TensorFlow Lite model")

// ErrUnsupported is returned for a model that uses something the model
// tools do not handle; the message names it.
var ErrUnsupported = errors.New("unsupported model feature")

// Parse decodes and structurally checks a TensorFlow Lite model. Malformed
// input returns an error (never a panic): every index in the file is checked
// against the table it points into, and constant buffers against their
// tensor's size.
func Parse(data []byte) (*tfl.ModelT, error) {
	m, _, err := parse(data)
	return m, err
}

// parse also returns the fields the file has that schema.fbs does not
// declare (a model from a newer converter).
func parse(data []byte) (m *tfl.ModelT, unknown []string, err error) {
	if len(data) < 16 {
		return nil, nil, fmt.Errorf("%w: only %d bytes", ErrNotModel, len(data))
	}
	if !bytes.Equal(data[4:8], []byte("TFL3")) {
		return nil, nil, fmt.Errorf("%w: file identifier is %q, want \"TFL3\"", ErrNotModel, data[4:8])
	}
	unknown, err = verify(data)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: damaged file: %v", ErrNotModel, err)
	}
	defer func() {
		// verify should have caught anything the runtime would trip on;
		// this is the second line of defence.
		if r := recover(); r != nil {
			m, unknown, err = nil, nil, fmt.Errorf("%w: corrupt flatbuffer (%v)", ErrNotModel, r)
		}
	}()
	raw := tfl.GetRootAsModel(data, 0)
	m = raw.UnPack()
	keepUnhandledOptions(raw, m)
	normalise(m)
	if err := validate(m); err != nil {
		return nil, nil, err
	}
	return m, unknown, nil
}

// keepUnhandledOptions records option tables that unpacking dropped
// because schema.fbs does not declare them: the operator keeps the type
// with a nil value, so that tools can name it instead of losing it.
func keepUnhandledOptions(raw *tfl.Model, m *tfl.ModelT) {
	var sg tfl.SubGraph
	var op tfl.Operator
	for si := 0; si < raw.SubgraphsLength() && si < len(m.Subgraphs); si++ {
		raw.Subgraphs(&sg, si)
		for oi := 0; oi < sg.OperatorsLength() && oi < len(m.Subgraphs[si].Operators); oi++ {
			sg.Operators(&op, oi)
			u := m.Subgraphs[si].Operators[oi]
			if t := op.BuiltinOptionsType(); t != tfl.BuiltinOptionsNONE && u.BuiltinOptions == nil {
				u.BuiltinOptions = &tfl.BuiltinOptionsT{Type: t}
			}
			if t := op.BuiltinOptions2Type(); t != tfl.BuiltinOptions2NONE && u.BuiltinOptions2 == nil {
				u.BuiltinOptions2 = &tfl.BuiltinOptions2T{Type: t}
			}
		}
	}
}

// typeSize is the byte size of one element, or 0 where it varies.
func typeSize(t tfl.TensorType) int {
	switch t {
	case tfl.TensorTypeFLOAT32, tfl.TensorTypeINT32, tfl.TensorTypeUINT32:
		return 4
	case tfl.TensorTypeFLOAT16, tfl.TensorTypeINT16, tfl.TensorTypeUINT16:
		return 2
	case tfl.TensorTypeUINT8, tfl.TensorTypeINT8, tfl.TensorTypeBOOL:
		return 1
	case tfl.TensorTypeINT64, tfl.TensorTypeFLOAT64, tfl.TensorTypeUINT64, tfl.TensorTypeCOMPLEX64:
		return 8
	case tfl.TensorTypeCOMPLEX128:
		return 16
	}
	return 0
}

func validate(m *tfl.ModelT) error {
	if m.Version != 3 {
		return fmt.Errorf("%w: schema version %d, want 3", ErrNotModel, m.Version)
	}
	if len(m.Subgraphs) == 0 {
		return fmt.Errorf("%w: no subgraphs", ErrNotModel)
	}
	for i, b := range m.Buffers {
		if b == nil {
			return fmt.Errorf("%w: buffer %d missing", ErrNotModel, i)
		}
		if b.Offset > 1 {
			return fmt.Errorf("%w: buffer %d is stored outside the flatbuffer (models over 2 GB)", ErrUnsupported, i)
		}
	}
	for i, oc := range m.OperatorCodes {
		if oc == nil {
			return fmt.Errorf("%w: operator code %d missing", ErrNotModel, i)
		}
	}
	for si, sg := range m.Subgraphs {
		if sg == nil {
			return fmt.Errorf("%w: subgraph %d missing", ErrNotModel, si)
		}
		nt := int32(len(sg.Tensors))
		for ti, t := range sg.Tensors {
			if t == nil {
				return fmt.Errorf("%w: subgraph %d tensor %d missing", ErrNotModel, si, ti)
			}
			if int(t.Buffer) >= len(m.Buffers) {
				return fmt.Errorf("%w: tensor %q points at buffer %d of %d", ErrNotModel, t.Name, t.Buffer, len(m.Buffers))
			}
			if _, ok := tfl.EnumNamesTensorType[t.Type]; !ok {
				return fmt.Errorf("%w: tensor %q has unknown type %d", ErrNotModel, t.Name, t.Type)
			}
			elems := int64(1)
			for _, d := range t.Shape {
				if d < 0 {
					elems = -1
					break
				}
				elems *= int64(d)
				if elems > 1<<40 {
					return fmt.Errorf("%w: tensor %q has an impossible shape %v", ErrNotModel, t.Name, t.Shape)
				}
			}
			if data := m.Buffers[t.Buffer].Data; len(data) > 0 && elems >= 0 {
				if sz := typeSize(t.Type); sz > 0 && t.Sparsity == nil && int64(len(data)) != elems*int64(sz) {
					return fmt.Errorf("%w: tensor %q %v %s has %d bytes of data, want %d",
						ErrNotModel, t.Name, t.Shape, t.Type, len(data), elems*int64(sz))
				}
			}
		}
		checkIdx := func(what string, idx []int32, optional bool) error {
			for _, x := range idx {
				if x < 0 && optional && x == -1 {
					continue
				}
				if x < 0 || x >= nt {
					return fmt.Errorf("%w: subgraph %d %s refers to tensor %d of %d", ErrNotModel, si, what, x, nt)
				}
			}
			return nil
		}
		if err := checkIdx("inputs", sg.Inputs, false); err != nil {
			return err
		}
		if err := checkIdx("outputs", sg.Outputs, false); err != nil {
			return err
		}
		for oi, op := range sg.Operators {
			if op == nil {
				return fmt.Errorf("%w: subgraph %d operator %d missing", ErrNotModel, si, oi)
			}
			if int(op.OpcodeIndex) >= len(m.OperatorCodes) {
				return fmt.Errorf("%w: operator %d uses operator code %d of %d", ErrNotModel, oi, op.OpcodeIndex, len(m.OperatorCodes))
			}
			where := fmt.Sprintf("operator %d (%s)", oi, OpName(m.OperatorCodes[op.OpcodeIndex]))
			if err := checkIdx(where+" inputs", op.Inputs, true); err != nil {
				return err
			}
			if err := checkIdx(where+" outputs", op.Outputs, false); err != nil {
				return err
			}
			if err := checkIdx(where+" intermediates", op.Intermediates, false); err != nil {
				return err
			}
		}
	}
	return nil
}

// BuiltinCode returns an operator code's builtin operator, reading both the
// byte-sized legacy field and the full field as runtimes do.
func BuiltinCode(oc *tfl.OperatorCodeT) tfl.BuiltinOperator {
	legacy := tfl.BuiltinOperator(oc.DeprecatedBuiltinCode)
	if oc.BuiltinCode > legacy {
		return oc.BuiltinCode
	}
	return legacy
}

// OpName is an operator code's name: the builtin's name, the custom code,
// or the number of a builtin this package does not name.
func OpName(oc *tfl.OperatorCodeT) string {
	code := BuiltinCode(oc)
	if code == tfl.BuiltinOperatorCUSTOM {
		return "CUSTOM:" + oc.CustomCode
	}
	if name, ok := tfl.EnumNamesBuiltinOperator[code]; ok {
		return name
	}
	return fmt.Sprintf("BUILTIN_%d", code)
}

// normalise turns the empty optional vectors that unpacking creates back
// into absent ones, so that a decoded and re-encoded model carries no
// fields its source did not have.
func normalise(m *tfl.ModelT) {
	for _, sg := range m.Subgraphs {
		if sg == nil {
			continue
		}
		for _, t := range sg.Tensors {
			if t == nil {
				continue
			}
			if len(t.ShapeSignature) == 0 {
				t.ShapeSignature = nil
			}
			if len(t.VariantTensors) == 0 {
				t.VariantTensors = nil
			}
		}
		for _, op := range sg.Operators {
			if op == nil {
				continue
			}
			if len(op.MutatingVariableInputs) == 0 {
				op.MutatingVariableInputs = nil
			}
			if len(op.Intermediates) == 0 {
				op.Intermediates = nil
			}
		}
	}
	if len(m.MetadataBuffer) == 0 {
		m.MetadataBuffer = nil
	}
}
