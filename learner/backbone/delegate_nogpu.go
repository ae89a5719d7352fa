//go:build !tflite_gpu

package backbone

import (
	"fmt"

	"github.com/tphakala/go-tflite/delegates"
)

// gpuBuilt says whether this binary has the delegate.
const gpuBuilt = false

func newGPU() (delegates.Delegater, error) {
	return nil, fmt.Errorf("gpu: %w (build with -tags tflite_gpu against libtensorflowlite_gpu_delegate; see docs/devices.md)", ErrDelegateNotBuilt)
}
