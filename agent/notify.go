package agent

import (
	"context"
	"fmt"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// notifySystemd tells systemd (Type=notify) that the agent is ready once
// the model is loaded (it is by now), the broker is connected and the
// camera delivered a frame, and then feeds the watchdog only while frames
// keep flowing, so that a stuck camera or inference loop gets the service
// restarted. Outside systemd it does nothing.
func (a *Agent) notifySystemd(ctx context.Context) error {
	if ok, _ := daemon.SdNotify(false, "STATUS=waiting for the broker and the first frame"); !ok {
		return nil // not started by systemd with NOTIFY_SOCKET
	}
	for {
		ready := a.connected() && !a.capture.Status().LastTime.IsZero()
		if ready {
			break
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(200 * time.Millisecond):
		}
	}
	daemon.SdNotify(false, daemon.SdNotifyReady)
	a.log.Info("told systemd the agent is ready")
	interval, err := daemon.SdWatchdogEnabled(false)
	if err != nil || interval <= 0 {
		<-ctx.Done()
		daemon.SdNotify(false, daemon.SdNotifyStopping)
		return nil
	}
	tick := time.NewTicker(interval / 3)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			daemon.SdNotify(false, daemon.SdNotifyStopping)
			return nil
		case <-tick.C:
			last := a.capture.Status().LastTime
			if age := time.Since(last); age < interval/2 {
				daemon.SdNotify(false, daemon.SdNotifyWatchdog)
				daemon.SdNotify(false, fmt.Sprintf("STATUS=%d sightings, broker %s", a.sightings.Load(), connState(a.connected())))
			} else {
				a.log.Warn("no frame recently; not feeding the systemd watchdog", "age", age.Round(time.Second))
			}
		}
	}
}

func connState(up bool) string {
	if up {
		return "connected"
	}
	return "disconnected"
}
