// Package frame holds the plain values that pass between the camera and
// the backbone: a captured image in owned memory (Frame), the description
// of a model input (Spec) and a preprocessed input (Input). It has no cgo,
// so tools and packages that only describe or move frames build without
// OpenCV or TensorFlow Lite.
package frame

import (
	"fmt"
	"math"
	"time"
)

// Frame is an 8-bit, 3-channel BGR image in owned memory. Row y starts at
// Data[y*Stride].
type Frame struct {
	Data   []byte
	Width  int
	Height int
	Stride int
	Seq    uint64    // capture sequence number, from 1
	Time   time.Time // capture time
}

// Validate checks that the geometry matches the data.
func (f *Frame) Validate() error {
	if f.Width <= 0 || f.Height <= 0 {
		return fmt.Errorf("frame is %dx%d", f.Width, f.Height)
	}
	if f.Stride < f.Width*3 {
		return fmt.Errorf("frame stride %d is below 3*width %d", f.Stride, f.Width*3)
	}
	if len(f.Data) < f.Stride*(f.Height-1)+f.Width*3 {
		return fmt.Errorf("frame data has %d bytes, %dx%d stride %d needs %d", len(f.Data), f.Width, f.Height, f.Stride, f.Stride*f.Height)
	}
	return nil
}

// Clone returns a deep copy.
func (f *Frame) Clone() Frame {
	c := *f
	c.Data = append([]byte(nil), f.Data...)
	return c
}

// CopyFrom makes f a copy of src, reusing f's buffer when it is big enough.
func (f *Frame) CopyFrom(src *Frame) {
	data := f.Data
	*f = *src
	f.Data = append(data[:0], src.Data...)
}

// Fit says how a frame is fitted to the model's input size.
type Fit string

// Ways to fit a frame to the input.
const (
	FitStretch   Fit = "stretch"   // resize to the input size, ignoring aspect ratio
	FitLetterbox Fit = "letterbox" // keep aspect ratio, pad with grey
	FitCrop      Fit = "crop"      // keep aspect ratio, crop the centre
)

// Element types of a model input.
const (
	Float32 = "float32"
	Uint8   = "uint8"
	Int8    = "int8"
)

// Spec describes a model input laid out as [H][W][3] in the given channel
// order. Pixels are normalised as value = (pixel - Mean[c]) / Std[c]; for
// 8-bit inputs (Type uint8 or int8) the value is then quantised with the
// tensor's parameters: q = round(value / Scale) + Zero, clamped to the
// type's range.
type Spec struct {
	Width, Height int
	RGB           bool // channel order RGB (else BGR)
	Mean, Std     [3]float32
	Fit           Fit
	Type          string  // Float32 (also ""), Uint8 or Int8
	Scale         float32 // quantisation scale of an 8-bit input
	Zero          int     // quantisation zero point of an 8-bit input
}

// Validate checks a spec.
func (s Spec) Validate() error {
	if s.Width <= 0 || s.Height <= 0 || s.Width > 4096 || s.Height > 4096 {
		return fmt.Errorf("input size %dx%d", s.Width, s.Height)
	}
	for c := range 3 {
		if s.Std[c] == 0 || math.IsNaN(float64(s.Std[c])) || math.IsNaN(float64(s.Mean[c])) {
			return fmt.Errorf("std[%d] is %g, mean[%d] is %g", c, s.Std[c], c, s.Mean[c])
		}
	}
	switch s.Fit {
	case FitStretch, FitLetterbox, FitCrop, "":
	default:
		return fmt.Errorf("unknown fit %q (stretch, letterbox or crop)", s.Fit)
	}
	switch s.Type {
	case Float32, "":
	case Uint8, Int8:
		if !(s.Scale > 0) || math.IsInf(float64(s.Scale), 0) {
			return fmt.Errorf("%s input with quantisation scale %g", s.Type, s.Scale)
		}
		lo, hi := QuantRange(s.Type)
		if s.Zero < lo || s.Zero > hi {
			return fmt.Errorf("%s input with zero point %d", s.Type, s.Zero)
		}
	default:
		return fmt.Errorf("input type %q: want float32, uint8 or int8", s.Type)
	}
	return nil
}

// QuantRange is the range of values of an 8-bit input type.
func QuantRange(typ string) (lo, hi int) {
	if typ == Int8 {
		return -128, 127
	}
	return 0, 255
}

// Input is a preprocessed image: Float for a float32 model input, or
// Quantized for an 8-bit one (int8 values as their two's complement
// bytes).
type Input struct {
	Float     []float32
	Quantized []byte
}
