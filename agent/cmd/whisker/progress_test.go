package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

// Away from a terminal (a log, CI), progress is plain lines: one at each
// tenth and one at the end, with no carriage return or escape sequence.
func TestProgressIsPlainAwayFromATerminal(t *testing.T) {
	var out bytes.Buffer
	p := newProgress(&out, 40, "embedding")
	if p.bar != nil {
		t.Fatal("a bar for a buffer")
	}
	for range 40 {
		p.Add(1)
	}
	p.Finish()
	p.Finish()
	text := out.String()
	if strings.ContainsAny(text, "\r\x1b") {
		t.Errorf("control characters in %q", text)
	}
	lines := strings.Split(strings.TrimSpace(text), "\n")
	if len(lines) != 10 {
		t.Errorf("%d lines, want 9 tenths and the end:\n%s", len(lines), text)
	}
	if !strings.HasPrefix(lines[0], "embedding: 4 of 40 (10%)") || !strings.HasPrefix(lines[9], "embedding: 40 of 40, done in") {
		t.Errorf("lines:\n%s", text)
	}
	// A file that is not a terminal is plain too.
	f, err := os.CreateTemp(t.TempDir(), "log")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if isTerminal(f) || newProgress(f, 3, "x").bar != nil {
		t.Error("a regular file is taken for a terminal")
	}
}

func TestBenchPipelineCountsItsSteps(t *testing.T) {
	if n := benchSteps(benchOptions{rounds: 4}); n != 3*4+2+4 {
		t.Errorf("%d steps with the CPU runs", n)
	}
	if n := benchSteps(benchOptions{rounds: 1, skipCPU: true}); n != 3+2 {
		t.Errorf("%d steps without the CPU runs", n)
	}
}

func TestVersionFlagAndEnvironment(t *testing.T) {
	flag, _, err := whisker(t, []string{"WHISKER_TEST_VERSION=1.2.3"}, "--version")
	if err != nil {
		t.Fatal(err)
	}
	cmd, _, err := whisker(t, []string{"WHISKER_TEST_VERSION=1.2.3"}, "version")
	if err != nil {
		t.Fatal(err)
	}
	if flag != cmd || !strings.HasPrefix(flag, "whisker 1.2.3 (TensorFlow Lite ") {
		t.Errorf("--version %q, version %q", flag, cmd)
	}
	env, _, err := whisker(t, nil, "config", "env")
	if err != nil || !strings.Contains(env, "WHISKER_CAMERA_DETECT_MIN_SCORE") || !strings.Contains(env, "camera.detect.min_score") {
		t.Errorf("config env: %v\n%s", err, env)
	}
	conf := t.TempDir() + "/w.yaml"
	os.WriteFile(conf, []byte("device: porch\n"), 0o600)
	_, stderr, err := whisker(t, []string{"WHISKER_CAMERA_MAX_FPS=fast"}, "config", "check", conf)
	if err == nil || !strings.Contains(stderr, "WHISKER_CAMERA_MAX_FPS (camera.max_fps)") {
		t.Errorf("a bad variable: %v %s", err, stderr)
	}
}
