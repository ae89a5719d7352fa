package update

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/whiskercam/whisker/firmware/bundle"
	"github.com/whiskercam/whisker/internal/atomicfile"
)

// Anti-rollback: a device keeps the newest version it has ever committed
// (or been installed with) in <dir>/floor, a file of its own that only
// goes up, written atomically. A bundle is installed only if its version
// is newer than the floor, so a validly signed old bundle with a known
// hole cannot be replayed. A deliberate downgrade is a bundle signed with
// downgrade_from set to the version the device runs; the floor stays
// where it was, so neither the version left behind nor the downgrade
// bundle itself can be replayed later.

// Errors of the version rules.
var (
	ErrNotNewer  = errors.New("bundle is not newer than this device's version")
	ErrDowngrade = errors.New("downgrade refused")
)

// maxFloorFile bounds the floor file read.
const maxFloorFile = 256

func (l Layout) floorPath() string { return filepath.Join(l.Dir, "floor") }

// Floor is the anti-rollback floor ("" when the device has none yet). An
// unreadable floor is an error: an update is refused rather than checked
// against nothing.
func (l Layout) Floor() (string, error) {
	f, err := os.Open(l.floorPath())
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("anti-rollback floor: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFloorFile))
	if err != nil {
		return "", fmt.Errorf("anti-rollback floor: %w", err)
	}
	v := strings.TrimSpace(string(data))
	if _, err := bundle.ParseVersion(v); err != nil {
		return "", fmt.Errorf("anti-rollback floor %s: %w", l.floorPath(), err)
	}
	return v, nil
}

// raiseFloor sets the floor to version if that is newer; it never lowers
// it. A version that does not parse (a development build) leaves it.
func (l Layout) raiseFloor(version string) error {
	v, err := bundle.ParseVersion(version)
	if err != nil {
		return nil
	}
	cur, err := l.Floor()
	if err != nil {
		return err
	}
	if cur != "" {
		if c, _ := bundle.ParseVersion(cur); !c.Less(v) {
			return nil
		}
	}
	if err := os.MkdirAll(l.Dir, 0o755); err != nil {
		return err
	}
	return atomicfile.Write(l.floorPath(), []byte(v.String()+"\n"), 0o644)
}

// effectiveFloor is the newest of the floor file, the committed slot's
// version and the installed binary's version: a device that had slots
// before it kept a floor still refuses what is older than it runs.
func effectiveFloor(st *State, floor string) (bundle.Version, string, bool) {
	var best bundle.Version
	bestS, have := "", false
	candidates := []string{floor, st.Installed}
	if st.Committed != "" {
		candidates = append(candidates, st.Slots[st.Committed].Version)
	}
	for _, s := range candidates {
		v, err := bundle.ParseVersion(s)
		if err != nil {
			continue
		}
		if !have || best.Less(v) {
			best, bestS, have = v, s, true
		}
	}
	return best, bestS, have
}

// runningVersion is the version of what the device runs when no update is
// pending: the committed slot, or else the installed binary.
func runningVersion(st *State) string {
	if st.Committed != "" {
		return st.Slots[st.Committed].Version
	}
	return st.Installed
}

// admit applies the version rules to a bundle of the given version (and
// downgrade_from, from its signed manifest).
func admit(st *State, floor, version, downgradeFrom string) error {
	v, err := bundle.ParseVersion(version)
	if err != nil {
		return fmt.Errorf("%w: %v", bundle.ErrCorrupt, err)
	}
	if downgradeFrom == "" {
		if f, fs, ok := effectiveFloor(st, floor); ok && !f.Less(v) {
			return fmt.Errorf("%w: %s is not newer than %s, the newest version it has run (a deliberate downgrade needs a bundle signed with downgrade_from)", ErrNotNewer, version, fs)
		}
		return nil
	}
	from, err := bundle.ParseVersion(downgradeFrom)
	if err != nil {
		return fmt.Errorf("%w: downgrade_from: %v", bundle.ErrCorrupt, err)
	}
	if !v.Less(from) {
		return fmt.Errorf("%w: bundle %s is no downgrade from %s", bundle.ErrCorrupt, version, downgradeFrom)
	}
	runs := runningVersion(st)
	r, err := bundle.ParseVersion(runs)
	if err != nil || r.Less(from) || from.Less(r) {
		if runs == "" {
			runs = "an unknown version"
		}
		return fmt.Errorf("%w: bundle %s is a downgrade from %s only, this device runs %s", ErrDowngrade, version, downgradeFrom, runs)
	}
	return nil
}
