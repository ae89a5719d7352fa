package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/whiskercam/whisker/agent/config"
	"github.com/whiskercam/whisker/agent/protocol"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// clientFlags say where the agent is; they default to what the agent's
// configuration says.
type clientFlags struct {
	config, broker, device, prefix, username, password, passwordFile, ca string
	timeout                                                              time.Duration
}

func (f *clientFlags) add(fs *pflag.FlagSet) {
	fs.StringVarP(&f.config, "config", "c", "", "the agent's configuration file (default /etc/whisker/whisker.yaml if it exists)")
	fs.StringVar(&f.broker, "broker", "", "broker URL (default: the agent's, or its embedded broker)")
	fs.StringVar(&f.device, "device", "", "the agent's device id (default: the agent's)")
	fs.StringVar(&f.prefix, "prefix", "", "topic prefix (default: the agent's)")
	fs.StringVar(&f.username, "username", "", "broker user name: an operator's, never the camera's own (default: none, which the embedded broker lets in over loopback)")
	fs.StringVar(&f.password, "password", "", "broker password")
	fs.StringVar(&f.passwordFile, "password-file", "", "read the broker password from this file's first line")
	fs.StringVar(&f.ca, "ca", "", "CA certificate (PEM) for ssl:// brokers")
	fs.DurationVar(&f.timeout, "timeout", 30*time.Second, "how long to wait for the agent's answer")
}

func (f *clientFlags) dial(ctx context.Context) (*protocol.Client, error) {
	cfg, _, err := loadConfig(f.config)
	if err != nil {
		return nil, err
	}
	// The configuration's user is the camera's own: its role may not send
	// labels or commands, and with a broker that takes user names as
	// client ids it would push the agent off the broker. Tools give their
	// own user.
	cc := protocol.ClientConfig{
		Broker: cfg.MQTT.Broker, Prefix: cfg.MQTT.TopicPrefix, Device: cfg.Device, TLS: cfg.MQTT.TLS,
	}
	if f.passwordFile != "" {
		pw, err := config.ReadSecretFile(f.passwordFile)
		if err != nil {
			return nil, fmt.Errorf("--password-file: %w", err)
		}
		cc.Password = pw
	}
	if cc.Broker == "" {
		cc.Broker = "tcp://" + cfg.MQTT.EmbeddedListen
	}
	set := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	set(&cc.Broker, f.broker)
	set(&cc.Device, f.device)
	set(&cc.Prefix, f.prefix)
	set(&cc.Username, f.username)
	set(&cc.Password, f.password)
	set(&cc.TLS.CAFile, f.ca)
	dctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	return protocol.Dial(dctx, cc)
}

// request sends one request and prints the answer; a refusal is an error.
func (f *clientFlags) request(cmd *cobra.Command, topic string, req map[string]any, show func(io.Writer, protocol.Result)) error {
	cl, err := f.dial(cmd.Context())
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(cmd.Context(), f.timeout)
	defer cancel()
	res, err := cl.Request(ctx, topic, req)
	if err != nil {
		return err
	}
	if !res.Ok {
		return fmt.Errorf("refused: %s", res.Error)
	}
	show(cmd.OutOrStdout(), res)
	return nil
}

func showLabels(w io.Writer, res protocol.Result) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "LABEL\tSAMPLES")
	for _, l := range res.Labels {
		fmt.Fprintf(tw, "%s\t%d\n", l.Label, l.Samples)
	}
	tw.Flush()
}

func labelCmd() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:   "label",
		Short: "Teach a running agent: label sightings or photos, list, rename, forget, watch",
		Long: `Talk to a running agent over MQTT, for people without an MQTT tool. The
broker, device and topic prefix come from the agent's configuration file
(--config, else /etc/whisker/whisker.yaml, else the defaults: the embedded
broker on 127.0.0.1:1883); flags override them.`,
		Example: `  whisker label watch
  whisker label sighting 6b08f80e-37 Tigger
  whisker label image misty.jpg Misty
  whisker label list
  whisker label rename Tiger Tigger
  whisker label forget Misty`,
	}
	f.add(cmd.PersistentFlags())
	done := func(w io.Writer, res protocol.Result) {
		dup := ""
		if res.Duplicate {
			dup = " (already stored by an earlier try)"
		}
		fmt.Fprintf(w, "stored sample %d as %q%s\n", res.SampleID, res.Label, dup)
		showLabels(w, res)
	}
	cmd.AddCommand(
		&cobra.Command{
			Use:   "sighting ID NAME",
			Short: "Label the frame of a sighting (its id is on the sighting topic, and in 'whisker label watch')",
			Args:  cobra.ExactArgs(2),
			RunE: func(cmd *cobra.Command, args []string) error {
				return f.request(cmd, protocol.TopicLabel, map[string]any{"sighting_id": args[0], "label": args[1]}, done)
			},
		},
		&cobra.Command{
			Use:   "image FILE NAME",
			Short: "Label a photograph (JPEG or PNG)",
			Args:  cobra.ExactArgs(2),
			RunE: func(cmd *cobra.Command, args []string) error {
				data, err := os.ReadFile(args[0])
				if err != nil {
					return err
				}
				req := map[string]any{"image": base64.StdEncoding.EncodeToString(data), "label": args[1]}
				return f.request(cmd, protocol.TopicLabel, req, done)
			},
		},
		&cobra.Command{
			Use:   "list",
			Short: "List labels with their sample counts",
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, args []string) error {
				return f.request(cmd, protocol.TopicCmd, map[string]any{"cmd": "labels"}, showLabels)
			},
		},
		&cobra.Command{
			Use:   "rename OLD NEW",
			Short: "Rename a label (all its samples)",
			Args:  cobra.ExactArgs(2),
			RunE: func(cmd *cobra.Command, args []string) error {
				return f.request(cmd, protocol.TopicCmd, map[string]any{"cmd": "rename", "label": args[0], "to": args[1]},
					func(w io.Writer, res protocol.Result) {
						fmt.Fprintf(w, "renamed %d samples from %q to %q\n", res.Changed, res.Label, res.To)
						showLabels(w, res)
					})
			},
		},
		forgetCmd(&f),
		watchCmd(&f),
	)
	return cmd
}

