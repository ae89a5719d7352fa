//go:build !tflite_xnnpack

package backbone

import (
	"fmt"

	"github.com/tphakala/go-tflite/delegates"
)

// xnnpackBuilt says whether this binary has the delegate.
const xnnpackBuilt = false

func newXNNPACK(int) (delegates.Delegater, error) {
	return nil, fmt.Errorf("xnnpack: %w (build with -tags tflite_xnnpack against a TensorFlow Lite library that exports TfLiteXNNPackDelegateCreate; see docs/devices.md)", ErrDelegateNotBuilt)
}
