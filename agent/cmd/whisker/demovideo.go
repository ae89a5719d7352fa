package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/whiskercam/whisker/internal/demo"
)

func demoVideoCmd() *cobra.Command {
	var photos, out string
	cmd := &cobra.Command{
		Use:   "demo-video --photos DIR -o FILE",
		Short: "Compose the demo video from the test photographs",
		Long: `Compose the demo video (MJPEG AVI, 640x480, 10 fps, 33 s) in which a cat
(chelsea.png) and a dog (dog.jpg) come and go over a lawn (grass.png),
drifting so that consecutive frames differ. DIR is where 'make deps' put
the photographs.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := demo.Write(out, photos)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s: %d frames at %d fps\n", out, n, demo.FPS)
			return nil
		},
	}
	cmd.Flags().StringVar(&photos, "photos", ".deps/testdata", "folder with chelsea.png, dog.jpg and grass.png")
	cmd.Flags().StringVarP(&out, "output", "o", ".deps/demo/pets.avi", "video file to write")
	return cmd
}
