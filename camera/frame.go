// Package camera captures frames with OpenCV (through gocv) and turns them
// into a backbone's input. It knows nothing of labels or models: a Frame is
// owned Go memory (8-bit BGR pixels plus their geometry), and no gocv.Mat
// leaves the package.
package camera

import (
	"fmt"
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
