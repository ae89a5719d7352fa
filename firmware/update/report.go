package update

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/whiskercam/whisker/firmware/attest"
)

// A device enrolled for signed reports keeps its key in <dir>/device.key
// (`whisker keys gen --device`). Every step of an update then stores a
// report signed by it in the state (State.Report): switched, committed,
// rolled back, failed. The agent publishes the last one; a rollout believes
// a device only from it.

// ErrNoDeviceKey: the device has no report-signing key.
var ErrNoDeviceKey = errors.New("no device key is enrolled (whisker keys gen --device)")

// ErrNotCurrent: the device does not run that bundle, committed.
var ErrNotCurrent = errors.New("the device does not run that bundle, committed")

// DeviceKeyPath is where the device's report-signing key is kept.
func (l Layout) DeviceKeyPath() string { return filepath.Join(l.Dir, "device.key") }

// DevicePubPath is the public half, to enrol with the rollout.
func (l Layout) DevicePubPath() string { return filepath.Join(l.Dir, "device.pub") }

// Signer loads the device's key; ErrNoDeviceKey when there is none.
func (l Layout) Signer() (*attest.Signer, error) {
	s, err := attest.LoadSigner(l.DeviceKeyPath())
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNoDeviceKey
	}
	return s, err
}

// signReport signs a report of an update step, or returns nil when the
// device has no usable key (the step itself goes on: `whisker boot` says
// loudly when the key cannot be read).
func (l Layout) signReport(st *State, r attest.Report) *attest.Envelope {
	s, err := l.Signer()
	if err != nil {
		return nil
	}
	e, err := s.Sign(r)
	if err != nil {
		return nil
	}
	return e
}

// Report is the signed report of the last update step (nil when the
// device has no key or no update has happened).
func (l Layout) Report() (*attest.Envelope, error) {
	st, err := l.ReadState()
	if err != nil {
		return nil, err
	}
	return st.Report, nil
}

// AttestCurrent signs, in answer to request id, that the device runs the
// bundle sha, committed (for an update request of what it already runs).
// It is not stored.
func (l Layout) AttestCurrent(id, sha string) (*attest.Envelope, error) {
	st, err := l.ReadState()
	if err != nil {
		return nil, err
	}
	c := st.Committed
	if st.Pending != nil || c == "" || l.Current() != c || st.Slots[c].Bundle != sha {
		return nil, ErrNotCurrent
	}
	s, err := l.Signer()
	if err != nil {
		return nil, err
	}
	return s.Sign(attest.Report{RequestID: id, Event: attest.EventCurrent, Bundle: sha, Version: st.Slots[c].Version, Running: st.running(c)})
}

// AttestFailed signs that the update asked for by request id, of bundle
// sha, stopped before any switch, and stores it as the last report (for
// an update refused or failed while downloading, verifying or staging).
func (l Layout) AttestFailed(id, sha, reason string) (*attest.Envelope, error) {
	st, err := l.ReadState()
	if err != nil {
		return nil, err
	}
	s, err := l.Signer()
	if err != nil {
		return nil, err
	}
	e, err := s.Sign(attest.Report{RequestID: id, Event: attest.EventFailed, Bundle: sha, Running: st.running(l.Current()), Reason: reason})
	if err != nil {
		return nil, fmt.Errorf("sign the report: %w", err)
	}
	st.Report = e
	return e, l.WriteState(st)
}
