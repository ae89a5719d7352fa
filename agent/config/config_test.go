package config

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestDefaultConfigIsValid(t *testing.T) {
	cfg := Default()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestLoadOverridesDefaultsAndResolvesPaths(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "w.yaml")
	os.WriteFile(path, []byte("device: porch\ncamera:\n  source: video.avi\n  max_fps: 5\nlearner:\n  retrain_delay: 1s\n"+
		"update:\n  trusted_keys: [keys/fleet.pub]\n  local_dir: bundles\n"), 0o600)
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Device != "porch" || cfg.Camera.MaxFPS != 5 || cfg.Learner.RetrainDelay != time.Second {
		t.Errorf("overrides not applied: %+v", cfg)
	}
	if cfg.Camera.Source != filepath.Join(dir, "video.avi") {
		t.Errorf("source %q not resolved against the file's directory", cfg.Camera.Source)
	}
	if cfg.Update.LocalDir != filepath.Join(dir, "bundles") || cfg.Update.TrustedKeys[0] != filepath.Join(dir, "keys", "fleet.pub") {
		t.Errorf("update paths not resolved against the file's directory: %q %q", cfg.Update.LocalDir, cfg.Update.TrustedKeys)
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("loaded configuration: %v", err)
	}
	if cfg.MQTT.TopicPrefix != "whisker" || cfg.Learner.Threshold != 0 || cfg.Learner.AnnounceAgree != 3 {
		t.Errorf("defaults lost: %+v", cfg)
	}
}

func TestConfigErrorsNameTheKey(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"devise: x\n", "field devise not found"},
		{"camera:\n  fps: 3\n", "field fps not found"},
		{"device: a/b\n", "device"},
		{"camera:\n  max_fps: -1\n", "camera.max_fps: -1"},
		{"mqtt:\n  broker: localhost:1883\n", "mqtt.broker"},
		{"mqtt:\n  topic_prefix: a/#\n", "mqtt.topic_prefix"},
		{"learner:\n  threshold: 1.5\n", "learner.threshold: 1.5"},
		{"log:\n  level: loud\n", "log.level"},
		{"learner:\n  retrain_delay: soon\n", "retrain_delay"},
		{"update:\n  local_dir: bundles\n", `update.local_dir: "bundles" must be an absolute path`},
		{"update:\n  allow_hosts: [\"http://cdn.example\"]\n", `update.allow_hosts: "http://cdn.example"`},
		{"update:\n  idle_timeout: 0s\n", "update.idle_timeout: 0s must be above 0"},
		{"update:\n  download_timeout: -1s\n", "update.download_timeout: -1s"},
		{"update:\n  idle_timeout: 1h\n", "update.idle_timeout: 1h0m0s is longer than update.download_timeout"},
		{"update:\n  retries: 11\n", "update.retries: 11"},
		{"http:\n  listen: 0.0.0.0:9808\n", "web.users"},
		{"http:\n  listen: 192.168.1.20:9808\nweb:\n  users: [{name: ann, password_hash: secret}]\n", "web.users[0].password_hash"},
		{"http:\n  tls:\n    cert_file: web.pem\n", "http.tls.cert_file"},
		{"web:\n  stranger_label: cat\n", "web.stranger_label"},
		{"inbox:\n  max_count: 0\n", "inbox.max_count"},
	} {
		cfg := Default()
		err := Decode([]byte(tc.yaml), &cfg)
		if err == nil {
			err = cfg.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want an error naming %q", tc.yaml, err, tc.want)
		}
	}
}

// The defaults print as YAML that reads back to the same configuration.
func TestDefaultsYAMLRoundTrips(t *testing.T) {
	out, err := Default().YAML()
	if err != nil {
		t.Fatal(err)
	}
	var cfg Config
	if err := Decode(out, &cfg); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if fmt.Sprint(cfg) != fmt.Sprint(Default()) {
		t.Fatalf("round trip differs:\n%s", out)
	}
	if !strings.Contains(string(out), "retrain_delay: 300ms") {
		t.Errorf("durations not written as durations:\n%s", out)
	}
}

func TestBackboneThreadsLeavesACore(t *testing.T) {
	c := Default()
	if got, want := c.BackboneThreads(), max(1, runtime.NumCPU()-1); got != want {
		t.Errorf("threads 0 on %d cores: %d backbone threads, want %d", runtime.NumCPU(), got, want)
	}
	c.Threads = 3
	if got := c.BackboneThreads(); got != 3 {
		t.Errorf("threads 3: %d backbone threads", got)
	}
}

func TestConfigurationURL(t *testing.T) {
	host, _ := os.Hostname()
	for _, c := range []struct{ listen, override, want string }{
		{"127.0.0.1:9808", "", "http://127.0.0.1:9808/"},
		{"192.168.1.20:8080", "", "http://192.168.1.20:8080/"},
		{"[::1]:9808", "", "http://[::1]:9808/"},
		{"0.0.0.0:9808", "", "http://" + host + ":9808/"},
		{":9808", "", "http://" + host + ":9808/"},
		{"", "", ""},
		{"127.0.0.1:0", "", ""},
		{"127.0.0.1:9808", "https://cat.example/whisker", "https://cat.example/whisker"},
	} {
		cfg := Default()
		cfg.HTTP.Listen, cfg.HomeAssistant.ConfigurationURL = c.listen, c.override
		if got := cfg.ConfigurationURL(); got != c.want {
			t.Errorf("listen %q override %q: %q, want %q", c.listen, c.override, got, c.want)
		}
	}
	cfg := Default()
	cfg.HomeAssistant.ConfigurationURL = "javascript:alert(1)"
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "homeassistant.configuration_url") {
		t.Errorf("validate: %v", err)
	}
	cfg = Default()
	cfg.HomeAssistant.SuggestedArea = "Garden\n"
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "homeassistant.suggested_area") {
		t.Errorf("validate: %v", err)
	}
}

func TestConfigDelegate(t *testing.T) {
	for _, tc := range []struct {
		yaml string
		ok   bool
	}{
		{"delegate: none", true},
		{"delegate: xnnpack", true},
		{"delegate: edgetpu", true},
		{"delegate: gpu", true},
		{"delegate: tpu", false},
		{"delegate: XNNPACK", false},
	} {
		cfg := Default()
		if err := Decode([]byte(tc.yaml), &cfg); err != nil {
			t.Fatalf("%s: %v", tc.yaml, err)
		}
		err := cfg.Validate()
		if (err == nil) != tc.ok {
			t.Errorf("%s: Validate() = %v, want ok %v", tc.yaml, err, tc.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "delegate:") {
			t.Errorf("%s: %v does not name the key", tc.yaml, err)
		}
	}
	if d := Default().Delegate; d != "none" {
		t.Errorf("default delegate %q, want none", d)
	}
}
