package learner

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"unicode/utf8"

	"github.com/whiskercam/whisker/internal/atomicfile"
)

// Reference is a set of feature vectors of things that are none of a
// household's pets: other cats and dogs, other animals, scenes without
// animals. It is computed once per backbone from public photographs (at
// `make deps`) and stored beside the backbone. The head learns it as one
// more class, Background, so that a stranger or an empty scene has
// somewhere to go other than the nearest pet.
type Reference struct {
	Backbone string
	Dim      int
	// Kinds says what each vector shows ("cat", "dog", "other", "scene").
	Kinds []string
	X     [][]float32
}

// Background is the name of the head's class learnt from the reference
// set. It is never a label: a sighting it wins is unknown (WhyBackground).
const Background = "(other animals and scenes)"

// Limits of a decoded reference set.
const (
	maxReference     = 1 << 16
	referenceVersion = 1
	referenceMagic   = "WREF"
)

// Validate checks a reference set's consistency.
func (r *Reference) Validate() error {
	switch {
	case r.Backbone == "":
		return errors.New("reference set has no backbone identity")
	case r.Dim <= 0 || r.Dim > maxFeatureDim:
		return fmt.Errorf("reference set dimension %d", r.Dim)
	case len(r.X) == 0 || len(r.X) > maxReference:
		return fmt.Errorf("reference set has %d vectors", len(r.X))
	case len(r.Kinds) != len(r.X):
		return fmt.Errorf("reference set has %d kinds for %d vectors", len(r.Kinds), len(r.X))
	}
	for i, x := range r.X {
		if len(x) != r.Dim {
			return fmt.Errorf("reference vector %d has %d values, want %d", i, len(x), r.Dim)
		}
		for _, v := range x {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return fmt.Errorf("reference vector %d has a non-finite value", i)
			}
		}
	}
	return nil
}

// Encode lays the set out compactly: "WREF", version, then the backbone
// identity and the distinct kinds (uvarint-length strings), the count and
// the dimension (uvarints), each dimension's minimum and step (float32),
// each vector's kind index (byte) and values quantised to one byte per
// dimension, and the sha256 of all that. Quantisation error is at most
// half a step: 1/510 of each dimension's range.
func (r *Reference) Encode() ([]byte, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	var kinds []string
	for _, k := range r.Kinds {
		if !slices.Contains(kinds, k) {
			kinds = append(kinds, k)
		}
	}
	if len(kinds) > 255 {
		return nil, errors.New("reference set has more than 255 kinds")
	}
	lo := slices.Clone(r.X[0])
	hi := slices.Clone(r.X[0])
	for _, x := range r.X {
		for j, v := range x {
			lo[j], hi[j] = min(lo[j], v), max(hi[j], v)
		}
	}
	var b bytes.Buffer
	b.WriteString(referenceMagic)
	b.WriteByte(referenceVersion)
	str := func(s string) {
		b.Write(binary.AppendUvarint(nil, uint64(len(s))))
		b.WriteString(s)
	}
	str(r.Backbone)
	b.Write(binary.AppendUvarint(nil, uint64(len(kinds))))
	for _, k := range kinds {
		str(k)
	}
	b.Write(binary.AppendUvarint(nil, uint64(len(r.X))))
	b.Write(binary.AppendUvarint(nil, uint64(r.Dim)))
	step := make([]float32, r.Dim)
	for j := range step {
		step[j] = (hi[j] - lo[j]) / 255
		b.Write(binary.LittleEndian.AppendUint32(nil, math.Float32bits(lo[j])))
		b.Write(binary.LittleEndian.AppendUint32(nil, math.Float32bits(step[j])))
	}
	for i, x := range r.X {
		b.WriteByte(byte(slices.Index(kinds, r.Kinds[i])))
		for j, v := range x {
			q := 0.0
			if step[j] > 0 {
				q = math.Round(float64((v - lo[j]) / step[j]))
			}
			b.WriteByte(byte(min(max(q, 0), 255)))
		}
	}
	sum := sha256.Sum256(b.Bytes())
	b.Write(sum[:])
	return b.Bytes(), nil
}

