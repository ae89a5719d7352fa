package agent

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// A secret key (mqtt.password) can be read from a file named by its _file
// key (mqtt.password_file) instead of the configuration file, or from the
// systemd credential named after the key (LoadCredential=mqtt.password:...
// puts it in $CREDENTIALS_DIRECTORY/mqtt.password), which is read when no
// value is configured.

// maxSecretFile bounds a secret file (bytes).
const maxSecretFile = 64 << 10

// ReadSecretFile reads a secret: a regular file of at most 64 KiB of text
// without null bytes, one trailing line end removed.
func ReadSecretFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", err
	}
	if !st.Mode().IsRegular() {
		return "", fmt.Errorf("%s is not a regular file", path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxSecretFile+1))
	switch {
	case err != nil:
		return "", err
	case len(data) > maxSecretFile:
		return "", fmt.Errorf("%s is larger than %d bytes", path, maxSecretFile)
	case bytes.IndexByte(data, 0) >= 0:
		return "", fmt.Errorf("%s holds a null byte", path)
	}
	s := strings.TrimSuffix(strings.TrimSuffix(string(data), "\n"), "\r")
	if s == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return s, nil
}

// ResolveSecrets fills mqtt.password from mqtt.password_file, or else
// from the systemd credential mqtt.password in credentials (the value of
// $CREDENTIALS_DIRECTORY, "" for none). Giving the password and the file
// is refused.
func ResolveSecrets(cfg *Config, credentials string) error {
	m := &cfg.MQTT
	switch {
	case m.PasswordFile != "" && m.Password != "":
		return errors.New("config: mqtt.password and mqtt.password_file are both set: give the password one way")
	case m.PasswordFile != "":
		pw, err := ReadSecretFile(m.PasswordFile)
		if err != nil {
			return fmt.Errorf("config: mqtt.password_file: %w", err)
		}
		m.Password = pw
	case m.Password == "" && credentials != "":
		pw, err := ReadSecretFile(filepath.Join(credentials, "mqtt.password"))
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("config: mqtt.password from the systemd credential: %w", err)
		}
		m.Password = pw
	}
	return nil
}
