package learner

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/whiskercam/whisker/internal/atomicfile"
	"github.com/whiskercam/whisker/internal/testenv"
)

// storeChild is a child process of the store's tests, started by
// startChild: it does what mode says to the store at path and reports on
// stdout, one line at a time.
func storeChild(mode, path string) int {
	say := func(format string, a ...any) { fmt.Printf(format+"\n", a...) }
	result := func(err error) string {
		if err == nil {
			return "ok"
		}
		return "error: " + err.Error()
	}
	hold := func() int {
		for {
			time.Sleep(time.Hour) // until the test kills this process
		}
	}
	if mode == "diskfull" {
		return diskFullChild(path, say, result)
	}
	s, err := OpenStore(path)
	if err != nil {
		say("open: %v", err)
		return 2
	}
	switch mode {
	case "syncfail":
		_, _, err := s.Add(sample("a", "before", 1, 2))
		say("before: %s", result(err))
		if err := testenv.FailSyncs(); err != nil {
			say("seccomp: %v", err)
			return 4
		}
		_, _, err = s.Add(sample("a", "after", 1, 2))
		say("add: %s", result(err))
		say("begin: %s", result(s.BeginRisky("r", "decode")))
		say("compact: %s", result(s.Compact()))
		say("atomicfile: %s", result(atomicfile.Write(path+".settings", []byte("x"), 0o600)))
		// The control: the same write with syncing off goes through.
		s.db.NoSync = true
		_, _, err = s.Add(sample("a", "nosync", 1, 2))
		say("nosync add: %s", result(err))
		return 0
	case "risky-hold":
		say("begin: %s", result(s.BeginRisky("req-hold", "decoding an image")))
		return hold()
	case "risky-end-hold":
		err := s.BeginRisky("req-done", "decoding an image")
		if err == nil {
			err = s.EndRisky("req-done")
		}
		say("ended: %s", result(err))
		return hold()
	case "poison":
		err := s.BeginRisky("req-poison", "decoding an image")
		if errors.Is(err, ErrInterrupted) {
			say("refused: %v", err)
			return 0
		}
		say("processing: %s", result(err))
		// What the kernel's OOM killer does to a process that decodes a
		// 30000x30000 image.
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		return hold()
	case "compactloop":
		for i := 1; ; i++ {
			if err := s.Compact(); err != nil {
				say("compact: %v", err)
				return 1
			}
			say("compacted %d", i)
		}
	}
	say("unknown mode %q", mode)
	return 2
}

// child is a running child process.
type child struct {
	cmd   *exec.Cmd
	lines chan string
	done  chan error
}

// startChild runs this test binary as storeChild(mode, path), through the
// emulator the tests run under, if any.
func startChild(t *testing.T, mode, path string, attr *syscall.SysProcAttr) (*child, error) {
	t.Helper()
	cmd := selfCommand("-test.run=^$")
	cmd.Env = append(os.Environ(), "WHISKER_TEST_STORE_CHILD="+mode, "WHISKER_TEST_STORE_PATH="+path)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = attr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &child{cmd: cmd, lines: make(chan string, 100), done: make(chan error, 1)}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
		close(c.lines)
		c.done <- cmd.Wait()
	}()
	t.Cleanup(func() { cmd.Process.Kill() })
	return c, nil
}

// line returns the child's next line, failing the test if it ends first
// or says nothing for a minute.
func (c *child) line(t *testing.T) string {
	t.Helper()
	select {
	case l, ok := <-c.lines:
		if !ok {
			t.Fatalf("child ended: %v", <-c.done)
		}
		return l
	case <-time.After(time.Minute):
		t.Fatal("child said nothing for a minute")
	}
	return ""
}

// kill sends SIGKILL and waits for the child to end.
func (c *child) kill(t *testing.T) {
	t.Helper()
	if err := c.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	for range c.lines {
	}
	if err := <-c.done; err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("child was not killed: %v", err)
	}
}

// rest returns the child's remaining lines and its exit error.
func (c *child) rest() ([]string, error) {
	var out []string
	for l := range c.lines {
		out = append(out, l)
	}
	return out, <-c.done
}
