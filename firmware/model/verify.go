package model

import (
	"encoding/binary"
	"fmt"
)

// The flatbuffers Go runtime trusts the offsets and lengths it reads, so a
// damaged file could make decoding read out of range or allocate a huge
// vector. verify walks the raw file first, following schema.fbs, and
// checks that every table, string and vector lies inside the file and that
// all vectors together hold no more elements than the file could.

type kind uint8

const (
	kString kind = iota + 1
	kVector      // vector of scalars, elem bytes each
	kTable
	kTables // vector of tables
	kUnion  // union value; typeSlot holds its type
)

type field struct {
	slot     int
	kind     kind
	elem     int
	child    *tableSpec
	typeSlot int
	members  map[byte]*tableSpec
}

type tableSpec struct {
	name   string
	slots  int // declared fields (slots) in schema.fbs
	fields []field
}

var (
	specLeaf = &tableSpec{name: "options"} // option tables: bounds only

	specCustomQuant = &tableSpec{name: "CustomQuantization", slots: 1, fields: []field{{slot: 0, kind: kVector, elem: 1}}}
	specQuant       = &tableSpec{name: "QuantizationParameters", slots: 7, fields: []field{
		{slot: 0, kind: kVector, elem: 4}, {slot: 1, kind: kVector, elem: 4}, {slot: 2, kind: kVector, elem: 4},
		{slot: 3, kind: kVector, elem: 8},
		{slot: 5, kind: kUnion, typeSlot: 4, members: map[byte]*tableSpec{1: specCustomQuant}},
	}}
	specInt32Vec = &tableSpec{name: "Int32Vector", slots: 1, fields: []field{{slot: 0, kind: kVector, elem: 4}}}
	specU16Vec   = &tableSpec{name: "Uint16Vector", slots: 1, fields: []field{{slot: 0, kind: kVector, elem: 2}}}
	specU8Vec    = &tableSpec{name: "Uint8Vector", slots: 1, fields: []field{{slot: 0, kind: kVector, elem: 1}}}
	sparseIdx    = map[byte]*tableSpec{1: specInt32Vec, 2: specU16Vec, 3: specU8Vec}
	specDimMeta  = &tableSpec{name: "DimensionMetadata", slots: 6, fields: []field{
		{slot: 3, kind: kUnion, typeSlot: 2, members: sparseIdx},
		{slot: 5, kind: kUnion, typeSlot: 4, members: sparseIdx},
	}}
	specSparsity = &tableSpec{name: "SparsityParameters", slots: 3, fields: []field{
		{slot: 0, kind: kVector, elem: 4}, {slot: 1, kind: kVector, elem: 4}, {slot: 2, kind: kTables, child: specDimMeta},
	}}
	specVariant = &tableSpec{name: "VariantSubType", slots: 3, fields: []field{{slot: 0, kind: kVector, elem: 4}}}
	specTensor  = &tableSpec{name: "Tensor", slots: 10, fields: []field{
		{slot: 0, kind: kVector, elem: 4}, {slot: 3, kind: kString}, {slot: 4, kind: kTable, child: specQuant},
		{slot: 6, kind: kTable, child: specSparsity}, {slot: 7, kind: kVector, elem: 4},
		{slot: 9, kind: kTables, child: specVariant},
	}}
	specIntsOption = &tableSpec{name: "options", fields: []field{{slot: 0, kind: kVector, elem: 4}}}
	specOpCode     = &tableSpec{name: "OperatorCode", slots: 4, fields: []field{{slot: 1, kind: kString}}}
	specOp         = &tableSpec{name: "Operator", slots: 13, fields: []field{
		{slot: 1, kind: kVector, elem: 4}, {slot: 2, kind: kVector, elem: 4},
		// Option tables are scalars but for ReshapeOptions and SqueezeOptions.
		{slot: 4, kind: kUnion, typeSlot: 3, members: map[byte]*tableSpec{17: specIntsOption, 30: specIntsOption}},
		{slot: 5, kind: kVector, elem: 1}, {slot: 7, kind: kVector, elem: 1}, {slot: 8, kind: kVector, elem: 4},
		{slot: 12, kind: kUnion, typeSlot: 11},
	}}
	specSubGraph = &tableSpec{name: "SubGraph", slots: 5, fields: []field{
		{slot: 0, kind: kTables, child: specTensor}, {slot: 1, kind: kVector, elem: 4}, {slot: 2, kind: kVector, elem: 4},
		{slot: 3, kind: kTables, child: specOp}, {slot: 4, kind: kString},
	}}
	specBuffer    = &tableSpec{name: "Buffer", slots: 3, fields: []field{{slot: 0, kind: kVector, elem: 1}}}
	specMetadata  = &tableSpec{name: "Metadata", slots: 2, fields: []field{{slot: 0, kind: kString}}}
	specTensorMap = &tableSpec{name: "TensorMap", slots: 2, fields: []field{{slot: 0, kind: kString}}}
	specSignature = &tableSpec{name: "SignatureDef", slots: 5, fields: []field{
		{slot: 0, kind: kTables, child: specTensorMap}, {slot: 1, kind: kTables, child: specTensorMap},
		{slot: 2, kind: kString}, {slot: 3, kind: kString},
	}}
	specModel = &tableSpec{name: "Model", slots: 8, fields: []field{
		{slot: 1, kind: kTables, child: specOpCode}, {slot: 2, kind: kTables, child: specSubGraph},
		{slot: 3, kind: kString}, {slot: 4, kind: kTables, child: specBuffer}, {slot: 5, kind: kVector, elem: 4},
		{slot: 6, kind: kTables, child: specMetadata}, {slot: 7, kind: kTables, child: specSignature},
	}}
)

