//go:build tflite_edgetpu

package backbone

import (
	"errors"
	"fmt"

	"github.com/tphakala/go-tflite/delegates"
	"github.com/tphakala/go-tflite/delegates/edgetpu"
)

// edgetpuBuilt says whether this binary has the delegate.
const edgetpuBuilt = true

// newEdgeTPU opens the first Coral Edge TPU (USB or PCIe). Building it
// needs libedgetpu and its header edgetpu_c.h (docs/devices.md). The
// delegate only takes the operators edgetpu_compiler put into the model;
// everything else stays on the CPU.
func newEdgeTPU() (delegates.Delegater, error) {
	devs, err := edgetpu.DeviceList()
	if err != nil {
		return nil, fmt.Errorf("edgetpu: list devices: %w", err)
	}
	if len(devs) == 0 {
		return nil, errors.New("edgetpu: no Edge TPU found (is the Coral plugged in, and may this user open it?)")
	}
	d := edgetpu.New(devs[0])
	if d == nil {
		return nil, fmt.Errorf("edgetpu: cannot open the Edge TPU at %q", devs[0].Path)
	}
	return d, nil
}
