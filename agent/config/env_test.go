package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestEveryKeyHasOneVariable(t *testing.T) {
	keys := envKeys()
	paths := map[string]string{}
	for v, k := range keys {
		if other, dup := paths[k.path]; dup {
			t.Errorf("%s and %s both set %s", v, other, k.path)
		}
		paths[k.path] = v
		if v != EnvVar(k.path) {
			t.Errorf("%s is not the variable of %s", v, k.path)
		}
	}
	// Every key `whisker config defaults` prints has a variable: walk the
	// YAML of the defaults.
	out, err := Default().YAML()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	var stack []string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		depth := (len(line) - len(strings.TrimLeft(line, " "))) / 4
		key, value, _ := strings.Cut(strings.TrimSpace(line), ":")
		stack = append(stack[:min(depth, len(stack))], key)
		if strings.TrimSpace(value) == "" {
			continue // a section
		}
		n++
		if _, ok := paths[strings.Join(stack, ".")]; !ok {
			t.Errorf("key %s has no variable", strings.Join(stack, "."))
		}
	}
	if n != len(keys) || n < 60 {
		t.Errorf("%d keys in the defaults, %d variables", n, len(keys))
	}
	// Every key's type can be read from a variable.
	scratch := reflect.ValueOf(&Config{}).Elem()
	for v, k := range keys {
		f := scratch.FieldByIndex(k.index)
		value := map[reflect.Kind]string{reflect.Bool: "true", reflect.String: "x", reflect.Slice: "x,y"}[f.Kind()]
		switch {
		case f.Kind() == reflect.Slice && f.Type().Elem().Kind() != reflect.String:
			value = "[]"
		case f.Type() == durationType:
			value = "1s"
		case value == "":
			value = "1"
		}
		if err := setFromEnv(f, value); err != nil {
			t.Errorf("%s: %v", v, err)
		}
	}
	for _, want := range []string{"WHISKER_MQTT_BROKER", "WHISKER_CAMERA_DETECT_MIN_SCORE", "WHISKER_MQTT_PASSWORD_FILE",
		"WHISKER_HOMEASSISTANT_SUGGESTED_AREA", "WHISKER_LEARNER_NO_PET_LABELS", "WHISKER_STATE_DIR"} {
		if _, ok := keys[want]; !ok {
			t.Errorf("no %s", want)
		}
	}
}

func TestApplyEnvSetsEveryKind(t *testing.T) {
	cfg := Default()
	err := ApplyEnv(&cfg, []string{
		"WHISKER_MQTT_BROKER=tcp://ha.local:1883",
		"WHISKER_CAMERA_DETECT_MIN_SCORE=0.35",
		"WHISKER_CAMERA_MAX_FPS=5",
		"WHISKER_THREADS=3",
		"WHISKER_LEARNER_RETRAIN_DELAY=1s",
		"WHISKER_LEARNER_BALANCED=false",
		"WHISKER_LEARNER_NO_PET_LABELS=neither, nobody ,stranger,",
		"WHISKER_HOMEASSISTANT_SUGGESTED_AREA=Back garden",
		"WHISKER_BOOT=1", "WHISKER_DEPS=/x", "WHISKER_TEST_AGENT_CONFIG=/y", // not configuration: left alone
		"PATH=/usr/bin", "MALFORMED",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.MQTT.Broker = "tcp://ha.local:1883"
	want.Camera.Detect.MinScore = 0.35
	want.Camera.MaxFPS = 5
	want.Threads = 3
	want.Learner.RetrainDelay = time.Second
	want.Learner.Balanced = false
	want.Learner.NoPetLabels = []string{"neither", "nobody", "stranger"}
	want.HomeAssistant.SuggestedArea = "Back garden"
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("got  %+v\nwant %+v", cfg, want)
	}
	if err := cfg.Validate(); err != nil {
		t.Error(err)
	}
}

func TestApplyEnvNamesTheVariable(t *testing.T) {
	for env, want := range map[string]string{
		"WHISKER_CAMERA_MAX_FPS=fast":         "WHISKER_CAMERA_MAX_FPS (camera.max_fps): \"fast\" is not a number",
		"WHISKER_THREADS=2.5":                 "WHISKER_THREADS (threads): \"2.5\" is not a whole number",
		"WHISKER_LEARNER_BALANCED=maybe":      "WHISKER_LEARNER_BALANCED (learner.balanced): \"maybe\" is not a boolean",
		"WHISKER_LEARNER_RETRAIN_DELAY=soon":  "WHISKER_LEARNER_RETRAIN_DELAY (learner.retrain_delay): \"soon\" is not a duration",
		"WHISKER_MQTT_BROKR=tcp://x":          "WHISKER_MQTT_BROKR is not a configuration variable",
		"WHISKER_DEVICE=porch\x00x":           "null character",
		"WHISKER_MQTT_USERNAME=" + big(70000): "at most 65536",
	} {
		cfg := Default()
		err := ApplyEnv(&cfg, []string{env})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%.40s: %v, want an error with %q", env, err, want)
		}
	}
	// A value that decodes but is out of range is named by Validate.
	cfg := Default()
	if err := ApplyEnv(&cfg, []string{"WHISKER_LEARNER_THRESHOLD=2"}); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "learner.threshold") {
		t.Errorf("validate: %v", err)
	}
}

