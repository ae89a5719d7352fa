package agent_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/whiskercam/whisker/agent/protocol"
	"github.com/whiskercam/whisker/internal/testenv"
)

// TestCrashesLeaveTheAgentServing kills the agent (a child process) with
// SIGKILL in the middle of a burst of labels, with more queued for it in
// its persistent session than the broker's in-flight window (20), and
// checks, round after round, that the agent started again answers a
// command. Then a request that kills the agent in its risky step is
// answered, when delivered again, with the reason instead of being tried
// again.
func TestCrashesLeaveTheAgentServing(t *testing.T) {
	mosq := testenv.StartMosquitto(t)
	dir := t.TempDir()
	config := writeConfig(t, dir, mosq.URL(), filepath.Join(dir, "state"))
	logPath := filepath.Join(dir, "agent.log")
	cl := newClient(t, mosq.URL(), "whisker/crash/")
	showLog := func() string { b, _ := os.ReadFile(logPath); return string(b) }

	child := startChild(t, config, logPath)
	cl.waitStatus("online")
	for round := range 3 {
		label := func(i int) {
			cl.publish(protocol.TopicLabel, fmt.Appendf(nil, `{"request_id":"r%d-%d","sighting_id":"gone-%d","label":"Tigger"}`, round, i, i))
		}
		for i := range 30 {
			label(i)
		}
		// kill -9 once the agent is answering the burst.
		cl.resultFor(fmt.Sprintf("r%d-", round))
		if err := child.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		child.Wait()
		cl.waitStatus("offline")
		for i := 30; i < 90; i++ {
			label(i) // queued in the agent's session while it is down
		}
		child = startChild(t, config, logPath)
		cl.waitStatus("online")
		r := cl.requestJSON(protocol.TopicCmd, map[string]string{"request_id": fmt.Sprintf("after-%d", round), "cmd": "labels"})
		if !r.Ok {
			t.Fatalf("round %d: %+v\n%s", round, r, showLog())
		}
		t.Logf("round %d: the restarted agent answered", round)
	}

	// A request that takes the agent down while its image is decoded.
	img := photoBase64(t, "dog.jpg")
	cl.publish(protocol.TopicLabel, []byte(`{"request_id":"poison-1","label":"Misty","image":"`+img+`"}`))
	if err := child.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("the poisoned request did not take the agent down: %v\n%s", err, showLog())
	}
	cl.waitStatus("offline")
	startChild(t, config, logPath)
	cl.waitStatus("online")
	// Delivered again, it is answered with the reason, and not tried again.
	if r := cl.resultFor("poison-1"); r.Ok || !strings.Contains(r.Error, "stopped the agent while decoding and embedding the image") {
		t.Fatalf("the poisoned request delivered again: %+v\n%s", r, showLog())
	} else {
		t.Logf("answered: %s", r.Error)
	}
	r := cl.requestJSON(protocol.TopicCmd, map[string]string{"request_id": "after-poison", "cmd": "labels"})
	if !r.Ok || len(r.Labels) != 0 {
		t.Fatalf("after the poisoned request: %+v", r)
	}
	// The same image under a new request id is stored: the agent refuses
	// the request that stopped it, not the image.
	r = cl.requestJSON(protocol.TopicLabel, map[string]string{"request_id": "retry-1", "label": "Misty", "image": img})
	if !r.Ok {
		t.Fatalf("retry: %+v", r)
	}
}

// resultFor waits for the next answer to a request whose id starts with
// prefix.
func (cl *client) resultFor(prefix string) protocol.Result {
	cl.t.Helper()
	deadline := time.After(60 * time.Second)
	for {
		select {
		case r := <-cl.results:
			if strings.HasPrefix(r.RequestID, prefix) {
				return r
			}
		case <-deadline:
			cl.t.Fatalf("no answer to a request %s... within 60 s", prefix)
			return protocol.Result{}
		}
	}
}

// TestDiskFilledToTheLastByte runs the agent (a child process in a user
// and mount namespace of its own) with its state directory on a 2 MiB
// tmpfs, no disk reserve and no store limit, and labels until the disk is
// full: every label the agent acknowledged is kept, every one it could not
// keep is answered ok:false with the reason, and the agent says what is
// wrong and keeps answering.
func TestDiskFilledToTheLastByte(t *testing.T) {
	mosq := testenv.StartMosquitto(t)
	dir := t.TempDir()
	stateDir := filepath.Join(dir, "state")
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(dir, "whisker.yaml")
	yaml := fmt.Sprintf("device: fill\nstate_dir: %s\nbackbone: %s\ncamera:\n  source: %s\n  max_fps: 2\nmqtt:\n  broker: %s\n"+
		"learner:\n  retrain_delay: 50ms\n  disk_reserve_bytes: 0\n  max_store_bytes: 0\nhttp:\n  listen: \"\"\n",
		stateDir, testenv.BackboneManifest(t), testenv.DemoVideo(t), mosq.URL())
	if err := os.WriteFile(config, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "agent.log")
	cl := newClient(t, mosq.URL(), "whisker/fill/")
	uid, gid := os.Getuid(), os.Getgid()
	startChildWith(t, config, logPath, &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: uid, Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: gid, Size: 1}},
	}, "WHISKER_TEST_STATE_TMPFS=2m")
	showLog := func() string { b, _ := os.ReadFile(logPath); return string(b) }
	select {
	case <-cl.status:
	case <-time.After(60 * time.Second):
		t.Fatalf("the agent on a tmpfs did not come online (it needs unprivileged user namespaces):\n%s", showLog())
	}
	s := cl.nextSighting(60 * time.Second)
	acked, refused := 0, 0
	for i := 0; refused < 5; i++ {
		if i > 3000 {
			t.Fatalf("3000 labels and the 2 MiB disk is not full:\n%s", showLog())
		}
		r := cl.requestJSON(protocol.TopicLabel, map[string]string{"request_id": fmt.Sprintf("fill-%d", i), "sighting_id": s.ID, "label": fmt.Sprintf("Pet%d", i%3)})
		switch {
		case r.Ok:
			acked++
		case strings.Contains(r.Error, "not enough free disk space") || strings.Contains(r.Error, "size limit"):
			refused++
			if r.Disk == nil || r.Disk.OK {
				t.Errorf("a label refused for space does not say the disk is in trouble: %+v", r.Disk)
			}
		default:
			t.Fatalf("label %d: %+v\n%s", i, r, showLog())
		}
	}
	t.Logf("%d labels stored, then the disk was full", acked)
	r := cl.requestJSON(protocol.TopicCmd, map[string]string{"request_id": "fill-labels", "cmd": "labels"})
	total := 0
	for _, l := range r.Labels {
		total += l.Samples
	}
	if !r.Ok || total != acked || acked == 0 {
		t.Fatalf("after filling the disk: %d samples kept, %d acknowledged (%+v)\n%s", total, acked, r, showLog())
	}
	r = cl.requestJSON(protocol.TopicCmd, map[string]string{"request_id": "fill-stats", "cmd": "stats"})
	if !r.Ok || r.Stats.Disk == nil || r.Stats.Disk.OK || r.Stats.Disk.Problem == "" {
		t.Fatalf("stats on a full disk: %+v", r.Stats)
	}
	t.Logf("disk: %s", r.Stats.Disk.Problem)
}
