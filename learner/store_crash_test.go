package learner

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestMain lets the test binary double as a process that writes a burst of
// labels, for the test that kills it, and as the other child processes of
// the store's tests (storeChild).
func TestMain(m *testing.M) {
	if path := os.Getenv("WHISKER_TEST_STORE_BURST"); path != "" {
		os.Exit(runBurst(path))
	}
	if mode := os.Getenv("WHISKER_TEST_STORE_CHILD"); mode != "" {
		os.Exit(storeChild(mode, os.Getenv("WHISKER_TEST_STORE_PATH")))
	}
	os.Exit(m.Run())
}

const burstLabels = 1000

// burstSample is the i-th label of the burst.
func burstSample(i int) Sample {
	x := make([]float32, 1280)
	for j := range x {
		x[j] = float32(i) + float32(j)/1280
	}
	return Sample{Label: fmt.Sprintf("pet%d", i%7), Backbone: "bb@1", Source: "burst", RequestID: fmt.Sprintf("burst-%d", i),
		Features: x, JPEG: []byte{0xff, 0xd8, byte(i), byte(i >> 8)}}
}

// runBurst adds the burst's labels one by one, as the agent does, and
// acknowledges each on stdout once Add has returned (the point where the
// agent answers the request). Labels already stored come back as
// duplicates, as a redelivered request does.
func runBurst(path string) int {
	s, err := OpenStore(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	// kill -9 keeps the page cache: this test alone cannot see a store
	// that skips fsync. TestStoreCommitsFailWhenSyncsFail can; here the
	// writer at least refuses to run with syncing turned off.
	if err := syncedStore(s); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 3
	}
	for i := range burstLabels {
		id, dup, err := s.Add(burstSample(i))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Fprintf(os.Stdout, "ack %d %d %v\n", i, id, dup)
	}
	fmt.Fprintln(os.Stdout, "done")
	return 0
}

// selfCommand runs this test binary again, through the emulator the tests
// themselves run under, if any: WHISKER_TEST_EXEC holds the same command
// as go test's -exec (make cross-test sets both).
func selfCommand(args ...string) *exec.Cmd {
	if w := strings.Fields(os.Getenv("WHISKER_TEST_EXEC")); len(w) > 0 {
		return exec.Command(w[0], append(append(w[1:], os.Args[0]), args...)...)
	}
	return exec.Command(os.Args[0], args...)
}

// burst runs the writer until it has acknowledged killAfter labels (then
// kills it with SIGKILL) or until it is done (killAfter < 0). It returns
// the acknowledged label indices and their sample ids.
func burst(t *testing.T, path string, killAfter int) map[int]uint64 {
	t.Helper()
	cmd := selfCommand("-test.run=^$")
	cmd.Env = append(os.Environ(), "WHISKER_TEST_STORE_BURST="+path)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acked := map[int]uint64{}
	sc := bufio.NewScanner(out)
	killed := false
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 4 && f[0] == "ack" {
			i, _ := strconv.Atoi(f[1])
			id, _ := strconv.ParseUint(f[2], 10, 64)
			acked[i] = id
			if len(acked) == killAfter {
				if err := cmd.Process.Kill(); err != nil { // SIGKILL
					t.Fatal(err)
				}
				killed = true
				break
			}
		}
	}
	err = cmd.Wait()
	if killed {
		if err == nil || !strings.Contains(err.Error(), "killed") {
			t.Fatalf("writer was not killed: %v", err)
		}
	} else if err != nil {
		t.Fatalf("writer: %v", err)
	}
	return acked
}

// checkStore opens the store and checks that every acknowledged label is
// there, intact, under the id it was acknowledged with.
func checkStore(t *testing.T, path string, acked map[int]uint64) map[string]int {
	t.Helper()
	s, err := OpenStore(path)
	if err != nil {
		t.Fatalf("store does not open after kill -9: %v", err)
	}
	defer s.Close()
	byReq := map[string]int{}
	err = s.ForEach(true, func(smp Sample) error {
		byReq[smp.RequestID]++
		var i int
		if _, err := fmt.Sscanf(smp.RequestID, "burst-%d", &i); err != nil {
			return fmt.Errorf("unexpected request id %q", smp.RequestID)
		}
		want := burstSample(i)
		if smp.Label != want.Label || len(smp.Features) != 1280 || smp.Features[1279] != want.Features[1279] || string(smp.JPEG) != string(want.JPEG) {
			return fmt.Errorf("sample %d (request %s) differs from what was written", smp.ID, smp.RequestID)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("store is damaged after kill -9: %v", err)
	}
	for i, id := range acked {
		got, err := s.Get(id)
		if err != nil || got.RequestID != fmt.Sprintf("burst-%d", i) {
			t.Fatalf("acknowledged label %d (sample %d) lost: %v", i, id, err)
		}
	}
	return byReq
}

// TestStoreSurvivesKillDuringBurst kills a process writing a burst of 1,000
// labels at several points; each time, every label it acknowledged is
// still there and the store opens. The retried burst (as the broker
// redelivers unacknowledged requests) stores each label exactly once.
func TestStoreSurvivesKillDuringBurst(t *testing.T) {
	path := filepath.Join(t.TempDir(), "samples.db")
	start := time.Now()
	all := map[int]uint64{}
	for round, killAfter := range []int{137, 521, 940} {
		acked := burst(t, path, killAfter)
		for i, id := range acked {
			if prev, ok := all[i]; ok && prev != id {
				t.Fatalf("label %d was stored as sample %d, then acknowledged again as %d", i, prev, id)
			}
			all[i] = id
		}
		checkStore(t, path, all)
		t.Logf("round %d: killed after %d acknowledgements; all %d acknowledged labels intact", round+1, killAfter, len(all))
	}
	acked := burst(t, path, -1)
	if len(acked) != burstLabels {
		t.Fatalf("final run acknowledged %d labels", len(acked))
	}
	byReq := checkStore(t, path, acked)
	if len(byReq) != burstLabels {
		t.Fatalf("%d distinct labels stored, want %d", len(byReq), burstLabels)
	}
	for req, n := range byReq {
		if n != 1 {
			t.Fatalf("request %s stored %d times", req, n)
		}
	}
	t.Logf("%s", time.Since(start).Round(time.Millisecond))
}
