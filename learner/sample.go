package learner

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"
	"unicode/utf8"
)

// Sample is one labelled frame: its feature vector (with the identity of
// the backbone that computed it) and a small JPEG of the frame, kept so the
// sample can be re-embedded when the backbone changes.
type Sample struct {
	ID        uint64
	Label     string
	Backbone  string
	Time      time.Time
	Source    string // where it came from: "sighting:ID", "image", "import:FILE", "shared:CAMERA:ID"
	RequestID string // the request that added it, for idempotent retries
	Features  []float32
	JPEG      []byte
}

// sampleVersion is the on-disk encoding version of a sample.
const sampleVersion = 1

// Limits on decoded samples; a record over them is corrupt.
const (
	maxStringLen  = 4096
	maxFeatureDim = 1 << 20
	maxJPEGLen    = 16 << 20
)

// ErrCorrupt is returned for stored records that do not decode.
var ErrCorrupt = errors.New("corrupt record")

// encode lays a sample out as: 'W' 'S' version, then label, backbone,
// source and request id as uvarint-length strings, the time as int64 unix
// nanoseconds, the feature count as uvarint and the features as
// little-endian float32, then the JPEG as a uvarint-length byte string.
func (s *Sample) encode() []byte {
	n := 3 + 4*binary.MaxVarintLen64 + len(s.Label) + len(s.Backbone) + len(s.Source) + len(s.RequestID) +
		8 + binary.MaxVarintLen64 + 4*len(s.Features) + binary.MaxVarintLen64 + len(s.JPEG)
	b := make([]byte, 0, n)
	b = append(b, 'W', 'S', sampleVersion)
	for _, str := range []string{s.Label, s.Backbone, s.Source, s.RequestID} {
		b = binary.AppendUvarint(b, uint64(len(str)))
		b = append(b, str...)
	}
	b = binary.LittleEndian.AppendUint64(b, uint64(s.Time.UnixNano()))
	b = binary.AppendUvarint(b, uint64(len(s.Features)))
	for _, f := range s.Features {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(f))
	}
	b = binary.AppendUvarint(b, uint64(len(s.JPEG)))
	b = append(b, s.JPEG...)
	return b
}

type reader struct {
	b   []byte
	err error
}

func (r *reader) fail(format string, a ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, a...))
	}
}

func (r *reader) uvarint(what string, limit uint64) uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail("bad %s length", what)
		return 0
	}
	if v > limit {
		r.fail("%s length %d over %d", what, v, limit)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) bytes(what string, limit uint64) []byte {
	n := r.uvarint(what, limit)
	if r.err != nil {
		return nil
	}
	if uint64(len(r.b)) < n {
		r.fail("%s truncated", what)
		return nil
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

func (r *reader) str(what string) string {
	b := r.bytes(what, maxStringLen)
	if r.err == nil && !utf8.Valid(b) {
		r.fail("%s is not UTF-8", what)
	}
	return string(b)
}

// decodeSample parses a stored sample; the JPEG is copied only when
// withJPEG is set (training needs only the features).
func decodeSample(id uint64, b []byte, withJPEG bool) (Sample, error) {
	var s Sample
	if len(b) < 3 || b[0] != 'W' || b[1] != 'S' {
		return s, fmt.Errorf("%w: sample %d has no header", ErrCorrupt, id)
	}
	if b[2] != sampleVersion {
		return s, fmt.Errorf("%w: sample %d has encoding version %d, want %d", ErrCorrupt, id, b[2], sampleVersion)
	}
	r := &reader{b: b[3:]}
	s.ID = id
	s.Label = r.str("label")
	s.Backbone = r.str("backbone")
	s.Source = r.str("source")
	s.RequestID = r.str("request id")
	if r.err == nil {
		if len(r.b) < 8 {
			r.fail("time truncated")
		} else {
			s.Time = time.Unix(0, int64(binary.LittleEndian.Uint64(r.b))).UTC()
			r.b = r.b[8:]
		}
	}
	dim := r.uvarint("features", maxFeatureDim)
	if r.err == nil {
		if uint64(len(r.b)) < 4*dim {
			r.fail("features truncated")
		} else {
			s.Features = make([]float32, dim)
			for i := range s.Features {
				s.Features[i] = math.Float32frombits(binary.LittleEndian.Uint32(r.b[4*i:]))
			}
			r.b = r.b[4*dim:]
		}
	}
	jpeg := r.bytes("jpeg", maxJPEGLen)
	if r.err == nil && len(r.b) != 0 {
		r.fail("%d trailing bytes", len(r.b))
	}
	if r.err != nil {
		return Sample{}, fmt.Errorf("sample %d: %w", id, r.err)
	}
	if withJPEG {
		s.JPEG = append([]byte(nil), jpeg...)
	}
	return s, nil
}

// head is what decodeHead reads of a stored sample.
type head struct {
	label, backbone, source string
	dim                     int
}

// decodeHead reads a stored sample's label, backbone identity, source and
// feature count, for counting without decoding vectors.
func decodeHead(id uint64, b []byte) (head, error) {
	if len(b) < 3 || b[0] != 'W' || b[1] != 'S' || b[2] != sampleVersion {
		return head{}, fmt.Errorf("%w: sample %d has no valid header", ErrCorrupt, id)
	}
	r := &reader{b: b[3:]}
	var h head
	h.label = r.str("label")
	h.backbone = r.str("backbone")
	h.source = r.str("source")
	r.str("request id")
	if r.err == nil {
		if len(r.b) < 8 {
			r.fail("time truncated")
		} else {
			r.b = r.b[8:]
		}
	}
	h.dim = int(r.uvarint("features", maxFeatureDim))
	if r.err != nil {
		return head{}, fmt.Errorf("sample %d: %w", id, r.err)
	}
	return h, nil
}
