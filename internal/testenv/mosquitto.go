package testenv

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Mosquitto is a real mosquitto broker on a free loopback port, with its
// own configuration and persistence directory, for one test.
type Mosquitto struct {
	t    testing.TB
	bin  string
	dir  string
	conf string
	Port int

	mu  sync.Mutex
	cmd *exec.Cmd
	log *os.File
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// StartMosquitto starts a broker that persists sessions and queued
// messages across restarts. extra lines are appended to its configuration
// (listeners with TLS or passwords, say). It stops when the test ends.
func StartMosquitto(t testing.TB, extra ...string) *Mosquitto {
	t.Helper()
	return StartMosquittoListeners(t, func(port int, dir string) []string {
		return append([]string{fmt.Sprintf("listener %d 127.0.0.1", port), "allow_anonymous true"}, extra...)
	})
}

// StartMosquittoListeners starts a broker whose listener section is what
// listeners returns for the broker's port and working directory (for TLS
// and password set-ups); persistence and logging are added.
func StartMosquittoListeners(t testing.TB, listeners func(port int, dir string) []string) *Mosquitto {
	t.Helper()
	bin := Command(t, "mosquitto", "mosquitto")
	m := &Mosquitto{t: t, bin: bin, dir: t.TempDir(), Port: FreePort(t)}
	lines := []string{
		"persistence true",
		"persistence_location " + m.dir + "/",
		"autosave_interval 1",
		"log_dest file " + filepath.Join(m.dir, "mosquitto.log"),
		"log_type error",
		"log_type warning",
		"log_type notice",
	}
	if os.Getuid() == 0 {
		// As root mosquitto would switch to its own user, which cannot
		// write this test's directory.
		lines = append(lines, "user root")
	}
	lines = append(lines, listeners(m.Port, m.dir)...)
	m.conf = filepath.Join(m.dir, "mosquitto.conf")
	if err := os.WriteFile(m.conf, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	m.Start()
	t.Cleanup(m.Stop)
	return m
}

// URL is the broker's address for clients.
func (m *Mosquitto) URL() string { return fmt.Sprintf("tcp://127.0.0.1:%d", m.Port) }

// Dir is the broker's working directory (configuration, log, persistence).
func (m *Mosquitto) Dir() string { return m.dir }

// Start starts the broker (again) and waits until it accepts connections.
func (m *Mosquitto) Start() {
	m.t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd != nil {
		return
	}
	cmd := exec.Command(m.bin, "-c", m.conf)
	cmd.Dir = m.dir
	out, err := os.OpenFile(filepath.Join(m.dir, "stdout.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		m.t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		m.t.Fatalf("start mosquitto: %v", err)
	}
	m.cmd, m.log = cmd, out
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", m.Port), 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(m.dir, "mosquitto.log"))
			m.t.Fatalf("mosquitto did not start listening on %d: %v\n%s", m.Port, err, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop stops the broker (SIGTERM, so it saves its persistence file).
func (m *Mosquitto) Stop() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil {
		return
	}
	_ = m.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { m.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		m.cmd.Process.Kill()
		<-done
	}
	m.log.Close()
	m.cmd = nil
}

// Kill kills the broker with SIGKILL (no chance to save anything).
func (m *Mosquitto) Kill() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil {
		return
	}
	_ = m.cmd.Process.Kill()
	m.cmd.Wait()
	m.log.Close()
	m.cmd = nil
}