func big(n int) string { return strings.Repeat("x", n) }

func TestLoadEnvOverridesTheFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "w.yaml")
	os.WriteFile(path, []byte("device: porch\nmqtt:\n  broker: tcp://file:1883\n"), 0o600)
	cfg, err := LoadEnv(path, []string{"WHISKER_MQTT_BROKER=tcp://env:1883"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Device != "porch" || cfg.MQTT.Broker != "tcp://env:1883" {
		t.Errorf("device %q broker %q", cfg.Device, cfg.MQTT.Broker)
	}
	// No file: the defaults and the environment.
	cfg, err = LoadEnv("", []string{"WHISKER_DEVICE=garden"})
	if err != nil || cfg.Device != "garden" {
		t.Errorf("without a file: %q %v", cfg.Device, err)
	}
}

func TestSecretsFromFilesAndCredentials(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// A file: the trailing newline is not part of the password.
	pw := write("pw", "s3cret\n")
	cfg, err := LoadEnv("", []string{"WHISKER_MQTT_PASSWORD_FILE=" + pw})
	if err != nil || cfg.MQTT.Password != "s3cret" {
		t.Fatalf("password %q, %v", cfg.MQTT.Password, err)
	}
	crlf := write("crlf", "s3cret\r\n")
	if v, err := ReadSecretFile(crlf); err != nil || v != "s3cret" {
		t.Errorf("CRLF: %q %v", v, err)
	}
	if v, err := ReadSecretFile(write("inner", "two\nlines\n")); err != nil || v != "two\nlines" {
		t.Errorf("only the last newline goes: %q %v", v, err)
	}
	// Relative to the configuration file.
	conf := write("w.yaml", "mqtt:\n  password_file: pw\n")
	if cfg, err := LoadEnv(conf, nil); err != nil || cfg.MQTT.Password != "s3cret" {
		t.Errorf("from the file: %q %v", cfg.MQTT.Password, err)
	}
	// A systemd credential named after the key.
	creds := filepath.Join(dir, "creds")
	os.Mkdir(creds, 0o700)
	os.WriteFile(filepath.Join(creds, "mqtt.password"), []byte("from-systemd\n"), 0o600)
	if cfg, err := LoadEnv("", []string{"CREDENTIALS_DIRECTORY=" + creds}); err != nil || cfg.MQTT.Password != "from-systemd" {
		t.Errorf("credential: %q %v", cfg.MQTT.Password, err)
	}
	// A password given directly wins over the credential.
	if cfg, err := LoadEnv("", []string{"CREDENTIALS_DIRECTORY=" + creds, "WHISKER_MQTT_PASSWORD=direct"}); err != nil || cfg.MQTT.Password != "direct" {
		t.Errorf("direct: %q %v", cfg.MQTT.Password, err)
	}
	// No credential of that name: nothing.
	if cfg, err := LoadEnv("", []string{"CREDENTIALS_DIRECTORY=" + dir + "/none"}); err != nil || cfg.MQTT.Password != "" {
		t.Errorf("no credential: %q %v", cfg.MQTT.Password, err)
	}

	for name, c := range map[string]struct {
		env  []string
		want string
	}{
		"both":     {[]string{"WHISKER_MQTT_PASSWORD=x", "WHISKER_MQTT_PASSWORD_FILE=" + pw}, "mqtt.password and mqtt.password_file are both set"},
		"missing":  {[]string{"WHISKER_MQTT_PASSWORD_FILE=" + dir + "/nope"}, "mqtt.password_file: open"},
		"too big":  {[]string{"WHISKER_MQTT_PASSWORD_FILE=" + write("big", big(MaxSecret+1))}, "larger than 65536 bytes"},
		"empty":    {[]string{"WHISKER_MQTT_PASSWORD_FILE=" + write("empty", "\n")}, "is empty"},
		"null":     {[]string{"WHISKER_MQTT_PASSWORD_FILE=" + write("nul", "a\x00b")}, "null character"},
		"not text": {[]string{"WHISKER_MQTT_PASSWORD_FILE=" + write("bin", "\xff\xfe")}, "not UTF-8"},
		"a folder": {[]string{"WHISKER_MQTT_PASSWORD_FILE=" + dir}, "not a regular file"},
		"a device": {[]string{"WHISKER_MQTT_PASSWORD_FILE=/dev/zero"}, "not a regular file"},
	} {
		_, err := LoadEnv("", c.env)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error with %q", name, err, c.want)
		}
	}
}
