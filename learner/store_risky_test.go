package learner

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func TestRiskyMarks(t *testing.T) {
	s := openTemp(t)
	if in, err := s.InProgress("r1"); in != nil || err != nil {
		t.Fatalf("unmarked request: %+v %v", in, err)
	}
	if err := s.BeginRisky("r1", "decoding an image"); err != nil {
		t.Fatal(err)
	}
	in, err := s.InProgress("r1")
	if err != nil || in == nil || in.What != "decoding an image" || in.Attempts != 1 || time.Since(in.Since) > time.Minute {
		t.Fatalf("mark %+v %v", in, err)
	}
	// Begun again without an end: the process died during the step.
	err = s.BeginRisky("r1", "decoding an image")
	var intr *Interruption
	if !errors.Is(err, ErrInterrupted) || !errors.As(err, &intr) || intr.RequestID != "r1" || intr.What != "decoding an image" {
		t.Fatalf("second begin: %v", err)
	}
	if !strings.Contains(err.Error(), "not tried again") || !strings.Contains(err.Error(), "new request id") {
		t.Fatalf("reason %q does not tell the sender what to do", err)
	}
	if st := s.DiskStatus(); st.LastWriteError != "" {
		t.Fatalf("a refusal counted as a failed write: %+v", st)
	}
	// EndRisky, adding a sample with the request id, and ApplyOnce with
	// it each clear the mark.
	if err := s.EndRisky("r1"); err != nil {
		t.Fatal(err)
	}
	if in, _ := s.InProgress("r1"); in != nil {
		t.Fatalf("mark after end: %+v", in)
	}
	if err := s.BeginRisky("r2", "embedding"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Add(sample("Tigger", "r2", 1)); err != nil {
		t.Fatal(err)
	}
	if in, _ := s.InProgress("r2"); in != nil {
		t.Fatalf("mark after the sample was stored: %+v", in)
	}
	if err := s.BeginRisky("r3", "forgetting"); err != nil {
		t.Fatal(err)
	}
	_, err = s.ApplyOnce("r3", func(tx *Tx) (any, error) { return tx.Relabel("Tigger", "") }, func(v any) ([]byte, error) { return json.Marshal(v) })
	if err != nil {
		t.Fatal(err)
	}
	if in, _ := s.InProgress("r3"); in != nil {
		t.Fatalf("mark after ApplyOnce: %+v", in)
	}
	if err := s.BeginRisky("", "x"); err == nil {
		t.Fatal("empty request id marked")
	}
}

func TestRiskyAttempts(t *testing.T) {
	s := openWith(t, StoreOptions{RiskyAttempts: 2})
	for i := range 2 {
		if err := s.BeginRisky("r", "decoding"); err != nil {
			t.Fatalf("attempt %d of 2: %v", i+1, err)
		}
	}
	err := s.BeginRisky("r", "decoding")
	var intr *Interruption
	if !errors.As(err, &intr) || intr.Attempts != 2 {
		t.Fatalf("third attempt: %v", err)
	}
}

func TestPruneAnswersPrunesOldMarks(t *testing.T) {
	s := openTemp(t)
	if err := s.BeginRisky("new", "decoding"); err != nil {
		t.Fatal(err)
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketRisky).Put([]byte("old"), encodeRisky(time.Now().Add(-requestLogTTL-time.Hour), 1, "decoding"))
	})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := s.PruneAnswers(); err != nil || n != 1 {
		t.Fatalf("pruned %d, %v", n, err)
	}
	if in, _ := s.InProgress("old"); in != nil {
		t.Fatal("old mark kept")
	}
	if in, _ := s.InProgress("new"); in == nil {
		t.Fatal("new mark pruned")
	}
}

// A process marks a request and is killed with SIGKILL during its risky
// step: the mark is there after the kill. One that ended its step leaves
// no mark.
func TestRiskyMarkSurvivesKill(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	c, err := startChild(t, "risky-hold", path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if l := c.line(t); l != "begin: ok" {
		t.Fatalf("child: %s", l)
	}
	c.kill(t)
	c, err = startChild(t, "risky-end-hold", path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if l := c.line(t); l != "ended: ok" {
		t.Fatalf("child: %s", l)
	}
	c.kill(t)
	s, err := OpenStore(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	err = s.BeginRisky("req-hold", "decoding an image")
	var intr *Interruption
	if !errors.As(err, &intr) || intr.What != "decoding an image" {
		t.Fatalf("request killed during its step: %v", err)
	}
	if err := s.BeginRisky("req-done", "decoding an image"); err != nil {
		t.Fatalf("request that ended its step: %v", err)
	}
}

// A message that gets the process killed during its risky step (as the
// OOM killer does) takes it down once; when it is delivered again at every
// restart, it is refused with the reason.
func TestPoisonMessageCrashesOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	for start := 1; start <= 4; start++ {
		c, err := startChild(t, "poison", path, nil)
		if err != nil {
			t.Fatal(err)
		}
		lines, err := c.rest()
		out := strings.Join(lines, "\n")
		switch {
		case start == 1:
			if err == nil || !strings.Contains(err.Error(), "killed") || out != "processing: ok" {
				t.Fatalf("first start: %v\n%s", err, out)
			}
		case err != nil || !strings.HasPrefix(out, "refused: request req-poison stopped the agent while decoding an image"):
			t.Fatalf("start %d: %v\n%s", start, err, out)
		}
	}
}
