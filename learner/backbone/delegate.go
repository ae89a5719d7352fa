package backbone

import (
	"errors"
	"fmt"
	"strings"

	"github.com/tphakala/go-tflite/delegates"
)

// Delegate names a TensorFlow Lite delegate: an accelerator that takes
// over the operators it supports. Each one is compiled in only by its
// build tag, because each needs headers and libraries beyond the C API:
//
//	xnnpack   -tags tflite_xnnpack   optimised CPU kernels (a library built with XNNPACK)
//	edgetpu   -tags tflite_edgetpu   Coral Edge TPU (libedgetpu, a model compiled for it)
//	gpu       -tags tflite_gpu       GPU delegate V2 (libtensorflowlite_gpu_delegate)
//
// A delegate that is not compiled in, or cannot start, leaves the model on
// the CPU kernels; Backbone.Delegate says which ran and why.
type Delegate string

// The delegates a configuration can ask for.
const (
	DelegateNone    Delegate = "none"
	DelegateXNNPACK Delegate = "xnnpack"
	DelegateEdgeTPU Delegate = "edgetpu"
	DelegateGPU     Delegate = "gpu"
)

// Delegates lists the names ParseDelegate accepts.
func Delegates() []Delegate {
	return []Delegate{DelegateNone, DelegateXNNPACK, DelegateEdgeTPU, DelegateGPU}
}

// ParseDelegate checks a delegate name; "" means none.
func ParseDelegate(s string) (Delegate, error) {
	if s == "" {
		return DelegateNone, nil
	}
	for _, d := range Delegates() {
		if Delegate(s) == d {
			return d, nil
		}
	}
	names := make([]string, 0, len(Delegates()))
	for _, d := range Delegates() {
		names = append(names, string(d))
	}
	return "", fmt.Errorf("unknown delegate %q (want %s)", s, strings.Join(names, ", "))
}

// DelegateBuilt says whether this binary was built with the delegate's
// build tag (DelegateNone is always there).
func DelegateBuilt(d Delegate) bool {
	switch d {
	case DelegateNone:
		return true
	case DelegateXNNPACK:
		return xnnpackBuilt
	case DelegateEdgeTPU:
		return edgetpuBuilt
	case DelegateGPU:
		return gpuBuilt
	}
	return false
}

// ErrDelegateNotBuilt is wrapped by the fallback reason when this binary
// was built without the delegate's build tag.
var ErrDelegateNotBuilt = errors.New("not compiled into this binary")

// DelegateStatus says which delegate a backbone asked for and which one
// runs it.
type DelegateStatus struct {
	Requested Delegate
	Active    Delegate
	// Fallback is why Active is not Requested (nil when it is).
	Fallback error
}

// newDelegate starts the named delegate. The per-delegate constructors
// live in files selected by build tags.
func newDelegate(d Delegate, threads int) (delegates.Delegater, error) {
	switch d {
	case DelegateXNNPACK:
		return newXNNPACK(threads)
	case DelegateEdgeTPU:
		return newEdgeTPU()
	case DelegateGPU:
		return newGPU()
	}
	return nil, fmt.Errorf("delegate %q: no constructor", d)
}
