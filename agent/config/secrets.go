package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"unicode/utf8"
)

// Secrets stay out of the configuration file: each secret key (such as
// mqtt.password) can instead be read from a file named by <key>_file
// (mqtt.password_file), or from a systemd credential named after the key
// (LoadCredential=mqtt.password:/etc/whisker/mqtt-password in the unit
// puts it in $CREDENTIALS_DIRECTORY/mqtt.password). The value given
// directly wins over the credential; giving both the value and the file
// is refused.

// MaxSecret bounds a secret file (bytes).
const MaxSecret = 64 << 10

// secret is a configuration key whose value may come from a file.
type secret struct {
	key         string  // dotted key of the value
	value, file *string // the value, and the path of a file holding it
}

func (c *Config) secrets() []secret {
	return []secret{
		{key: "mqtt.password", value: &c.MQTT.Password, file: &c.MQTT.PasswordFile},
	}
}

// ReadSecretFile reads a secret from a file: a regular file of at most
// MaxSecret bytes of UTF-8 text without null characters; one trailing
// newline (\n or \r\n) is removed, as editors and `echo` add one.
func ReadSecretFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return "", err
	}
	if !info.Mode().IsRegular() {
		return "", fmt.Errorf("%s is not a regular file", path)
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxSecret+1))
	if err != nil {
		return "", err
	}
	switch {
	case len(data) > MaxSecret:
		return "", fmt.Errorf("%s is larger than %d bytes", path, MaxSecret)
	case bytes.IndexByte(data, 0) >= 0:
		return "", fmt.Errorf("%s contains a null character", path)
	case !utf8.Valid(data):
		return "", fmt.Errorf("%s is not UTF-8 text", path)
	}
	s := strings.TrimSuffix(string(data), "\n")
	s = strings.TrimSuffix(s, "\r")
	if s == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return s, nil
}

// ResolveSecrets fills each secret key from its file, or else from the
// systemd credential of the same name in credentials (the value of
// $CREDENTIALS_DIRECTORY; "" for none). Errors name the key and the file.
func ResolveSecrets(cfg *Config, credentials string) error {
	for _, s := range cfg.secrets() {
		switch {
		case *s.file != "" && *s.value != "":
			return fmt.Errorf("config: %s and %s_file are both set: give the secret one way", s.key, s.key)
		case *s.file != "":
			v, err := ReadSecretFile(*s.file)
			if err != nil {
				return fmt.Errorf("config: %s_file: %w", s.key, err)
			}
			*s.value = v
		case *s.value == "" && credentials != "":
			path := filepath.Join(credentials, s.key)
			v, err := ReadSecretFile(path)
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				return fmt.Errorf("config: %s from the systemd credential: %w", s.key, err)
			}
			*s.value = v
		}
	}
	return nil
}
