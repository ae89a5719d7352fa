package agent

import (
	"fmt"
	"os"
	"strings"
	"syscall"

	"github.com/whiskercam/whisker/agent/broker"
	"github.com/whiskercam/whisker/camera"
	"github.com/whiskercam/whisker/learner"
)

// ImagesConfig bounds the images the agent decodes: the photographs of
// label requests. An image is sized from its header (read twice) before
// any pixel is decoded (docs/security.md).
type ImagesConfig struct {
	// MaxBytes is the largest encoded image.
	MaxBytes int `yaml:"max_bytes"`
	// MaxPixels is the largest width times height.
	MaxPixels int64 `yaml:"max_pixels"`
}

// limits are the image limits for camera.DecodeImageLimits.
func (c ImagesConfig) limits() camera.ImageLimits {
	return camera.ImageLimits{MaxBytes: c.MaxBytes, MaxPixels: c.MaxPixels}
}

// validateAccess checks the keys of access control, quotas and limits.
func (c *Config) validateAccess() error {
	bad := func(key string, val any, why string) error {
		return fmt.Errorf("config: %s: %v %s", key, val, why)
	}
	switch {
	case c.Device == "household":
		return bad("device", `"household"`, "is reserved (household topics are <prefix>/household/...)")
	case c.MQTT.Password != "" && c.MQTT.PasswordFile != "":
		return bad("mqtt.password_file", fmt.Sprintf("%q", c.MQTT.PasswordFile), "and mqtt.password are both set: keep one")
	case c.Images.MaxBytes < 1024 || c.Images.MaxBytes > 1<<30:
		return bad("images.max_bytes", c.Images.MaxBytes, "must be between 1024 and 1073741824")
	case c.Images.MaxPixels < 1 || c.Images.MaxPixels > camera.OpenCVPixelLimit:
		return bad("images.max_pixels", c.Images.MaxPixels, fmt.Sprintf("must be between 1 and %d (OpenCV's own limit in the agent)", camera.OpenCVPixelLimit))
	case c.Learner.MaxSamplesPerLabel < 0:
		return bad("learner.max_samples_per_label", c.Learner.MaxSamplesPerLabel, "must be 0 (no limit) or more")
	case c.Learner.MaxStoreBytes != 0 && (c.Learner.MaxStoreBytes < 1<<20 || c.Learner.MaxStoreBytes > 1<<40):
		return bad("learner.max_store_bytes", c.Learner.MaxStoreBytes, "must be 0 (no limit) or between 1 MiB and 1 TiB")
	case c.Learner.MaxSampleJPEGBytes < 1024 || c.Learner.MaxSampleJPEGBytes > 16<<20:
		return bad("learner.max_sample_jpeg_bytes", c.Learner.MaxSampleJPEGBytes, "must be between 1024 and 16777216")
	case c.Learner.DiskReserveBytes < 0:
		return bad("learner.disk_reserve_bytes", c.Learner.DiskReserveBytes, "must be 0 or more")
	case c.Fleet.MaxSamplesPerCamera < 0:
		return bad("fleet.max_samples_per_camera", c.Fleet.MaxSamplesPerCamera, "must be 0 (no limit) or more")
	case c.Fleet.Household != "" && c.Fleet.HouseholdKeys == "":
		return bad("fleet.household_keys", `""`, "must name the directory of the household's enrolled camera keys (DEVICE.pub): shared samples are stored only when signed by one of them")
	}
	if c.MQTT.Broker == "" {
		if err := c.MQTT.Embedded.Validate(c.MQTT.EmbeddedListen); err != nil {
			return err
		}
	}
	return nil
}

// storeOptions are the sample store's limits, with the feature length of
// the running backbone.
func (c *Config) storeOptions(identity string, dim int) learner.StoreOptions {
	o := learner.DefaultStoreOptions()
	o.MaxSamplesPerLabel = c.Learner.MaxSamplesPerLabel
	o.MaxSamplesPerOrigin = c.Fleet.MaxSamplesPerCamera
	o.MaxBytes = c.Learner.MaxStoreBytes
	o.MaxJPEGBytes = c.Learner.MaxSampleJPEGBytes
	o.ReserveBytes = c.Learner.DiskReserveBytes
	o.Dims = map[string]int{identity: dim}
	return o
}

// brokerTopics are the topics the embedded broker's roles are made of.
func (c *Config) brokerTopics() broker.Topics {
	t := broker.Topics{Prefix: c.MQTT.TopicPrefix, Household: c.Fleet.Household}
	if c.HomeAssistant.Enabled {
		t.Discovery = c.HomeAssistant.DiscoveryPrefix
	}
	return t
}

// credentialsPrefix starts a path in systemd's credentials directory.
const credentialsPrefix = "$CREDENTIALS_DIRECTORY/"

// maxSecret bounds a secret file.
const maxSecret = 4096

// ReadSecret reads a secret from a file named by a configuration key: its
// first line, without the line end. A path starting with
// $CREDENTIALS_DIRECTORY/ is in the directory systemd passes credentials
// in (LoadCredential=). The file must be a regular file of at most 4 KiB;
// one that others may read is refused.
func ReadSecret(key, path string) (string, error) {
	if rest, ok := strings.CutPrefix(path, credentialsPrefix); ok {
		dir := os.Getenv("CREDENTIALS_DIRECTORY")
		if dir == "" {
			return "", fmt.Errorf("%s: %q names $CREDENTIALS_DIRECTORY, which is not set (it is, under systemd with LoadCredential=)", key, path)
		}
		path = dir + "/" + rest
	}
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return "", fmt.Errorf("%s: %w", key, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("%s: %w", key, err)
	}
	switch {
	case !st.Mode().IsRegular() || st.Size() > maxSecret:
		return "", fmt.Errorf("%s: %s is not a regular file of at most %d bytes", key, path, maxSecret)
	case st.Mode().Perm()&0o007 != 0:
		return "", fmt.Errorf("%s: %s may be read by every user (mode %04o): chmod o-rwx it", key, path, st.Mode().Perm())
	}
	data := make([]byte, st.Size())
	if _, err := f.ReadAt(data, 0); err != nil {
		return "", fmt.Errorf("%s: %w", key, err)
	}
	line, _, _ := strings.Cut(string(data), "\n")
	line = strings.TrimSuffix(line, "\r")
	if line == "" {
		return "", fmt.Errorf("%s: %s is empty", key, path)
	}
	return line, nil
}

// Secrets returns the configuration with the secrets its *_file keys name
// read in (mqtt.password from mqtt.password_file).
func (c Config) Secrets() (Config, error) {
	if c.MQTT.PasswordFile != "" {
		pw, err := ReadSecret("mqtt.password_file", c.MQTT.PasswordFile)
		if err != nil {
			return c, err
		}
		c.MQTT.Password = pw
	}
	return c, nil
}
