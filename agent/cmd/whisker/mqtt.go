package main

import (
	"bufio"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/whiskercam/whisker/agent/broker"
)

func mqttCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "mqtt", Short: "Broker users: password hashes, and the mosquitto ACL of Whisker's roles"}
	var iterations int
	passwd := &cobra.Command{
		Use:   "passwd NAME",
		Short: "Hash a password read from standard input; print a password file line",
		Long: `Reads a password (the first line of standard input) and prints
"NAME:HASH", a line of a mosquitto password file: PBKDF2-SHA512 with a random
salt, in mosquitto's "$7$" format. The same line serves mosquitto
(password_file) and the embedded broker (mqtt.embedded.password_file, or the
hash alone as a user's password_hash).`,
		Example: `  whisker mqtt passwd homeassistant >> /etc/whisker/mqtt.passwd
  printf '%s\n' "$PW" | whisker mqtt passwd porch | sudo tee -a /etc/mosquitto/whisker.passwd`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			line, err := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
			if err != nil && line == "" {
				return errors.New("no password on standard input")
			}
			pw := strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
			h, err := broker.HashPassword(pw, iterations)
			if err != nil {
				return err
			}
			if err := broker.CheckUserName(args[0]); err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "%s:%s\n", args[0], h)
			return err
		},
	}
	passwd.Flags().IntVar(&iterations, "iterations", broker.DefaultIterations, "PBKDF2 iterations")
	var cameras, operators, viewers []string
	var cfgPath, household string
	acl := &cobra.Command{
		Use:   "acl",
		Short: "Print a mosquitto acl_file giving Whisker's roles to users",
		Long: `Prints a mosquitto acl_file with one section per user: cameras (NAME, or
NAME=DEVICE when the user name is not the device id), operators and viewers,
with the rules the embedded broker enforces (docs/security.md). The topic
prefix, Home Assistant's discovery prefix and the household come from the
configuration (--config) unless given.`,
		Example: `  whisker mqtt acl --camera porch --camera garden --operator me --viewer homeassistant --household home > whisker.acl`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, _, err := loadConfig(cfgPath)
			if err != nil {
				return err
			}
			t := broker.Topics{Prefix: cfg.MQTT.TopicPrefix, Household: cfg.Fleet.Household}
			if cfg.HomeAssistant.Enabled {
				t.Discovery = cfg.HomeAssistant.DiscoveryPrefix
			}
			if household != "" {
				t.Household = household
			}
			var ms []broker.Member
			for _, c := range cameras {
				name, device, ok := strings.Cut(c, "=")
				if !ok {
					device = name
				}
				ms = append(ms, broker.Member{Name: name, Role: broker.Camera, Device: device})
			}
			for _, o := range operators {
				ms = append(ms, broker.Member{Name: o, Role: broker.Operator})
			}
			for _, v := range viewers {
				ms = append(ms, broker.Member{Name: v, Role: broker.Viewer})
			}
			if len(ms) == 0 {
				return errors.New("name at least one user (--camera, --operator, --viewer)")
			}
			out, err := broker.MosquittoACL(ms, t)
			if err != nil {
				return err
			}
			_, err = fmt.Fprint(cmd.OutOrStdout(), out)
			return err
		},
	}
	f := acl.Flags()
	f.StringArrayVar(&cameras, "camera", nil, "a camera's user, NAME or NAME=DEVICE (repeatable)")
	f.StringArrayVar(&operators, "operator", nil, "an operator's user (repeatable)")
	f.StringArrayVar(&viewers, "viewer", nil, "a viewer's user, such as Home Assistant's (repeatable)")
	f.StringVar(&household, "household", "", "the household whose samples cameras share (default: fleet.household)")
	f.StringVarP(&cfgPath, "config", "c", "", "configuration file for the topic prefixes (default /etc/whisker/whisker.yaml if it exists)")
	cmd.AddCommand(passwd, acl)
	return cmd
}
