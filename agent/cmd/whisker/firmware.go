package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/whiskercam/whisker/agent"
	"github.com/whiskercam/whisker/firmware/bundle"
	"github.com/whiskercam/whisker/firmware/update"
	"github.com/whiskercam/whisker/internal/atomicfile"
)

func bootCmd() *cobra.Command {
	var cfgPath string
	cmd := &cobra.Command{
		Use:   "boot [--config FILE] [-- RUN FLAGS]",
		Short: "Start the agent from the right firmware slot (what the service runs)",
		Long: `Decide which firmware to run and start it: the committed slot, a new slot
on probation (counting its starts, and switching back after
update.max_attempts failed ones), or, when no slot verifies against the
trusted keys, this installed binary. Then become 'whisker run' of that
firmware. The systemd unit starts the agent this way so that updates can
switch slots and roll back.`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, extra []string) error {
			cfg, _, err := loadConfig(cfgPath)
			if err != nil {
				return err
			}
			log := newLogger(cfg.Log).With("component", "boot")
			layout := update.Layout{Dir: filepath.Join(cfg.StateDir, "firmware")}
			keys, err := bundle.LoadPublicKeys(cfg.Update.TrustedKeys)
			if err != nil {
				log.Error("update.trusted_keys; no firmware slot can be verified", "err", err)
			}
			slot, err := layout.Boot(bundle.CheckOptions{Trusted: keys}, cfg.Update.MaxAttempts, func(f string, a ...any) {
				log.Warn(fmt.Sprintf(f, a...))
			})
			if err != nil {
				return fmt.Errorf("choose firmware slot: %w", err)
			}
			self, err := os.Executable()
			if err != nil {
				return err
			}
			bin := self
			if p, ok := layout.File(slot, bundle.KindAgent); ok {
				bin = p
			}
			args := []string{bin, "run"}
			if cfgPath != "" {
				args = append(args, "--config", cfgPath)
			}
			args = append(args, extra...)
			env := append(os.Environ(), agent.EnvBooted+"=1", agent.EnvSlot+"="+slot)
			log.Info("starting the agent", "slot", slotLabel(slot), "binary", bin)
			return syscall.Exec(bin, args, env)
		},
	}
	cmd.Flags().StringVarP(&cfgPath, "config", "c", "", "configuration file (as for run)")
	return cmd
}

func slotLabel(s string) string {
	if s == "" {
		return "installed binary"
	}
	return s
}

func keysCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "keys", Short: "Make the key pair that signs update bundles"}
	var out string
	gen := &cobra.Command{
		Use:   "gen -o NAME",
		Short: "Generate an ed25519 key pair: NAME.key (private, keep it safe) and NAME.pub (for the devices)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return fmt.Errorf("-o NAME is required")
			}
			pub, err := bundle.GenerateKeys(out+".key", out+".pub")
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s.key (private) and %s.pub (key id %s)\n", out, out, bundle.KeyID(pub))
			fmt.Fprintf(cmd.OutOrStdout(), "devices trust it with:\n  update:\n    trusted_keys: [/etc/whisker/keys/%s.pub]\n", filepath.Base(out))
			return nil
		},
	}
	gen.Flags().StringVarP(&out, "output", "o", "", "path and base name of the key files")
	cmd.AddCommand(gen)
	return cmd
}

func bundleCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "bundle", Short: "Make and check signed update bundles"}
	var (
		agentBin, backbonePath, headPath, key, version, minAgent, target, out, notes, record string
	)
	create := &cobra.Command{
		Use:   "create --version V --key KEY [--agent BIN] [--backbone MANIFEST] [--head HEAD] -o FILE",
		Short: "Pack an agent binary, a backbone (by its manifest) and/or a head into a signed bundle",
		Example: `  whisker bundle create --version 1.3.0 --key fleet.key --agent bin/whisker --target linux/arm64 -o whisker-1.3.0.wsk
  whisker bundle create --version 1.3.1 --key fleet.key --backbone models/backbone.manifest.json -o backbone.wsk`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			priv, err := bundle.LoadPrivateKey(key)
			if err != nil {
				return err
			}
			var inputs []bundle.Input
			opt := bundle.CreateOptions{Version: version, MinAgentVersion: minAgent, Notes: notes, Key: priv}
			if record != "" {
				if opt.BuildRecord, err = os.ReadFile(record); err != nil {
					return fmt.Errorf("--build-record: %w", err)
				}
			}
			if agentBin != "" {
				inputs = append(inputs, bundle.Input{Kind: bundle.KindAgent, Path: agentBin})
				if target != "" {
					osArch := strings.SplitN(target, "/", 2)
					if len(osArch) != 2 {
						return fmt.Errorf("--target %q: want OS/ARCH such as linux/arm64", target)
					}
					opt.TargetOS, opt.TargetArch = osArch[0], osArch[1]
				}
			}
			if backbonePath != "" {
				var man struct {
					Model    string `json:"model"`
					Identity string `json:"identity"`
				}
				data, err := os.ReadFile(backbonePath)
				if err != nil {
					return err
				}
				if err := json.Unmarshal(data, &man); err != nil || man.Model == "" {
					return fmt.Errorf("%s is not a backbone manifest (make one with whisker model cut)", backbonePath)
				}
				// The slot keeps the model under a fixed name.
				if man.Model != bundle.FileNames[bundle.KindBackbone] {
					return fmt.Errorf("%s names its model %q; bundles carry it as %q: cut it with -o .../%s",
						backbonePath, man.Model, bundle.FileNames[bundle.KindBackbone], bundle.FileNames[bundle.KindBackbone])
				}
				opt.Backbone = man.Identity
				inputs = append(inputs,
					bundle.Input{Kind: bundle.KindBackbone, Path: filepath.Join(filepath.Dir(backbonePath), man.Model)},
					bundle.Input{Kind: bundle.KindBackboneManifest, Path: backbonePath})
			}
			if headPath != "" {
				inputs = append(inputs, bundle.Input{Kind: bundle.KindHead, Path: headPath})
			}
			if len(inputs) == 0 {
				return fmt.Errorf("nothing to pack: give --agent, --backbone and/or --head")
			}
			tmp := out + ".tmp"
			f, err := os.Create(tmp)
			if err != nil {
				return err
			}
			m, err := bundle.Create(f, inputs, opt)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				os.Remove(tmp)
				return err
			}
			if err := os.Rename(tmp, out); err != nil {
				return err
			}
			atomicfile.SyncDir(filepath.Dir(out))
			sha, _ := bundle.FileSHA256(out)
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "wrote %s: version %s", out, m.Version)
			if m.Target.OS != "" {
				fmt.Fprintf(w, " for %s/%s", m.Target.OS, m.Target.Arch)
			}
			fmt.Fprintf(w, "\n  sha256 %s\n", sha)
			for _, f := range m.Files {
				fmt.Fprintf(w, "  %-24s %-18s %10d bytes\n", f.Name, f.Kind, f.Size)
			}
			return nil
		},
	}
	f := create.Flags()
	f.StringVar(&agentBin, "agent", "", "agent binary to include")
	f.StringVar(&backbonePath, "backbone", "", "backbone manifest to include (with its model, which must be named backbone.tflite)")
	f.StringVar(&headPath, "head", "", "head file to include")
	f.StringVar(&key, "key", "", "private key (from whisker keys gen)")
	f.StringVar(&version, "version", "", "version the device runs after installing, MAJOR.MINOR.PATCH")
	f.StringVar(&minAgent, "min-agent-version", "", "oldest agent that may install it")
	f.StringVar(&target, "target", "", "OS/ARCH of the agent binary (default this machine's)")
	f.StringVar(&notes, "notes", "", "free text carried in the manifest")
	f.StringVar(&record, "build-record", "", "the agent binary's build record (JSON, as make writes it beside the binary)")
	f.StringVarP(&out, "output", "o", "", "bundle file to write")
	for _, name := range []string{"key", "version", "output"} {
		_ = create.MarkFlagRequired(name)
	}

	var pubs []string
	verify := &cobra.Command{
		Use:   "verify FILE --pub KEY.pub",
		Short: "Check a bundle as a device would, and print its manifest",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			keys, err := bundle.LoadPublicKeys(pubs)
			if err != nil {
				return err
			}
			dir, err := os.MkdirTemp("", "whisker-verify-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(dir)
			v, err := bundle.Extract(args[0], dir, bundle.CheckOptions{Trusted: keys, AnyTarget: true})
			if err != nil {
				return err
			}
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent("", "  ")
			fmt.Fprintf(cmd.OutOrStdout(), "ok: signed by key %s\n", v.KeyID)
			return enc.Encode(v.Manifest)
		},
	}
	verify.Flags().StringSliceVar(&pubs, "pub", nil, "trusted public key(s)")
	cmd.AddCommand(create, verify)
	return cmd
}
