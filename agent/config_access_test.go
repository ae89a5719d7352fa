package agent

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
		{"mqtt:\n  password: a\n  password_file: /p\n", "mqtt.password_file"},
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

func TestSecretFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, mode)
		return p
	}
	good := write("pw", "s3cret\nignored\n", 0o600)
	cfg := Default()
	cfg.MQTT.PasswordFile = good
	got, err := cfg.Secrets()
	if err != nil || got.MQTT.Password != "s3cret" {
		t.Fatalf("password file: %q, %v", got.MQTT.Password, err)
	}
	// A systemd credential.
	t.Setenv("CREDENTIALS_DIRECTORY", dir)
	if pw, err := ReadSecret("k", "$CREDENTIALS_DIRECTORY/pw"); err != nil || pw != "s3cret" {
		t.Fatalf("credential: %q, %v", pw, err)
	}
	for _, tc := range []struct{ path, want string }{
		{write("open", "x\n", 0o644), "every user"},
		{write("empty", "\n", 0o600), "empty"},
		{write("big", strings.Repeat("x", 5000), 0o600), "regular file"},
		{dir, "regular file"},
		{filepath.Join(dir, "missing"), "no such file"},
	} {
		if _, err := ReadSecret("mqtt.password_file", tc.path); err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "mqtt.password_file") {
			t.Errorf("%s: %v, want an error naming the key and %q", tc.path, err, tc.want)
		}
	}
	t.Setenv("CREDENTIALS_DIRECTORY", "")
	if _, err := ReadSecret("k", "$CREDENTIALS_DIRECTORY/pw"); err == nil || !strings.Contains(err.Error(), "not set") {
		t.Errorf("credential without the directory: %v", err)
	}
	// Relative secret paths are taken relative to the configuration file;
	// credentials are not.
	y := filepath.Join(dir, "w.yaml")
	os.WriteFile(y, []byte("mqtt:\n  broker: tcp://x:1883\n  password_file: pw\n  embedded:\n    password_file: $CREDENTIALS_DIRECTORY/users\n"), 0o600)
	c, err := Load(y)
	if err != nil {
		t.Fatal(err)
	}
	if c.MQTT.PasswordFile != good || c.MQTT.Embedded.PasswordFile != "$CREDENTIALS_DIRECTORY/users" {
		t.Errorf("paths: %q %q", c.MQTT.PasswordFile, c.MQTT.Embedded.PasswordFile)
	}
}
