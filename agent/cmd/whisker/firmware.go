package main

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/whiskercam/whisker/agent/ota"
	"github.com/whiskercam/whisker/learner"

	"github.com/spf13/cobra"

	"github.com/whiskercam/whisker/firmware/attest"
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
			if _, err := layout.Signer(); err != nil && !errors.Is(err, update.ErrNoDeviceKey) {
				log.Error("device key unreadable; update reports go unsigned and rollouts will not believe this camera", "path", layout.DeviceKeyPath(), "err", err)
			}
			res, err := layout.BootWith(update.BootOptions{
				Check: bundle.CheckOptions{Trusted: keys}, MaxAttempts: cfg.Update.MaxAttempts, Installed: version,
				Log: func(f string, a ...any) { log.Warn(fmt.Sprintf(f, a...)) },
			})
			if err != nil {
				return fmt.Errorf("choose firmware slot: %w", err)
			}
			if fb := res.Fallback; fb != nil {
				log.Error("firmware fallback: not running the slot that should run", "from", slotLabel(fb.From), "version", fb.Version,
					"running", slotLabel(fb.To), "reason", fb.Reason, "untrusted_keys", strings.Join(fb.UntrustedKeys, ","))
			}
			slot := res.Slot
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
			env := append(os.Environ(), ota.EnvBooted+"=1", ota.EnvSlot+"="+slot)
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
	cmd := &cobra.Command{Use: "keys", Short: "Make the keys that sign update bundles and a camera's update reports; check a key rotation"}
	var out, cfgPath string
	var device bool
	gen := &cobra.Command{
		Use:   "gen -o NAME | gen --device [--config FILE]",
		Short: "Generate an ed25519 key pair: a fleet signing key, or (--device) this camera's report key",
		Long: `Without --device: NAME.key (private, keep it safe) signs update bundles and
NAME.pub goes to the cameras (update.trusted_keys).

With --device, run once on the camera at install: the camera's own key,
with which it signs every step of an update, goes into
state_dir/firmware/device.key (mode 0600, never leaves the camera), and
device.pub beside it names the device. Copy device.pub into the rollout's
device keys directory as DEVICE.pub: a rollout believes that a camera runs
a new version only from a report signed by that key.`,
		Example: `  whisker keys gen -o fleet
  whisker keys gen --device --config /etc/whisker/whisker.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			w := cmd.OutOrStdout()
			if device {
				cfg, _, err := loadConfig(cfgPath)
				if err != nil {
					return err
				}
				layout := update.Layout{Dir: filepath.Join(cfg.StateDir, "firmware")}
				priv, pub := layout.DeviceKeyPath(), layout.DevicePubPath()
				if out != "" {
					priv, pub = out+".key", out+".pub"
				}
				if err := os.MkdirAll(filepath.Dir(priv), 0o755); err != nil {
					return err
				}
				key, err := attest.GenerateDeviceKey(priv, pub, cfg.Device)
				if err != nil {
					return err
				}
				fmt.Fprintf(w, "wrote %s (private, stays on this camera) and %s (key id %s) for device %q\n", priv, pub, bundle.KeyID(key), cfg.Device)
				fmt.Fprintf(w, "enrol it: copy %s to the rollout machine as DEVICE_KEYS_DIR/%s.pub\n", pub, cfg.Device)
				return nil
			}
			if out == "" {
				return fmt.Errorf("-o NAME is required")
			}
			pub, err := bundle.GenerateKeys(out+".key", out+".pub")
			if err != nil {
				return err
			}
			fmt.Fprintf(w, "wrote %s.key (private) and %s.pub (key id %s)\n", out, out, bundle.KeyID(pub))
			fmt.Fprintf(w, "devices trust it with:\n  update:\n    trusted_keys: [/etc/whisker/keys/%s.pub]\n", filepath.Base(out))
			return nil
		},
	}
	gen.Flags().StringVarP(&out, "output", "o", "", "path and base name of the key files")
	gen.Flags().BoolVar(&device, "device", false, "make this camera's report-signing key (in its state directory)")
	gen.Flags().StringVarP(&cfgPath, "config", "c", "", "configuration file (with --device: the device id and state_dir)")

	var without []string
	var checkCfg string
	check := &cobra.Command{
		Use:   "check [--config FILE] [--without OLD.pub]",
		Short: "Say which keys the camera's firmware slots are signed with, and whether boot would run them without some keys",
		Long: `List the keys that sign each part of the running, committed and pending
firmware slots, and verify those slots against update.trusted_keys, less the
keys given with --without. Run it before removing a key from
update.trusted_keys: it fails if the running slot would then not verify,
which would make 'whisker boot' fall back to the installed binary.`,
		Example: `  whisker keys check --config /etc/whisker/whisker.yaml --without /etc/whisker/keys/old.pub`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, _, err := loadConfig(checkCfg)
			if err != nil {
				return err
			}
			keys, err := bundle.LoadPublicKeys(cfg.Update.TrustedKeys)
			if err != nil {
				return fmt.Errorf("update.trusted_keys: %w", err)
			}
			drop, err := bundle.LoadPublicKeys(without)
			if err != nil {
				return err
			}
			keys = slices.DeleteFunc(keys, func(k ed25519.PublicKey) bool {
				return slices.ContainsFunc(drop, func(d ed25519.PublicKey) bool { return d.Equal(k) })
			})
			layout := update.Layout{Dir: filepath.Join(cfg.StateDir, "firmware")}
			return checkKeys(cmd.OutOrStdout(), layout, keys)
		},
	}
	check.Flags().StringSliceVar(&without, "without", nil, "public key(s) about to be removed")
	check.Flags().StringVarP(&checkCfg, "config", "c", "", "configuration file (as for run)")
	cmd.AddCommand(gen, check)
	return cmd
}

// checkKeys prints, for each slot that matters, its parts' signing keys
// and whether it verifies with keys; it fails if the running slot does not.
func checkKeys(w io.Writer, layout update.Layout, keys []ed25519.PublicKey) error {
	st, err := layout.ReadState()
	if err != nil {
		return err
	}
	ids := make([]string, len(keys))
	for i, k := range keys {
		ids[i] = bundle.KeyID(k)
	}
	fmt.Fprintf(w, "trusted keys: %s\n", strings.Join(ids, ", "))
	cur := layout.Current()
	roles := map[string][]string{}
	add := func(slot, role string) {
		if slot != "" {
			roles[slot] = append(roles[slot], role)
		}
	}
	add(cur, "running")
	add(st.Committed, "committed")
	if st.Pending != nil {
		add(st.Pending.Slot, "pending")
	}
	if len(roles) == 0 {
		fmt.Fprintln(w, "no firmware slot in use: the installed binary runs, nothing depends on a key")
		return nil
	}
	slots := make([]string, 0, len(roles))
	for s := range roles {
		slots = append(slots, s)
	}
	sort.Strings(slots)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SLOT\tROLE\tVERSION\tPART\tSIGNED BY\tVERIFIES")
	var failed error
	for _, slot := range slots {
		verr := layout.VerifySlot(slot, bundle.CheckOptions{Trusted: keys})
		ok := "yes"
		if verr != nil {
			ok = "NO: " + verr.Error()
			if slot == cur {
				failed = fmt.Errorf("the running slot %s would not verify, and boot would fall back to the installed binary: roll out a bundle signed by the new key with every part first", slot)
			}
		}
		parts, err := layout.SlotKeys(slot)
		if err != nil {
			return err
		}
		names := make([]string, 0, len(parts))
		for p := range parts {
			names = append(names, p)
		}
		sort.Strings(names)
		for i, p := range names {
			v := ""
			if i == 0 {
				v = ok
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", slot, strings.Join(roles[slot], ","), st.Slots[slot].Version, p, strings.Join(parts[p], ","), v)
		}
	}
	tw.Flush()
	return failed
}

func bundleCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "bundle", Short: "Make and check signed update bundles"}
	var (
		agentBin, backbonePath, headPath, version, minAgent, target, out, notes, downgradeFrom, record string
		keyPaths                                                                                       []string
	)
	create := &cobra.Command{
		Use:   "create --version V --key KEY [--key KEY2] [--agent BIN] [--backbone MANIFEST] [--head HEAD] -o FILE",
		Short: "Pack an agent binary, a backbone (by its manifest) and/or a head into a signed bundle",
		Example: `  whisker bundle create --version 1.3.0 --key fleet.key --agent bin/whisker --target linux/arm64 -o whisker-1.3.0.wsk
  whisker bundle create --version 1.3.1 --key fleet.key --backbone models/backbone.manifest.json -o backbone.wsk
  whisker bundle create --version 1.3.2 --key old.key --key new.key --agent bin/whisker --backbone models/backbone.manifest.json -o rotate.wsk
  whisker bundle create --version 1.2.9 --downgrade-from 1.3.0 --key fleet.key --agent bin/whisker-1.2 -o back.wsk`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var privs []ed25519.PrivateKey
			for _, p := range keyPaths {
				priv, err := bundle.LoadPrivateKey(p)
				if err != nil {
					return err
				}
				privs = append(privs, priv)
			}
			if len(privs) == 0 {
				return errors.New("--key is required")
			}
			var inputs []bundle.Input
			opt := bundle.CreateOptions{Version: version, MinAgentVersion: minAgent, DowngradeFrom: downgradeFrom, Notes: notes,
				Key: privs[0], AlsoKeys: privs[1:]}
			if record != "" {
				var err error
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
				// Its reference set of other animals and scenes, when make
				// deps (or whisker model reference) computed one beside it.
				if ref := learner.ReferencePath(backbonePath); fileExists(ref) {
					inputs = append(inputs, bundle.Input{Kind: bundle.KindBackboneReference, Path: ref})
				}
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
			if m.DowngradeFrom != "" {
				fmt.Fprintf(w, " (a downgrade from %s)", m.DowngradeFrom)
			}
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
	f.StringSliceVar(&keyPaths, "key", nil, "private key (from whisker keys gen); give it twice to sign with an old and a new key")
	f.StringVar(&downgradeFrom, "downgrade-from", "", "make a deliberate downgrade, installed only by cameras that run exactly this version")
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
			fmt.Fprintf(cmd.OutOrStdout(), "ok: signed by key %s\n", strings.Join(v.KeyIDs, ", "))
			return enc.Encode(v.Manifest)
		},
	}
	verify.Flags().StringSliceVar(&pubs, "pub", nil, "trusted public key(s)")

	var signKey, signOut string
	var signPubs []string
	sign := &cobra.Command{
		Use:   "sign FILE --key NEW.key --pub TRUSTED.pub -o OUT",
		Short: "Add a signature by another key to a bundle, after checking it completely",
		Long: `Write a copy of the bundle whose manifest is signed by --key as well. The
bundle must first verify against --pub (its signature and every file), so
that a second signer vouches only for what they checked. Cameras that trust
either key install the result; see the key rotation in docs/firmware.md.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			keys, err := bundle.LoadPublicKeys(signPubs)
			if err != nil {
				return err
			}
			priv, err := bundle.LoadPrivateKey(signKey)
			if err != nil {
				return err
			}
			tmp := signOut + ".tmp"
			f, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
			if err != nil {
				return err
			}
			v, err := bundle.AddSignature(args[0], f, priv, bundle.CheckOptions{Trusted: keys, AnyTarget: true})
			if err == nil {
				err = f.Sync()
			}
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				os.Remove(tmp)
				return err
			}
			if err := os.Rename(tmp, signOut); err != nil {
				return err
			}
			atomicfile.SyncDir(filepath.Dir(signOut))
			sha, _ := bundle.FileSHA256(signOut)
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s: version %s, checked with key %s, now also signed by key %s\n  sha256 %s\n",
				signOut, v.Manifest.Version, strings.Join(v.KeyIDs, ", "), bundle.KeyID(priv.Public().(ed25519.PublicKey)), sha)
			return nil
		},
	}
	sign.Flags().StringVar(&signKey, "key", "", "the private key to add a signature with")
	sign.Flags().StringSliceVar(&signPubs, "pub", nil, "public key(s) the bundle must already verify with")
	sign.Flags().StringVarP(&signOut, "output", "o", "", "bundle file to write")
	for _, name := range []string{"key", "pub", "output"} {
		_ = sign.MarkFlagRequired(name)
	}
	cmd.AddCommand(create, verify, sign)
	return cmd
}

func fileExists(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular()
}
