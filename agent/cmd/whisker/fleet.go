package main

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/whiskercam/whisker/firmware/attest"
	"github.com/whiskercam/whisker/firmware/fleet"
)

func fleetCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "fleet", Short: "Update many cameras at once"}
	var o fleet.Options
	var devices, deviceKeys string
	rollout := &cobra.Command{
		Use:   "rollout BUNDLE --broker URL [--devices a,b,c]",
		Short: "Roll a signed bundle out in stages: a canary, then batches; stop at the first failure",
		Long: `Send the bundle to the cameras on a broker in stages (--canary devices first,
then --batch at a time), waiting for each device to report the new version
healthy (it commits only after producing sightings; an unhealthy one rolls
itself back). The first failure stops the rollout; devices not reached are
left as they were. A summary table ends the run.

Devices are listed with --devices, or found from their retained status
topics (every online device under the prefix). Devices fetch the bundle
from --url, or from --path on their own disk, or else from this command,
which serves it over HTTP on --serve and tells them --advertise:port.

A camera counts as updated only on a report signed by its own key, enrolled
at install (whisker keys gen --device on the camera; its device.pub copied
into --device-keys as DEVICE.pub), for this rollout's request: anyone on the
broker can publish a status, only the camera can sign one. Devices without
an enrolled key are left out. --trust-broker believes unsigned statuses
instead, for a broker whose ACLs let each camera alone write its own topics.`,
		Example: `  whisker fleet rollout whisker-1.3.0.wsk --broker tcp://mqtt.lan:1883 --device-keys /etc/whisker/devices --advertise 192.168.1.10 --dry-run
  whisker fleet rollout whisker-1.3.0.wsk --broker tcp://mqtt.lan:1883 --device-keys /etc/whisker/devices --advertise 192.168.1.10 --serve :8088`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Bundle = args[0]
			o.Out = cmd.ErrOrStderr()
			if devices != "" {
				o.Devices = strings.Split(devices, ",")
			}
			if deviceKeys != "" {
				keys, err := attest.LoadKeyring(deviceKeys)
				if err != nil {
					return fmt.Errorf("--device-keys: %w", err)
				}
				o.DeviceKeys = keys
			}
			results, err := fleet.Rollout(cmd.Context(), o)
			if len(results) > 0 {
				fmt.Fprintln(cmd.OutOrStdout())
				fleet.WriteTable(cmd.OutOrStdout(), results)
			}
			if errors.Is(err, fleet.ErrStopped) {
				return err
			}
			return err
		},
	}
	f := rollout.Flags()
	f.StringVar(&o.Broker, "broker", "tcp://127.0.0.1:1883", "the cameras' MQTT broker")
	f.StringVar(&o.Username, "username", "", "broker user name")
	f.StringVar(&o.Password, "password", "", "broker password")
	f.StringVar(&o.Prefix, "prefix", "whisker", "topic prefix")
	f.StringVar(&devices, "devices", "", "comma-separated device ids (default: every online device)")
	f.DurationVar(&o.Discover, "discover", 3*time.Second, "how long to listen for device status")
	f.StringVar(&o.URL, "url", "", "where devices download the bundle (it is served by this command if no --url or --path)")
	f.StringVar(&o.Path, "path", "", "the bundle's path on the devices' own disk")
	f.StringVar(&o.Serve, "serve", ":0", "address to serve the bundle on")
	f.StringVar(&o.Advertise, "advertise", "", "this machine's address as the devices reach it")
	f.IntVar(&o.Canary, "canary", 1, "devices in the first stage")
	f.IntVar(&o.Batch, "batch", 3, "devices per later stage")
	f.DurationVar(&o.Timeout, "timeout", 5*time.Minute, "how long one device may take to report healthy")
	f.BoolVar(&o.DryRun, "dry-run", false, "show the plan, change nothing")
	f.StringVar(&deviceKeys, "device-keys", "", "directory of the cameras' enrolled public keys, DEVICE.pub each")
	f.BoolVar(&o.TrustBroker, "trust-broker", false, "believe unsigned statuses (only when broker ACLs let each camera alone write its topics)")
	cmd.AddCommand(rollout)
	return cmd
}