type verifier struct {
	b        []byte
	budget   int // vector elements and tables still allowed
	unknown  []string
	maxDepth int
}

func (v *verifier) u32(pos int) (uint32, error) {
	if pos < 0 || pos+4 > len(v.b) {
		return 0, fmt.Errorf("offset %d outside the file", pos)
	}
	return binary.LittleEndian.Uint32(v.b[pos:]), nil
}

func (v *verifier) u16(pos int) (uint16, error) {
	if pos < 0 || pos+2 > len(v.b) {
		return 0, fmt.Errorf("offset %d outside the file", pos)
	}
	return binary.LittleEndian.Uint16(v.b[pos:]), nil
}

func (v *verifier) spend(n int) error {
	v.budget -= n
	if v.budget < 0 {
		return fmt.Errorf("vectors hold more elements than the file can")
	}
	return nil
}

// uoffset follows the offset stored at pos.
func (v *verifier) uoffset(pos int) (int, error) {
	off, err := v.u32(pos)
	if err != nil {
		return 0, err
	}
	target := pos + int(off)
	if off == 0 || target >= len(v.b) || target < pos {
		return 0, fmt.Errorf("offset at %d points outside the file", pos)
	}
	return target, nil
}

// vector checks a vector's bounds and returns its first element position
// and length.
func (v *verifier) vector(pos, elem int) (int, int, error) {
	start, err := v.uoffset(pos)
	if err != nil {
		return 0, 0, err
	}
	n, err := v.u32(start)
	if err != nil {
		return 0, 0, err
	}
	if int64(n)*int64(elem) > int64(len(v.b)-start-4) {
		return 0, 0, fmt.Errorf("vector at %d claims %d elements, past the end of the file", start, n)
	}
	if err := v.spend(int(n)); err != nil {
		return 0, 0, err
	}
	return start + 4, int(n), nil
}

func (v *verifier) table(pos int, spec *tableSpec, depth int) error {
	if depth > v.maxDepth {
		return fmt.Errorf("tables nested deeper than %d", v.maxDepth)
	}
	if err := v.spend(1); err != nil {
		return err
	}
	so, err := v.u32(pos)
	if err != nil {
		return fmt.Errorf("%s table: %w", spec.name, err)
	}
	vt := pos - int(int32(so))
	vsize, err := v.u16(vt)
	if err != nil {
		return fmt.Errorf("%s vtable: %w", spec.name, err)
	}
	tsize, err := v.u16(vt + 2)
	if err != nil {
		return fmt.Errorf("%s vtable: %w", spec.name, err)
	}
	if vsize < 4 || vsize%2 != 0 || vt+int(vsize) > len(v.b) || pos+int(tsize) > len(v.b) {
		return fmt.Errorf("%s table at %d has a damaged vtable", spec.name, pos)
	}
	nfields := int(vsize-4) / 2
	slotPos := func(slot int) int {
		if slot >= nfields {
			return 0
		}
		off, _ := v.u16(vt + 4 + 2*slot)
		if off == 0 {
			return 0
		}
		return pos + int(off)
	}
	for slot := range nfields {
		if off, _ := v.u16(vt + 4 + 2*slot); off != 0 && int(off) >= int(tsize) {
			return fmt.Errorf("%s field %d lies outside its table", spec.name, slot)
		}
	}
	if spec.slots > 0 {
		for slot := spec.slots; slot < nfields; slot++ {
			if slotPos(slot) != 0 {
				v.unknown = append(v.unknown, fmt.Sprintf("%s field %d", spec.name, slot))
			}
		}
	}
	for _, f := range spec.fields {
		p := slotPos(f.slot)
		if p == 0 {
			continue
		}
		switch f.kind {
		case kString:
			if _, _, err := v.vector(p, 1); err != nil {
				return fmt.Errorf("%s string: %w", spec.name, err)
			}
		case kVector:
			if _, _, err := v.vector(p, f.elem); err != nil {
				return fmt.Errorf("%s vector: %w", spec.name, err)
			}
		case kTable:
			t, err := v.uoffset(p)
			if err != nil {
				return fmt.Errorf("%s: %w", spec.name, err)
			}
			if err := v.table(t, f.child, depth+1); err != nil {
				return err
			}
		case kTables:
			first, n, err := v.vector(p, 4)
			if err != nil {
				return fmt.Errorf("%s vector: %w", spec.name, err)
			}
			for i := range n {
				t, err := v.uoffset(first + 4*i)
				if err != nil {
					return fmt.Errorf("%s[%d]: %w", spec.name, i, err)
				}
				if err := v.table(t, f.child, depth+1); err != nil {
					return err
				}
			}
		case kUnion:
			tp := slotPos(f.typeSlot)
			if tp == 0 || tp >= len(v.b) || v.b[tp] == 0 {
				continue
			}
			child := f.members[v.b[tp]]
			if child == nil {
				child = specLeaf
			}
			t, err := v.uoffset(p)
			if err != nil {
				return fmt.Errorf("%s union: %w", spec.name, err)
			}
			if err := v.table(t, child, depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}

// verify checks the raw file and returns the fields it found that the
// declared schema does not know (a model from a newer converter).
func verify(data []byte) (unknown []string, err error) {
	v := &verifier{b: data, budget: 2*len(data) + 1024, maxDepth: 16}
	root, err := v.uoffset(0)
	if err != nil {
		return nil, err
	}
	if err := v.table(root, specModel, 0); err != nil {
		return nil, err
	}
	return v.unknown, nil
}
