package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/whiskercam/whisker/agent/broker"
	"github.com/whiskercam/whisker/internal/testenv"
)

func TestMQTTPasswdAndACL(t *testing.T) {
	cmd := mqttCmd()
	cmd.SetIn(strings.NewReader("horse battery\n"))
	line := execute(t, cmd, "passwd", "--iterations", "2000", "homeassistant")
	name, hash, ok := strings.Cut(strings.TrimSpace(line), ":")
	if !ok || name != "homeassistant" {
		t.Fatalf("passwd printed %q", line)
	}
	if good, err := broker.CheckPassword(hash, "horse battery"); err != nil || !good {
		t.Fatalf("hash %q does not check: %v", hash, err)
	}
	if bad, _ := broker.CheckPassword(hash, "horse"); bad {
		t.Fatal("another password checks")
	}
	// The ACL of the example users is the one examples/mosquitto ships.
	empty := filepath.Join(t.TempDir(), "w.yaml")
	os.WriteFile(empty, nil, 0o600)
	acl := execute(t, mqttCmd(), "acl", "--config", empty, "--household", "home",
		"--camera", "porch", "--camera", "garden", "--operator", "me", "--viewer", "homeassistant")
	shipped, err := os.ReadFile(filepath.Join(testenv.Root(t), "examples/mosquitto/whisker.acl"))
	if err != nil {
		t.Fatal(err)
	}
	if acl != string(shipped) {
		t.Errorf("whisker mqtt acl printed\n%s\nexamples/mosquitto/whisker.acl has\n%s", acl, shipped)
	}
}
