package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/whiskercam/whisker/firmware/model"
	"github.com/whiskercam/whisker/internal/atomicfile"
)

func modelCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "model",
		Short: "Inspect and edit TensorFlow Lite models",
	}
	cmd.AddCommand(modelInspectCmd(), modelCutCmd(), modelCheckCmd(), modelReferenceCmd())
	return cmd
}

func modelInspectCmd() *cobra.Command {
	var all, asJSON bool
	cmd := &cobra.Command{
		Use:   "inspect FILE",
		Short: "Print a model's inputs, outputs, operators and tensors",
		Long: `Print a TensorFlow Lite model's inputs, outputs, operators and tensors
(name, type, shape, quantisation) as tables. The file is checked first: a
corrupt or foreign file gives an error that says what is wrong.`,
		Example: "  whisker model inspect .deps/models/ssd_mobilenetv2_oidv4_fp16.tflite | less",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			info, err := model.Inspect(data)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(info)
			}
			return info.WriteTable(cmd.OutOrStdout(), all)
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "list constant tensors (weights) too")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON instead of tables")
	return cmd
}

func modelCutCmd() *cobra.Command {
	var (
		tensor, pool, out, pixelRange, color, resize string
		detect                                       bool
		labels, anchors                              string
		also, maps                                   []string
		inputSize                                    int
	)
	cmd := &cobra.Command{
		Use:   "cut IN --tensor NAME -o OUT",
		Short: "Cut a model at a tensor to make a feature extractor (backbone)",
		Long: `Write a new model whose single output is the named tensor, optionally
pooled over height and width, keeping only the operators that tensor needs.
A manifest (OUT without extension + .manifest.json) is written beside it
with the source's sha256, the cut tensor, the input shape and type, the
pixel normalisation and the embedding size; Whisker loads backbones through
their manifest.

NAME is a tensor name or a prefix that only one tensor name starts with
(see 'whisker model inspect IN'). Operators whose options the tool cannot
carry over are refused by name.

With --detect, the model keeps the detector's own outputs (SSD box
encodings and class logits) and adds the feature map un-pooled as a last
output, so that one run serves detection and embedding; Whisker pools the
map (--pool) over the frame or over a detected box. --labels names the
classes and --anchors the anchor layout, both recorded in the manifest.

--also pools more tensors (earlier feature maps) the same way and
concatenates them after NAME into one feature vector: features from several
depths. --map appends a feature map whole (flattened) after them, for a
head that trains the network's last layers on each sample's map.
--input-size gives the input another size (square; the trunk is
fully convolutional) and infers every shape again. Both make features of a
new backbone identity.`,
		Example: `  whisker model cut ssd.tflite --tensor FeatureExtractor/MobilenetV2/Conv_1/Relu6 \
      --pool avg --range=-1,1 -o backbone.tflite
  whisker model cut ssd.tflite --tensor FeatureExtractor/MobilenetV2/Conv_1/Relu6 \
      --detect --labels oidv4_labelmap.txt --pool avg --range=-1,1 -o pets.tflite
  whisker model cut ssd.tflite --tensor FeatureExtractor/MobilenetV2/Conv_1/Relu6 \
      --also FeatureExtractor/MobilenetV2/expanded_conv_13/expand/Relu6 --input-size 448 -o wide.tflite`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := model.ParsePool(pool)
			if err != nil {
				return err
			}
			lo, hi, err := model.ParseRange(pixelRange)
			if err != nil {
				return err
			}
			if color != "RGB" && color != "BGR" {
				return fmt.Errorf("--color %q: want RGB or BGR", color)
			}
			if out == "" {
				return fmt.Errorf("-o OUT is required")
			}
			data, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			pre := model.RangePreprocess(lo, hi)
			pre.ColorOrder = color
			pre.Resize = resize
			var res *model.CutResult
			var man *model.Manifest
			if detect && (len(also)+len(maps) > 0 || inputSize != 0) {
				return fmt.Errorf("--detect keeps the detector's input size and a single feature map: no --also, --map or --input-size")
			}
			if detect {
				if labels == "" {
					return fmt.Errorf("--detect needs --labels (the detector's label map, background first)")
				}
				names, err := model.ReadLabels(labels)
				if err != nil {
					return err
				}
				dc, err := model.CutDetector(data, model.DetectorOptions{
					Tensor: tensor, Pool: p, Labels: names, Anchors: anchors, BoxScales: [4]float32{10, 10, 5, 5},
				})
				if err != nil {
					return fmt.Errorf("cut %s: %w", args[0], err)
				}
				res = dc.CutResult
				man = model.NewDetectorManifest(dc, out, args[0], data, p, pre)
			} else {
				res, err = model.Cut(data, model.CutOptions{Tensor: tensor, Pool: p, Also: also, Maps: maps, InputHeight: inputSize, InputWidth: inputSize})
				if err != nil {
					return fmt.Errorf("cut %s: %w", args[0], err)
				}
				man = model.NewManifest(res, out, args[0], data, p, pre)
			}
			if err := man.Validate(); err != nil {
				return fmt.Errorf("cut %s: the result is not usable as a backbone: %w", args[0], err)
			}
			if err := atomicfile.Write(out, res.Model, 0o644); err != nil {
				return err
			}
			mpath := model.ManifestPath(out)
			if err := man.Write(mpath); err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "cut at     %s %v\n", res.Tensor, res.TensorShape)
			for i, a := range res.Also {
				fmt.Fprintf(w, "also       %s (pooled, %d values)\n", a, res.Parts[i+1])
			}
			for i, a := range res.Maps {
				fmt.Fprintf(w, "map        %s (whole, %d values)\n", a, res.Parts[len(res.Also)+i+1])
			}
			fmt.Fprintf(w, "kept       %d operators (dropped %d", res.KeptOps, res.DroppedOps)
			if res.DroppedSigs > 0 {
				fmt.Fprintf(w, ", and %d signature(s) that named the old outputs", res.DroppedSigs)
			}
			fmt.Fprintln(w, ")")
			fmt.Fprintf(w, "input      %s %s %v\n", res.Input.Name, res.Input.Type, res.Input.Shape)
			if man.Detection != nil {
				fmt.Fprintf(w, "detection  %s, %s (%d classes, anchors %s)\n", man.Detection.Boxes, man.Detection.Scores, len(man.Detection.Labels), man.Detection.Anchors)
				fmt.Fprintf(w, "output     %s %s %v (pooled %s by Whisker)\n", res.Output.Name, res.Output.Type, res.Output.Shape, p)
			} else {
				fmt.Fprintf(w, "output     %s %s %v (pool %s)\n", res.Output.Name, res.Output.Type, res.Output.Shape, p)
			}
			fmt.Fprintf(w, "wrote      %s (%d bytes)\n", out, len(res.Model))
			fmt.Fprintf(w, "manifest   %s (identity %s)\n", mpath, man.Identity)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&tensor, "tensor", "", "tensor to cut at (name or unique prefix)")
	f.StringVar(&pool, "pool", "avg", "pooling over height and width: avg, max or none")
	f.StringVarP(&out, "output", "o", "", "where to write the new model")
	f.StringVar(&pixelRange, "range", "-1,1", "pixel range the model expects, LO,HI (recorded in the manifest)")
	f.StringVar(&color, "color", "RGB", "colour order the model expects: RGB or BGR")
	f.StringVar(&resize, "resize", "stretch", "how frames are fitted to the input: stretch, letterbox or crop")
	f.StringArrayVar(&also, "also", nil, "another tensor to pool and concatenate after --tensor (repeatable)")
	f.StringArrayVar(&maps, "map", nil, "a feature map to append whole (flattened) after the pooled tensors (repeatable)")
	f.IntVar(&inputSize, "input-size", 0, "give the input this height and width in pixels (0: the source's)")
	f.BoolVar(&detect, "detect", false, "keep the detector's outputs and add the un-pooled feature map (one run for both)")
	f.StringVar(&labels, "labels", "", "with --detect: the label map, one class per line, background first")
	f.StringVar(&anchors, "anchors", "ssd_mobilenet_v2_300", "with --detect: the anchor layout the detector was trained with")
	_ = cmd.MarkFlagRequired("tensor")
	return cmd
}

func modelCheckCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "check MANIFEST",
		Short: "Check that a backbone manifest and its model match and load",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			man, _, err := model.LoadBackbone(args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: ok (identity %s, input %v, embedding %d)\n", args[0], man.Identity, man.Input.Shape, man.Embedding)
			return nil
		},
	}
}
