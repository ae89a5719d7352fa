// Command whisker is an edge agent that learns to recognise your pets.
package main

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/whiskercam/whisker/agent/ota"

	"github.com/spf13/cobra"

	"github.com/whiskercam/whisker/camera"
	"github.com/whiskercam/whisker/learner/backbone"
)

// version is set at build time (-ldflags -X main.version=...).
var version = "dev"

// buildRecord is the build record (scripts/build-record.sh), base64, set
// at build time by the Makefile; the binary's Debian package and update
// bundle carry the same record.
var buildRecord string

func main() {
	// OpenCV reads its pixel limit once, as it is loaded: the process must
	// start with it in its environment. This restarts the program in place
	// with it set, when it is not.
	if err := camera.ExecWithOpenCVLimit(); err != nil {
		fmt.Fprintln(os.Stderr, "whisker: OpenCV's own image size limit is not in effect:", err)
	}
	if err := run(); err != nil {
		if errors.Is(err, ota.ErrRestart) {
			os.Exit(ota.RestartExitCode)
		}
		fmt.Fprintln(os.Stderr, "whisker:", err)
		os.Exit(1)
	}
}

func run() error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := &cobra.Command{
		Use:   "whisker",
		Short: "An edge agent that learns to recognise your pets",
		Long: `Whisker watches a camera, turns each frame into a feature vector with a
pretrained TensorFlow Lite backbone, and names the pet it sees with a small
classifier it trains on the device from the labels you send over MQTT.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version,
	}
	// `whisker --version` prints what `whisker version` prints.
	root.SetVersionTemplate(versionLine())
	root.AddCommand(runCmd(), bootCmd(), labelCmd(), ctlCmd(), importCmd(), evalCmd(), demoCmd(), modelCmd(), configCmd(),
		demoVideoCmd(), keysCmd(), bundleCmd(), fleetCmd(), embedCmd(), benchCmd(), mqttCmd(), versionCmd(), passwdCmd())
	return root.ExecuteContext(ctx)
}

// versionLine is the version, and the TensorFlow Lite library it runs.
func versionLine() string {
	return fmt.Sprintf("whisker %s (TensorFlow Lite %s)\n", version, backbone.RuntimeVersion())
}

func versionCmd() *cobra.Command {
	var record bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version (--record: what the binary was built from, as JSON)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if !record {
				fmt.Fprint(cmd.OutOrStdout(), versionLine())
				return nil
			}
			if buildRecord == "" {
				return errors.New("this binary carries no build record (build it with make)")
			}
			data, err := base64.StdEncoding.DecodeString(buildRecord)
			if err != nil {
				return fmt.Errorf("build record: %w", err)
			}
			_, err = cmd.OutOrStdout().Write(data)
			return err
		},
	}
	cmd.Flags().BoolVar(&record, "record", false, "print the build record: version, commit, target, TensorFlow Lite and the Debian packages built against")
	return cmd
}