// DecodeReference parses and validates an encoded reference set.
func DecodeReference(data []byte) (*Reference, error) {
	if len(data) < len(referenceMagic)+1+sha256.Size || string(data[:len(referenceMagic)]) != referenceMagic {
		return nil, errors.New("reference set: not a reference file")
	}
	if v := data[len(referenceMagic)]; v != referenceVersion {
		return nil, fmt.Errorf("reference set: version %d, this build reads %d", v, referenceVersion)
	}
	body, sum := data[:len(data)-sha256.Size], data[len(data)-sha256.Size:]
	if got := sha256.Sum256(body); !bytes.Equal(got[:], sum) {
		return nil, errors.New("reference set: checksum mismatch")
	}
	rd := &reader{b: body[len(referenceMagic)+1:]}
	r := &Reference{Backbone: rd.str("backbone")}
	nk := rd.uvarint("kinds", 255)
	var kinds []string
	for range nk {
		if rd.err != nil {
			break
		}
		kinds = append(kinds, rd.str("kind"))
	}
	n := rd.uvarint("count", maxReference)
	dim := rd.uvarint("dimension", maxFeatureDim)
	if rd.err != nil {
		return nil, fmt.Errorf("reference set: %w", rd.err)
	}
	if uint64(len(rd.b)) != 8*dim+n*(1+dim) {
		return nil, fmt.Errorf("reference set: %d bytes of data for %d vectors of %d values", len(rd.b), n, dim)
	}
	lo, step := make([]float32, dim), make([]float32, dim)
	for j := range lo {
		lo[j] = math.Float32frombits(binary.LittleEndian.Uint32(rd.b[8*j:]))
		step[j] = math.Float32frombits(binary.LittleEndian.Uint32(rd.b[8*j+4:]))
	}
	q := rd.b[8*dim:]
	r.Dim = int(dim)
	r.X = make([][]float32, n)
	r.Kinds = make([]string, n)
	for i := range r.X {
		row := q[uint64(i)*(1+dim):]
		k := int(row[0])
		if k >= len(kinds) {
			return nil, fmt.Errorf("reference set: vector %d has kind %d of %d", i, k, len(kinds))
		}
		r.Kinds[i] = kinds[k]
		x := make([]float32, dim)
		for j := range x {
			x[j] = lo[j] + step[j]*float32(row[1+j])
		}
		r.X[i] = x
	}
	for _, k := range kinds {
		if !utf8.ValidString(k) || k == "" {
			return nil, errors.New("reference set: invalid kind name")
		}
	}
	if err := r.Validate(); err != nil {
		return nil, fmt.Errorf("reference set: %w", err)
	}
	return r, nil
}

// Save writes the set atomically.
func (r *Reference) Save(path string) error {
	data, err := r.Encode()
	if err != nil {
		return fmt.Errorf("save reference set %s: %w", path, err)
	}
	return atomicfile.Write(path, data, 0o644)
}

// maxReferenceFile bounds the reference files LoadReference reads.
const maxReferenceFile = 256 << 20

// LoadReference reads a reference set and checks that it was computed by
// the given backbone (any when backbone is "").
func LoadReference(path, backbone string) (*Reference, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.Size() > maxReferenceFile {
		return nil, fmt.Errorf("%s: %d bytes is over the %d-byte limit", path, st.Size(), maxReferenceFile)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	r, err := DecodeReference(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if backbone != "" && r.Backbone != backbone {
		return nil, fmt.Errorf("%s: computed by backbone %s, running %s", path, r.Backbone, backbone)
	}
	return r, nil
}

// Subset returns the reference vectors at the given indices (sharing
// them).
func (r *Reference) Subset(idx []int) *Reference {
	out := &Reference{Backbone: r.Backbone, Dim: r.Dim, X: make([][]float32, len(idx)), Kinds: make([]string, len(idx))}
	for i, j := range idx {
		out.X[i], out.Kinds[i] = r.X[j], r.Kinds[j]
	}
	return out
}

// ReferencePath is where a backbone's reference set is kept: beside its
// manifest, "NAME.reference" for "NAME.manifest.json".
func ReferencePath(manifestPath string) string {
	const suffix = ".manifest.json"
	if len(manifestPath) > len(suffix) && manifestPath[len(manifestPath)-len(suffix):] == suffix {
		return manifestPath[:len(manifestPath)-len(suffix)] + ".reference"
	}
	return manifestPath + ".reference"
}