func forgetCmd(f *clientFlags) *cobra.Command {
	var sample uint64
	cmd := &cobra.Command{
		Use:   "forget [NAME]",
		Short: "Forget a label (all its samples) or, with --sample, one sample",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := map[string]any{"cmd": "forget"}
			switch {
			case len(args) == 1 && sample == 0:
				req["label"] = args[0]
			case len(args) == 0 && sample != 0:
				req["sample_id"] = sample
			default:
				return errors.New("give a label name or --sample ID")
			}
			return f.request(cmd, protocol.TopicCmd, req, func(w io.Writer, res protocol.Result) {
				fmt.Fprintf(w, "forgot %d sample(s) of %q\n", res.Changed, res.Label)
				showLabels(w, res)
			})
		},
	}
	cmd.Flags().Uint64Var(&sample, "sample", 0, "forget one sample by id")
	return cmd
}

func watchCmd(f *clientFlags) *cobra.Command {
	var asJSON, named bool
	cmd := &cobra.Command{
		Use:   "watch",
		Short: "Show sightings live (Ctrl-C stops)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := f.dial(cmd.Context())
			if err != nil {
				return err
			}
			defer cl.Close()
			w := cmd.OutOrStdout()
			if !asJSON {
				fmt.Fprintf(w, "%-12s %-18s %-12s %-10s %s\n", "TIME", "SIGHTING", "LABEL", "CONFIDENCE", "SCORES")
			}
			cl.Watch(cmd.Context(), func(s protocol.Sighting) {
				if named && s.Label == protocol.Unknown {
					return
				}
				if asJSON {
					b, _ := json.Marshal(s)
					fmt.Fprintln(w, string(b))
					return
				}
				ts := s.TS
				if t, err := time.Parse(time.RFC3339Nano, s.TS); err == nil {
					ts = t.Local().Format("15:04:05.0")
				}
				fmt.Fprintf(w, "%-12s %-18s %-12s %-10.2f %s\n", ts, s.ID, s.Label, s.Confidence, formatScores(s.Scores))
			})
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print each sighting as JSON")
	cmd.Flags().BoolVar(&named, "named", false, "only sightings with a name (not unknown)")
	return cmd
}

func formatScores(m map[string]float64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return m[keys[i]] > m[keys[j]] })
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, k+" "+strconv.FormatFloat(m[k], 'f', 2, 64))
	}
	return strings.Join(parts, ", ")
}

func ctlCmd() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:   "ctl",
		Short: "Commands to a running agent: stats, retrain, capture, threshold, snapshot",
		Long:  "Send a command to a running agent over MQTT and print its answer (see docs/mqtt.md).",
		Example: `  whisker ctl stats
  whisker ctl threshold 0.7
  whisker ctl capture
  whisker ctl snapshot latest -o latest.jpg`,
	}
	f.add(cmd.PersistentFlags())
	printJSON := func(w io.Writer, res protocol.Result) {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(res)
	}
	simple := func(name, short string) *cobra.Command {
		return &cobra.Command{
			Use: name, Short: short, Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, args []string) error {
				return f.request(cmd, protocol.TopicCmd, map[string]any{"cmd": name}, printJSON)
			},
		}
	}
	var out string
	snap := &cobra.Command{
		Use:   "snapshot SIGHTING|latest",
		Short: "Fetch the JPEG of a recent sighting",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return fetchSnapshot(cmd, &f, args[0], out)
		},
	}
	snap.Flags().StringVarP(&out, "output", "o", "snapshot.jpg", "file to write")
	cmd.AddCommand(
		simple("stats", "Print the agent's statistics"),
		simple("retrain", "Retrain the head now"),
		simple("capture", "Classify the next frame now and print its sighting"),
		&cobra.Command{
			Use: "threshold VALUE", Short: "Set the probability below which sightings are unknown", Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				v, err := strconv.ParseFloat(args[0], 64)
				if err != nil {
					return fmt.Errorf("threshold %q: %w", args[0], err)
				}
				return f.request(cmd, protocol.TopicCmd, map[string]any{"cmd": "threshold", "value": v}, func(w io.Writer, res protocol.Result) {
					fmt.Fprintf(w, "threshold set to %g\n", res.Threshold)
				})
			},
		},
		snap,
	)
	return cmd
}

func fetchSnapshot(cmd *cobra.Command, f *clientFlags, id, out string) error {
	cl, err := f.dial(cmd.Context())
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(cmd.Context(), f.timeout)
	defer cancel()
	jpeg, sid, err := cl.Snapshot(ctx, id)
	if err != nil {
		return err
	}
	if err := os.WriteFile(out, jpeg, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "wrote %s (%d bytes, sighting %s)\n", out, len(jpeg), sid)
	return nil
}
