//go:build !tflite_edgetpu

package backbone

import (
	"fmt"

	"github.com/tphakala/go-tflite/delegates"
)

// edgetpuBuilt says whether this binary has the delegate.
const edgetpuBuilt = false

func newEdgeTPU() (delegates.Delegater, error) {
	return nil, fmt.Errorf("edgetpu: %w (build with -tags tflite_edgetpu with libedgetpu installed; see docs/devices.md)", ErrDelegateNotBuilt)
}
