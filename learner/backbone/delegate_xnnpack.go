//go:build tflite_xnnpack

package backbone

import (
	"errors"

	"github.com/tphakala/go-tflite/delegates"
	"github.com/tphakala/go-tflite/delegates/xnnpack"
)

// xnnpackBuilt says whether this binary has the delegate.
const xnnpackBuilt = true

// newXNNPACK starts the XNNPACK delegate. Building it needs a TensorFlow
// Lite C library that exports TfLiteXNNPackDelegateCreate and the header
// tensorflow/lite/delegates/xnnpack/xnnpack_delegate.h (docs/devices.md).
func newXNNPACK(threads int) (delegates.Delegater, error) {
	d := xnnpack.New(xnnpack.DelegateOptions{NumThreads: int32(threads)})
	if d == nil {
		return nil, errors.New("xnnpack: TfLiteXNNPackDelegateCreate returned no delegate")
	}
	return d, nil
}
