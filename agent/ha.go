package agent

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/whiskercam/whisker/agent/homeassistant"
	"github.com/whiskercam/whisker/agent/protocol"
	"github.com/whiskercam/whisker/learner"
)

// What the agent tells Home Assistant about itself, and how Home
// Assistant's commands become the agent's own (agent/homeassistant holds
// the discovery, the entities and the checks of its payloads).

// haState is the device's state for Home Assistant.
func (a *Agent) haState() homeassistant.DeviceState {
	st := homeassistant.DeviceState{Recognition: homeassistant.PayloadOn, Threshold: a.threshold(), Camera: a.capture.Status().State}
	if a.pipe.Paused() {
		st.Recognition = homeassistant.PayloadOff
	}
	if counts, err := a.store.Counts(a.identity); err == nil {
		for _, c := range counts {
			st.Samples += c.Samples
		}
	}
	if acc, ok := headAccuracy(a.trainer.Head()); ok {
		pct := math.Round(acc*1000) / 10
		st.Accuracy = &pct
	}
	return st
}

// headAccuracy is a head's cross-validated accuracy (0 to 1): the
// out-of-fold accuracy of its calibration, else that of the capacity
// choice for its kind; false when it was not measured.
func headAccuracy(h *learner.Head) (float64, bool) {
	switch {
	case h == nil:
		return 0, false
	case h.Calibration != nil && h.Calibration.Samples > 0:
		return h.Calibration.Accuracy, true
	case h.Capacity != nil && h.Capacity.Kind == h.Kind && h.Capacity.Folds > 0:
		if h.Kind == learner.KindHidden {
			return h.Capacity.HiddenAcc, true
		}
		return h.Capacity.LinearAcc, true
	}
	return 0, false
}

// haFirmware is the firmware update entity's state: the version running,
// and while an update is under way, the version it installs and how far
// it got.
func (a *Agent) haFirmware() homeassistant.FirmwareState {
	fw := a.ota.Firmware()
	st := homeassistant.FirmwareState{InstalledVersion: fw.Version, LatestVersion: fw.Version}
	u := a.ota.Status()
	if u == nil {
		return st
	}
	switch u.State {
	case "downloading", "verifying", "re-embedding", "switching":
		st.InProgress = true
		if u.Version != "" {
			st.LatestVersion = u.Version
		}
		if u.Progress > 0 {
			pct := math.Round(u.Progress*1000) / 10
			st.UpdatePercentage = &pct
		}
	case "failed", "rolled_back":
		summary := fmt.Sprintf("The last update %s", strings.ReplaceAll(u.State, "_", " "))
		if u.Error != "" {
			summary += ": " + u.Error
		}
		if len(summary) > 255 {
			summary = summary[:252] + "..."
		}
		st.ReleaseSummary = summary
	}
	return st
}

// handleHA carries out a command from Home Assistant's button, number or
// switch as the agent's own command, under a request id of its own.
func (a *Agent) handleHA(ctx context.Context, topic string, payload []byte) protocol.Result {
	id := fmt.Sprintf("ha-%s-%d", strings.TrimPrefix(topic, "ha/"), time.Now().UnixNano())
	c, err := homeassistant.ParseCommand(topic, payload)
	if err != nil {
		return protocol.Result{RequestID: id, Error: err.Error()}
	}
	a.log.Info("command from Home Assistant", "topic", topic, "cmd", c.Cmd, "request_id", id)
	return a.runCmd(ctx, &protocol.CmdRequest{RequestID: id, Cmd: c.Cmd, Value: c.Value})
}

// isHACommand says whether an inbound topic name is a Home Assistant
// command.
func isHACommand(topic string) bool {
	for _, t := range homeassistant.CommandTopics {
		if topic == t {
			return true
		}
	}
	return false
}
