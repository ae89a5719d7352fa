//go:build tflite_gpu

package backbone

/*
#cgo LDFLAGS: -ltensorflowlite_gpu_delegate
#include <tensorflow/lite/delegates/gpu/delegate.h>
*/
import "C"

import (
	"errors"
	"unsafe"

	"github.com/tphakala/go-tflite/delegates"
)

// gpuBuilt says whether this binary has the delegate.
const gpuBuilt = true

// gpuDelegate is TensorFlow Lite's GPU delegate V2 (OpenCL, else OpenGL ES
// 3.1 compute shaders) through its own C API, from the library Bazel builds
// as //tensorflow/lite/delegates/gpu:libtensorflowlite_gpu_delegate.so.
// go-tflite's gpu packages wrap older entry points (the GL-only delegate
// through OSMesa), so this file calls the V2 functions itself.
type gpuDelegate struct {
	d *C.TfLiteDelegate
}

func newGPU() (delegates.Delegater, error) {
	opts := C.TfLiteGpuDelegateOptionsV2Default()
	d := C.TfLiteGpuDelegateV2Create(&opts)
	if d == nil {
		return nil, errors.New("gpu: TfLiteGpuDelegateV2Create returned no delegate (no usable OpenCL or OpenGL ES 3.1 driver?)")
	}
	return &gpuDelegate{d: d}, nil
}

// Ptr is the TfLiteDelegate handle.
func (g *gpuDelegate) Ptr() unsafe.Pointer { return unsafe.Pointer(g.d) }

// Delete frees the delegate; the interpreter options call it when they are
// deleted, after the interpreter.
func (g *gpuDelegate) Delete() {
	if g.d != nil {
		C.TfLiteGpuDelegateV2Delete(g.d)
		g.d = nil
	}
}
