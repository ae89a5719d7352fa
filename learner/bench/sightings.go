package bench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"

	"github.com/whiskercam/whisker/camera/frame"

	"github.com/whiskercam/whisker/camera"
	"github.com/whiskercam/whisker/internal/atomicfile"
	"github.com/whiskercam/whisker/learner/embedder"
)

// Sighting is what the agent's pipeline makes of one frame: a pet's crop
// when the detector found a cat or dog, else the whole frame.
type Sighting struct {
	Photo      int // index into the photo set
	Kind       string
	Individual string
	View       int
	// Detected is true for a crop the detector found (a cat or dog box);
	// false for a whole frame in which it found none. For an individual,
	// only the crop of the box on the individual counts: a view whose
	// individual the detector missed gives a whole-frame sighting.
	Detected bool
	Features []float32
}

// SightingConfig says how many views of each photograph are made.
type SightingConfig struct {
	// Deps is the folder `make deps` fills.
	Deps string
	// PetViews, OtherViews and SceneViews are the random views of each
	// individual, other animal and scene (defaults 40, 3, 3).
	PetViews, OtherViews, SceneViews int
	// Seed draws the views.
	Seed uint64
}

func (c SightingConfig) withDefaults() SightingConfig {
	if c.PetViews <= 0 {
		c.PetViews = 40
	}
	if c.OtherViews <= 0 {
		c.OtherViews = 3
	}
	if c.SceneViews <= 0 {
		c.SceneViews = 3
	}
	if c.Seed == 0 {
		c.Seed = 17
	}
	return c
}

