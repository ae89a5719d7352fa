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
