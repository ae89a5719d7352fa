package agent

import (
	"os"
	"strings"
	"testing"
)

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
