// Package modeltest builds small TensorFlow Lite models for tests.
package modeltest

import (
	"encoding/binary"
	"math"

	"github.com/whiskercam/whisker/firmware/model"
	"github.com/whiskercam/whisker/firmware/tfl"
)

// Offset is the constant the tiny model adds to every input value.
var Offset = [3]float32{0.5, -1, 2}

// Tiny returns a model with input "image" [1,4,4,3] float32:
//
//	"shifted" = image + Offset        (ADD, per channel)
//	"out"     = max(shifted, 0)       (ADD with fused RELU, shifted + 0)
//
// so that cutting at "shifted" drops the second operator.
func Tiny() *tfl.ModelT {
	f32 := func(v ...float32) []byte {
		b := make([]byte, 4*len(v))
		for i, x := range v {
			binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
		}
		return b
	}
	return &tfl.ModelT{
		Version:     3,
		Description: "tiny test model",
		OperatorCodes: []*tfl.OperatorCodeT{
			{DeprecatedBuiltinCode: int8(tfl.BuiltinOperatorADD), BuiltinCode: tfl.BuiltinOperatorADD, Version: 1},
		},
		Buffers: []*tfl.BufferT{{}, {Data: f32(Offset[:]...)}, {Data: f32(0, 0, 0)}},
		Subgraphs: []*tfl.SubGraphT{{
			Name: "main",
			Tensors: []*tfl.TensorT{
				{Name: "image", Type: tfl.TensorTypeFLOAT32, Shape: []int32{1, 4, 4, 3}},
				{Name: "offset", Type: tfl.TensorTypeFLOAT32, Shape: []int32{3}, Buffer: 1},
				{Name: "shifted", Type: tfl.TensorTypeFLOAT32, Shape: []int32{1, 4, 4, 3}},
				{Name: "zero", Type: tfl.TensorTypeFLOAT32, Shape: []int32{3}, Buffer: 2},
				{Name: "out", Type: tfl.TensorTypeFLOAT32, Shape: []int32{1, 4, 4, 3}},
			},
			Inputs:  []int32{0},
			Outputs: []int32{4},
			Operators: []*tfl.OperatorT{
				{OpcodeIndex: 0, Inputs: []int32{0, 1}, Outputs: []int32{2},
					BuiltinOptions: &tfl.BuiltinOptionsT{Type: tfl.BuiltinOptionsAddOptions, Value: &tfl.AddOptionsT{PotScaleInt16: true}}},
				{OpcodeIndex: 0, Inputs: []int32{2, 3}, Outputs: []int32{4},
					BuiltinOptions: &tfl.BuiltinOptionsT{Type: tfl.BuiltinOptionsAddOptions, Value: &tfl.AddOptionsT{
						FusedActivationFunction: tfl.ActivationFunctionTypeRELU, PotScaleInt16: true}}},
			},
		}},
	}
}

// TinyBytes is Tiny encoded.
func TinyBytes() []byte { return model.Encode(Tiny()) }

// Quant is a tensor's affine quantisation: real = Scale * (q - Zero).
type Quant struct {
	Scale float32
	Zero  int64
}

// QuantIn is the quantisation of TinyQuantized's input of type typ.
func QuantIn(typ tfl.TensorType) Quant {
	if typ == tfl.TensorTypeINT8 {
		return Quant{0.02, -28}
	}
	return Quant{0.02, 100}
}

// QuantOut is the quantisation of TinyQuantized's output of type typ.
func QuantOut(typ tfl.TensorType) Quant {
	if typ == tfl.TensorTypeINT8 {
		return Quant{0.05, -8}
	}
	return Quant{0.05, 120}
}

// TinyQuantized returns a model with an 8-bit input "image" [1,4,4,3] of
// type typ (UINT8 or INT8) and an 8-bit output "out" of the same type:
//
//	"real"    = dequantize(image)             (DEQUANTIZE, QuantIn)
//	"shifted" = real + Offset                 (ADD)
//	"out"     = quantize(shifted)             (QUANTIZE, QuantOut)
func TinyQuantized(typ tfl.TensorType) *tfl.ModelT {
	m := Tiny()
	qi, qo := QuantIn(typ), QuantOut(typ)
	version := int32(1)
	if typ == tfl.TensorTypeINT8 {
		version = 2
	}
	m.Description = "tiny quantised test model"
	m.OperatorCodes = append(m.OperatorCodes,
		&tfl.OperatorCodeT{DeprecatedBuiltinCode: int8(tfl.BuiltinOperatorDEQUANTIZE), BuiltinCode: tfl.BuiltinOperatorDEQUANTIZE, Version: version},
		&tfl.OperatorCodeT{DeprecatedBuiltinCode: int8(tfl.BuiltinOperatorQUANTIZE), BuiltinCode: tfl.BuiltinOperatorQUANTIZE, Version: 1},
	)
	sg := m.Subgraphs[0]
	sg.Tensors = []*tfl.TensorT{
		{Name: "image", Type: typ, Shape: []int32{1, 4, 4, 3}, Quantization: &tfl.QuantizationParametersT{Scale: []float32{qi.Scale}, ZeroPoint: []int64{qi.Zero}}},
		{Name: "offset", Type: tfl.TensorTypeFLOAT32, Shape: []int32{3}, Buffer: 1},
		{Name: "real", Type: tfl.TensorTypeFLOAT32, Shape: []int32{1, 4, 4, 3}},
		{Name: "shifted", Type: tfl.TensorTypeFLOAT32, Shape: []int32{1, 4, 4, 3}},
		{Name: "out", Type: typ, Shape: []int32{1, 4, 4, 3}, Quantization: &tfl.QuantizationParametersT{Scale: []float32{qo.Scale}, ZeroPoint: []int64{qo.Zero}}},
	}
	sg.Inputs, sg.Outputs = []int32{0}, []int32{4}
	sg.Operators = []*tfl.OperatorT{
		{OpcodeIndex: 1, Inputs: []int32{0}, Outputs: []int32{2},
			BuiltinOptions: &tfl.BuiltinOptionsT{Type: tfl.BuiltinOptionsDequantizeOptions, Value: &tfl.DequantizeOptionsT{}}},
		{OpcodeIndex: 0, Inputs: []int32{2, 1}, Outputs: []int32{3},
			BuiltinOptions: &tfl.BuiltinOptionsT{Type: tfl.BuiltinOptionsAddOptions, Value: &tfl.AddOptionsT{PotScaleInt16: true}}},
		{OpcodeIndex: 2, Inputs: []int32{3}, Outputs: []int32{4},
			BuiltinOptions: &tfl.BuiltinOptionsT{Type: tfl.BuiltinOptionsQuantizeOptions, Value: &tfl.QuantizeOptionsT{}}},
	}
	return m
}
