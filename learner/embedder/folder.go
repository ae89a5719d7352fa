package embedder

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/whiskercam/whisker/camera"
)

// ImageFile is one file to embed, with the label it gets.
type ImageFile struct {
	Path  string // as found
	Rel   string // relative to the folder given
	Label string
}

// Skipped is a file left out, and why.
type Skipped struct {
	Path   string
	Reason string
}

// List finds the files of a labelled folder. With a label, every file
// under dir (at any depth) gets it. Without, dir holds one folder per label
// (dir/Tigger/..., dir/Misty/...), and files directly in dir are skipped.
// Hidden files and folders (names starting with a dot) are passed over
// silently. Files are listed in name order.
func List(dir, label string) ([]ImageFile, []Skipped, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, nil, err
	}
	if !st.IsDir() {
		return nil, nil, fmt.Errorf("%s is not a folder", dir)
	}
	var files []ImageFile
	var skipped []Skipped
	err = filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			skipped = append(skipped, Skipped{path, err.Error()})
			if e != nil && e.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if path == dir {
			return nil
		}
		if strings.HasPrefix(e.Name(), ".") {
			if e.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if e.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(dir, path)
		l := label
		if l == "" {
			first, _, nested := strings.Cut(filepath.ToSlash(rel), "/")
			if !nested {
				skipped = append(skipped, Skipped{path, "not in a label folder (use --label, or put it in DIR/LABEL/)"})
				return nil
			}
			l = first
		}
		if !e.Type().IsRegular() {
			skipped = append(skipped, Skipped{path, "not a regular file"})
			return nil
		}
		files = append(files, ImageFile{Path: path, Rel: rel, Label: l})
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Rel < files[j].Rel })
	return files, skipped, nil
}

// Embedded is one embedded image file.
type Embedded struct {
	Features []float32
	// JPEG is the image scaled down to the snapshot size, as the agent
	// stores with each sample.
	JPEG []byte
	// SHA256 is the file's checksum, hex.
	SHA256 string
}

// EmbedFile reads and embeds an image file, and makes its snapshot JPEG
// (longer side at most snapshot pixels; none when snapshot is 0).
func (e *Embedder) EmbedFile(path string, snapshot int) (Embedded, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Embedded{}, err
	}
	return e.EmbedImage(data, snapshot)
}

// EmbedImage embeds an encoded image (JPEG, PNG, ...), as EmbedFile does.
func (e *Embedder) EmbedImage(data []byte, snapshot int) (Embedded, error) {
	f, err := camera.DecodeImage(data)
	if err != nil {
		return Embedded{}, err
	}
	x, err := e.Embed(&f)
	if err != nil {
		return Embedded{}, fmt.Errorf("embed: %w", err)
	}
	out := Embedded{Features: x, SHA256: SHA256(data)}
	if snapshot > 0 {
		if out.JPEG, err = camera.EncodeJPEG(&f, snapshot, 85); err != nil {
			return Embedded{}, err
		}
	}
	return out, nil
}

// SHA256 is the hex checksum of data.
func SHA256(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}