// frameSource yields the frames of one photo-set entry: the still
// photograph, or every n-th frame of a video.
func frames(deps string, p Photo) ([]frame.Frame, error) {
	path := filepath.Join(deps, p.Path)
	if !isVideo(p.Path) {
		f, err := readPhoto(path)
		if err != nil {
			return nil, err
		}
		return []frame.Frame{f}, nil
	}
	src, err := camera.OpenSource(path, camera.SourceOptions{})
	if err != nil {
		return nil, err
	}
	defer src.Close()
	var out []frame.Frame
	every := max(p.Every, 1)
	for i := 0; ; i++ {
		var f frame.Frame
		err := src.Read(&f)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if i%every == 0 {
			out = append(out, f)
		}
		if len(out) > 1000 {
			return nil, fmt.Errorf("%s: more than 1000 frames taken; raise Every", path)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no frames", path)
	}
	return out, nil
}

// backgrounds reads the stills of a role's scenes, for pasting cut-out
// animals onto.
func backgrounds(deps string, ps []Photo, role string) ([]frame.Frame, error) {
	var out []frame.Frame
	for _, p := range ps {
		if p.Role != role || p.Kind != KindScene {
			continue
		}
		fs, err := frames(deps, p)
		if err != nil {
			return nil, err
		}
		out = append(out, fs...)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no %s scenes to paste animals onto", role)
	}
	return out, nil
}

// pasteOnto pastes a cutout onto a random background at 25-70% of its
// height, at a random place, and returns the frame and the animal's box.
func pasteOnto(rng *rand.Rand, bgs []frame.Frame, c *Cutout) (frame.Frame, image.Rectangle) {
	bg := bgs[rng.IntN(len(bgs))]
	f := bg.Clone()
	h := int(float64(f.Height) * (0.25 + 0.45*rng.Float64()))
	w := h * c.W / c.H
	if w > f.Width*9/10 {
		w = f.Width * 9 / 10
		h = w * c.H / c.W
	}
	w, h = max(w, 8), max(h, 8)
	x := rng.IntN(max(f.Width-w, 0) + 1)
	y := rng.IntN(max(f.Height-h, 0) + 1)
	return f, paste(&f, c, x, y, w, h)
}

// Progress reports work done.
type SightingProgress func(done, total int, what string)

// MakeSightings runs the pipeline on random views of a role's photographs.
// Each individual's views keep the animal in view (its box is the best
// cat or dog the detector finds in the photograph, the whole photograph
// when it finds none, or where it was pasted); other photographs' views
// are random parts of them.
func MakeSightings(ctx context.Context, ps []Photo, role string, det *embedder.Detector, cfg SightingConfig, progress SightingProgress) ([]Sighting, error) {
	cfg = cfg.withDefaults()
	var bgs []frame.Frame
	total := 0
	for _, p := range ps {
		if p.Role != role {
			continue
		}
		if p.Cutout && bgs == nil {
			var err error
			if bgs, err = backgrounds(cfg.Deps, ps, role); err != nil {
				return nil, err
			}
		}
		total++
	}
	var out []Sighting
	done := 0
	for pi, p := range ps {
		if p.Role != role {
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		rng := rand.New(rand.NewPCG(cfg.Seed, uint64(pi)))
		views := cfg.SceneViews
		switch {
		case p.Individual != "":
			views = cfg.PetViews
		case p.Kind == KindOther:
			views = cfg.OtherViews
		}
		var stills []frame.Frame
		var cut *Cutout
		var err error
		if p.Cutout {
			cut, err = readCutout(filepath.Join(cfg.Deps, p.Path))
		} else {
			stills, err = frames(cfg.Deps, p)
		}
		if err != nil {
			return nil, err
		}
		if isVideo(p.Path) {
			views = 1 // the frames are its views
		}
		subject := map[int]image.Rectangle{}
		if p.Individual != "" && !p.Cutout {
			_, found, err := det.Frame(&stills[0])
			if err != nil {
				return nil, err
			}
			// The animal's box: the best cat or dog the detector finds, or
			// the whole photograph when it finds none (the views then
			// show how often it misses this animal).
			subject[0] = image.Rect(0, 0, stills[0].Width, stills[0].Height)
			if len(found) > 0 {
				subject[0] = found[0].Box
			}
		}
		n := 0
		for si := range max(len(stills), 1) {
			for v := range views {
				var src frame.Frame
				var box image.Rectangle
				if cut != nil {
					src, box = pasteOnto(rng, bgs, cut)
				} else {
					src, box = stills[si], subject[si]
				}
				spec := randomView(rng, src.Width, src.Height, box)
				f, sub, err := spec.render(&src, box)
				if err != nil {
					return nil, fmt.Errorf("%s view %d: %w", p.Path, v, err)
				}
				whole, found, err := det.Frame(&f)
				if err != nil {
					return nil, fmt.Errorf("%s view %d: %w", p.Path, v, err)
				}
				base := Sighting{Photo: pi, Kind: p.Kind, Individual: p.Individual, View: n}
				n++
				if p.Individual != "" || cut != nil {
					// The sighting of the animal: the found box that covers
					// it best, else (missed) the whole frame.
					best, bestIoU := -1, 0.3
					for i, fd := range found {
						if iou := rectIoU(fd.Box, sub); iou > bestIoU {
							best, bestIoU = i, iou
						}
					}
					s := base
					if best >= 0 {
						s.Detected, s.Features = true, found[best].Features
					} else {
						s.Features = whole
					}
					out = append(out, s)
					if cut != nil && p.Individual == "" && best < 0 {
						// A reference animal the detector misses is still
						// seen as a crop by a device with other settings.
						c, err := det.Region(&f, camera.Expand(sub, 0.1, f.Width, f.Height))
						if err != nil {
							return nil, err
						}
						out = append(out, Sighting{Photo: pi, Kind: p.Kind, View: n, Detected: true, Features: c})
						n++
					}
					continue
				}
				if len(found) == 0 {
					s := base
					s.Features = whole
					out = append(out, s)
					continue
				}
				for _, fd := range found {
					s := base
					s.Detected, s.Features = true, fd.Features
					out = append(out, s)
				}
			}
		}
		done++
		if progress != nil {
			progress(done, total, p.Path)
		}
	}
	return out, nil
}

func rectIoU(a, b image.Rectangle) float64 {
	in := a.Intersect(b)
	if in.Empty() {
		return 0
	}
	ia := float64(in.Dx() * in.Dy())
	return ia / (float64(a.Dx()*a.Dy()) + float64(b.Dx()*b.Dy()) - ia)
}

const sightingsMagic = "WSGT\x01"

// encodeSightings lays out: magic, identity, count, dimension (uvarints),
// then per sighting: photo index, view, detected (uvarints), kind and
// individual (uvarint length + bytes), the vector as little-endian
// float32; then the sha256 of everything before it.
func encodeSightings(identity string, s []Sighting) []byte {
	var b bytes.Buffer
	w := bufio.NewWriter(&b)
	w.WriteString(sightingsMagic)
	str := func(v string) {
		w.Write(binary.AppendUvarint(nil, uint64(len(v))))
		w.WriteString(v)
	}
	uv := func(v uint64) { w.Write(binary.AppendUvarint(nil, v)) }
	str(identity)
	uv(uint64(len(s)))
	dim := 0
	if len(s) > 0 {
		dim = len(s[0].Features)
	}
	uv(uint64(dim))
	for _, x := range s {
		uv(uint64(x.Photo))
		uv(uint64(x.View))
		d := uint64(0)
		if x.Detected {
			d = 1
		}
		uv(d)
		str(x.Kind)
		str(x.Individual)
		for _, v := range x.Features {
			var buf [4]byte
			binary.LittleEndian.PutUint32(buf[:], math.Float32bits(v))
			w.Write(buf[:])
		}
	}
	w.Flush()
	sum := sha256.Sum256(b.Bytes())
	b.Write(sum[:])
	return b.Bytes()
}

func decodeSightings(data []byte, identity string) ([]Sighting, error) {
	if len(data) < len(sightingsMagic)+sha256.Size || string(data[:len(sightingsMagic)]) != sightingsMagic {
		return nil, errors.New("not a sightings cache of this version")
	}
	body, sum := data[:len(data)-sha256.Size], data[len(data)-sha256.Size:]
	if got := sha256.Sum256(body); !bytes.Equal(got[:], sum) {
		return nil, errors.New("checksum mismatch")
	}
	r := bytes.NewReader(body[len(sightingsMagic):])
	uv := func(limit uint64) (uint64, error) {
		v, err := binary.ReadUvarint(r)
		if err == nil && v > limit {
			err = fmt.Errorf("value %d over %d", v, limit)
		}
		return v, err
	}
	str := func() (string, error) {
		n, err := uv(4096)
		if err != nil {
			return "", err
		}
		b := make([]byte, n)
		_, err = io.ReadFull(r, b)
		return string(b), err
	}
	id, err := str()
	if err != nil {
		return nil, err
	}
	if id != identity {
		return nil, fmt.Errorf("computed by backbone %s, not %s", id, identity)
	}
	n, err := uv(1 << 20)
	if err != nil {
		return nil, err
	}
	dim, err := uv(1 << 16)
	if err != nil {
		return nil, err
	}
	out := make([]Sighting, n)
	for i := range out {
		var s Sighting
		var p, v, d uint64
		if p, err = uv(1 << 20); err == nil {
			if v, err = uv(1 << 20); err == nil {
				d, err = uv(1)
			}
		}
		if err == nil {
			if s.Kind, err = str(); err == nil {
				s.Individual, err = str()
			}
		}
		if err != nil {
			return nil, fmt.Errorf("sighting %d: %w", i, err)
		}
		s.Photo, s.View, s.Detected = int(p), int(v), d == 1
		s.Features = make([]float32, dim)
		if err := binary.Read(r, binary.LittleEndian, s.Features); err != nil {
			return nil, fmt.Errorf("sighting %d: %w", i, err)
		}
		out[i] = s
	}
	if r.Len() != 0 {
		return nil, fmt.Errorf("%d trailing bytes", r.Len())
	}
	return out, nil
}

// CachedSightings returns the sightings of a role's photographs, from the
// cache in cacheDir (keyed by backbone, photo set and view settings) or
// computed now and cached.
func CachedSightings(ctx context.Context, ps []Photo, role string, det *embedder.Detector, cfg SightingConfig, cacheDir string, progress SightingProgress) ([]Sighting, error) {
	cfg = cfg.withDefaults()
	key := fmt.Sprintf("sightings-%s-%s-%s-v%d-%d-%d-s%d.bin", unsafeChars.ReplaceAllString(det.Identity(), "_"), role,
		photoSetKey(ps), cfg.PetViews, cfg.OtherViews, cfg.SceneViews, cfg.Seed)
	path := filepath.Join(cacheDir, key)
	if data, err := os.ReadFile(path); err == nil {
		s, err := decodeSightings(data, det.Identity())
		if err != nil {
			return nil, fmt.Errorf("sightings cache %s: %w (delete it to recompute)", path, err)
		}
		return s, nil
	}
	s, err := MakeSightings(ctx, ps, role, det, cfg, progress)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return nil, err
	}
	if err := atomicfile.Write(path, encodeSightings(det.Identity(), s), 0o644); err != nil {
		return nil, err
	}
	return s, nil
}
