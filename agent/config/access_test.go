package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/whiskercam/whisker/agent/broker"
)

func TestAccessConfigErrorsNameTheKey(t *testing.T) {
	h, err := broker.HashPassword("pw", 10)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ yaml, want string }{
		{"mqtt:\n  embedded_listen: 0.0.0.0:1883\n", "mqtt.embedded_listen: \"0.0.0.0:1883\" listens beyond loopback"},
		{"mqtt:\n  embedded_listen: \":1883\"\n", "listens beyond loopback"},
		{"mqtt:\n  embedded:\n    anonymous: camera\n", "mqtt.embedded.anonymous"},
		{"mqtt:\n  embedded:\n    users:\n      - {name: ha, role: root, password_hash: '" + h + "'}\n", "mqtt.embedded.users[0].role"},
		{"mqtt:\n  embedded:\n    users:\n      - {name: ha, role: viewer}\n", "mqtt.embedded.users[0].password_hash"},
		{"mqtt:\n  embedded:\n    users:\n      - {name: ha, role: viewer, password_hash: plain}\n", "(hidden)"},
		{"images:\n  max_pixels: 100000000\n", "images.max_pixels: 100000000"},
		{"images:\n  max_bytes: 10\n", "images.max_bytes: 10"},
		{"learner:\n  max_samples_per_label: -1\n", "learner.max_samples_per_label"},
		{"learner:\n  max_store_bytes: 1000\n", "learner.max_store_bytes: 1000"},
		{"learner:\n  max_sample_jpeg_bytes: 0\n", "learner.max_sample_jpeg_bytes"},
		{"learner:\n  disk_reserve_bytes: -5\n", "learner.disk_reserve_bytes"},
		{"fleet:\n  household: home\n", "fleet.household_keys"},
		{"fleet:\n  max_samples_per_camera: -1\n", "fleet.max_samples_per_camera"},
		{"device: household\n", "reserved"},
	} {
		cfg := Default()
		err := Decode([]byte(tc.yaml), &cfg)
		if err == nil {
			err = cfg.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want an error naming %q", tc.yaml, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), h) {
			t.Errorf("%q: the error shows a password hash: %v", tc.yaml, err)
		}
	}
	// Beyond loopback with users, and with an external broker, is fine.
	for _, y := range []string{
		"mqtt:\n  embedded_listen: 0.0.0.0:1883\n  embedded:\n    users:\n      - {name: ha, role: viewer, password_hash: '" + h + "'}\n",
		"mqtt:\n  broker: tcp://mqtt.lan:1883\n  embedded_listen: 0.0.0.0:1883\n",
	} {
		cfg := Default()
		if err := Decode([]byte(y), &cfg); err != nil {
			t.Fatal(err)
		}
		if err := cfg.Validate(); err != nil {
			t.Errorf("%q: %v", y, err)
		}
	}
}

func TestPasswordFromFileOrCredential(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// The file, relative to the configuration.
	write("pw", "s3cret\n")
	y := write("w.yaml", "mqtt:\n  broker: tcp://x:1883\n  password_file: pw\n")
	c, err := Load(y)
	if err != nil || c.MQTT.Password != "s3cret" {
		t.Fatalf("password file: %q, %v", c.MQTT.Password, err)
	}
	// A systemd credential, when no password is configured.
	creds := filepath.Join(dir, "creds")
	os.Mkdir(creds, 0o700)
	os.WriteFile(filepath.Join(creds, "mqtt.password"), []byte("from-systemd\r\n"), 0o400)
	cfg := Default()
	if err := ResolveSecrets(&cfg, creds); err != nil || cfg.MQTT.Password != "from-systemd" {
		t.Fatalf("credential: %q, %v", cfg.MQTT.Password, err)
	}
	for _, tc := range []struct{ file, want string }{
		{write("empty", "\n"), "empty"},
		{write("big", strings.Repeat("x", 70<<10)), "larger"},
		{write("nul", "a\x00b"), "null"},
		{dir, "regular file"},
		{filepath.Join(dir, "missing"), "no such file"},
	} {
		cfg := Default()
		cfg.MQTT.PasswordFile = tc.file
		if err := ResolveSecrets(&cfg, ""); err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "mqtt.password_file") {
			t.Errorf("%s: %v, want an error naming the key and %q", tc.file, err, tc.want)
		}
	}
	cfg = Default()
	cfg.MQTT.Password, cfg.MQTT.PasswordFile = "a", write("pw2", "b")
	if err := ResolveSecrets(&cfg, ""); err == nil {
		t.Error("a password and a password file both accepted")
	}
}
