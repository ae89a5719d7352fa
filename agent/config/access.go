package config

import (
	"fmt"

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

// Limits are the image limits for camera.DecodeImageLimits.
func (c ImagesConfig) Limits() camera.ImageLimits {
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

// StoreOptions are the sample store's limits, with the feature length of
// the running backbone.
func (c *Config) StoreOptions(identity string, dim int) learner.StoreOptions {
	o := learner.DefaultStoreOptions()
	o.MaxSamplesPerLabel = c.Learner.MaxSamplesPerLabel
	o.MaxSamplesPerOrigin = c.Fleet.MaxSamplesPerCamera
	o.MaxBytes = c.Learner.MaxStoreBytes
	o.MaxJPEGBytes = c.Learner.MaxSampleJPEGBytes
	o.ReserveBytes = c.Learner.DiskReserveBytes
	o.Dims = map[string]int{identity: dim}
	return o
}

// BrokerTopics are the topics the embedded broker's roles are made of.
func (c *Config) BrokerTopics() broker.Topics {
	t := broker.Topics{Prefix: c.MQTT.TopicPrefix, Household: c.Fleet.Household}
	if c.HomeAssistant.Enabled {
		t.Discovery = c.HomeAssistant.DiscoveryPrefix
	}
	return t
}
