package agent_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/whiskercam/whisker/agent"
	"github.com/whiskercam/whisker/learner/backbone"
)

// syncBuffer is a log sink the agent's goroutines may share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Asking for a delegate this binary was built without: the agent says so
// and runs the backbone on the CPU.
func TestAgentFallsBackToCPUAndSaysSo(t *testing.T) {
	var missing backbone.Delegate
	for _, d := range []backbone.Delegate{backbone.DelegateXNNPACK, backbone.DelegateEdgeTPU, backbone.DelegateGPU} {
		if !backbone.DelegateBuilt(d) {
			missing = d
			break
		}
	}
	if missing == "" {
		t.Skip("this binary is built with every delegate; there is none to fall back from")
	}
	cfg := testConfig(t, "tcp://127.0.0.1:1", "delegate")
	cfg.Delegate = string(missing)
	var logs syncBuffer
	a, err := agent.New(cfg, slog.New(slog.NewTextHandler(&logs, nil)), "test")
	if err != nil {
		t.Fatalf("agent with delegate %s: %v (want a CPU fallback)", missing, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // only New is under test; Run returns at once and closes everything
	if err := a.Run(ctx); err != nil {
		t.Fatal(err)
	}
	out := logs.String()
	t.Log(out)
	for _, want := range []string{
		"level=WARN msg=\"delegate unavailable, the backbone runs on the CPU\" delegate=" + string(missing),
		"not compiled into this binary",
		"agent ready",
		"delegate=none",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the log does not say %q", want)
		}
	}
}
