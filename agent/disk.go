package agent

import (
	"context"
	"sync"
	"time"

	"github.com/whiskercam/whisker/agent/protocol"
	"github.com/whiskercam/whisker/learner"
)

// The sample store's disk is never silently full: its health is on
// /healthz, in the status (republished when it changes) and in every
// answer while it is in trouble. Shared samples that could not be stored
// for lack of room are not acknowledged, and the household topic is let go
// of until there is room again, so that such samples neither pile up in
// the broker's in-flight window (where they would hold back labels and
// commands) nor get lost: the broker delivers them again at the next
// connection.

// diskCheckEvery is how often the disk's health is looked at.
const diskCheckEvery = 30 * time.Second

type diskWatch struct {
	mu     sync.Mutex
	ok     bool // as last published
	seen   bool
	paused bool // the household topic is let go of
}

func healthOf(st learner.DiskStatus) *protocol.DiskHealth {
	return &protocol.DiskHealth{OK: st.OK, Problem: st.Problem, FreeBytes: st.FreeBytes, ReserveBytes: st.ReserveBytes,
		StoreBytes: st.FileBytes, SampleBytes: st.DataBytes, MaxSampleBytes: st.MaxBytes, Samples: st.Samples,
		LastWriteError: st.LastWriteError}
}

// diskHealth is the store's disk health now.
func (a *Agent) diskHealth() *protocol.DiskHealth { return healthOf(a.store.DiskStatus()) }

// diskTrouble is the disk health when it is in trouble, else nil: what
// answers carry.
func (a *Agent) diskTrouble() *protocol.DiskHealth {
	if h := a.diskHealth(); !h.OK {
		return h
	}
	return nil
}

// diskChanged looks at the disk's health after a write, a refusal or a
// forget: the status is republished when the health changed, and the
// household topic taken up again once there is room.
func (a *Agent) diskChanged() {
	st := a.store.DiskStatus()
	a.disk.mu.Lock()
	changed := !a.disk.seen || a.disk.ok != st.OK
	a.disk.ok, a.disk.seen = st.OK, true
	resume := a.disk.paused && st.OK
	if resume {
		a.disk.paused = false
	}
	a.disk.mu.Unlock()
	if changed {
		if st.OK {
			a.log.Info("sample store has room again", "free_bytes", st.FreeBytes, "sample_bytes", st.DataBytes)
		} else {
			a.log.Error("sample store in trouble: labels may be refused", "problem", st.Problem)
		}
		a.publishStatusAsync()
	}
	if b := a.bus.Load(); resume && b != nil {
		a.log.Info("taking shared samples again")
		b.Resume(protocol.SharedTopic(a.cfg.MQTT.TopicPrefix, a.cfg.Fleet.Household))
	}
}

// pauseHousehold lets go of the household topic after a shared sample
// could not be stored for lack of room.
func (a *Agent) pauseHousehold() {
	a.disk.mu.Lock()
	already := a.disk.paused
	a.disk.paused = true
	a.disk.mu.Unlock()
	if b := a.bus.Load(); !already && b != nil {
		a.log.Warn("no room for shared samples: not taking them until there is (those not stored stay with the broker)")
		b.Pause(protocol.SharedTopic(a.cfg.MQTT.TopicPrefix, a.cfg.Fleet.Household))
	}
	a.diskChanged()
}

// watchDisk looks at the disk's health every diskCheckEvery until ctx
// ends: the free space changes without the agent writing.
func (a *Agent) watchDisk(ctx context.Context) error {
	t := time.NewTicker(diskCheckEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			a.diskChanged()
		}
	}
}
