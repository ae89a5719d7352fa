package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/whiskercam/whisker/agent/config"
	"github.com/whiskercam/whisker/agent/ota"

	"github.com/spf13/cobra"

	"github.com/whiskercam/whisker/agent"
)

// defaultConfigPath is read when --config is not given and it exists.
const defaultConfigPath = "/etc/whisker/whisker.yaml"

// loadConfig reads the configuration file (path, else the default one if
// it exists, else none) and the environment (WHISKER_ variables, secret
// files, systemd credentials).
func loadConfig(path string) (config.Config, string, error) {
	if path == "" {
		if _, err := os.Stat(defaultConfigPath); err == nil {
			path = defaultConfigPath
		}
	}
	cfg, err := config.Load(path)
	if path == "" {
		return cfg, "(defaults)", err
	}
	return cfg, path, err
}

func newLogger(cfg config.LogConfig) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Level))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Format == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}

func runCmd() *cobra.Command {
	var cfgPath, source, broker, device, stateDir, logLevel string
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the agent: watch the camera, publish sightings, learn from labels",
		Long: `Run the agent. It reads the configuration (--config, else
/etc/whisker/whisker.yaml if present, else built-in defaults), opens the
camera and the backbone, and speaks MQTT on <prefix>/<device>/...: sightings
out, labels and commands in, answers on the result topic. With no
mqtt.broker configured it starts an embedded broker on 127.0.0.1:1883.

Flags override the file. See docs/mqtt.md for the topics and payloads.`,
		Example: `  whisker run --config examples/demo.yaml
  whisker run --source /dev/video0 --broker tcp://homeassistant.local:1883`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, from, err := loadConfig(cfgPath)
			if err != nil {
				return err
			}
			if source != "" {
				cfg.Camera.Source = source
			}
			if broker != "" {
				cfg.MQTT.Broker = broker
			}
			if device != "" {
				cfg.Device = device
			}
			if stateDir != "" {
				cfg.StateDir = stateDir
			}
			if logLevel != "" {
				cfg.Log.Level = logLevel
			}
			if err := cfg.Validate(); err != nil {
				return fmt.Errorf("%s: %w", from, err)
			}
			log := newLogger(cfg.Log)
			log.Info("starting whisker", "version", version, "config", from)
			a, err := agent.New(cfg, log, version)
			if err != nil {
				return err
			}
			err = a.Run(cmd.Context())
			if errors.Is(err, ota.ErrRestart) {
				log.Info("stopped to restart into other firmware")
				return err
			}
			if err != nil && !errors.Is(err, cmd.Context().Err()) {
				return err
			}
			log.Info("stopped")
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&cfgPath, "config", "c", "", "configuration file (YAML)")
	f.StringVar(&source, "source", "", "camera source: video file, image folder or device (overrides camera.source)")
	f.StringVar(&broker, "broker", "", "external MQTT broker URL (overrides mqtt.broker)")
	f.StringVar(&device, "device", "", "device id in topics (overrides device)")
	f.StringVar(&stateDir, "state-dir", "", "state directory (overrides state_dir)")
	f.StringVar(&logLevel, "log-level", "", "debug, info, warn or error (overrides log.level)")
	return cmd
}

func configCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Check configuration files, print the defaults"}
	cmd.AddCommand(&cobra.Command{
		Use:   "defaults",
		Short: "Print every configuration key with its default value (YAML)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			out, err := config.Default().YAML()
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(out)
			return err
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "env",
		Short: "List the environment variable of every configuration key",
		Long: `Every configuration key can be set from the environment: WHISKER_ and the
key's path in upper case with '.' as '_'. A variable overrides the file and
is overridden by flags. Values read as in YAML (durations such as 300ms,
true or false); lists are comma-separated.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, kv := range config.EnvKeys() {
				if _, err := fmt.Fprintf(cmd.OutOrStdout(), "%-48s %s\n", kv[0], kv[1]); err != nil {
					return err
				}
			}
			return nil
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "check FILE",
		Short: "Validate a configuration file and print the result with defaults filled in",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := config.Load(args[0])
			if err != nil {
				return err
			}
			if err := cfg.Validate(); err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: ok\n", args[0])
			return nil
		},
	})
	return cmd
}
