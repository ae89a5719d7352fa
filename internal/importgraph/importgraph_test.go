package importgraph

import (
	"encoding/json"
	"errors"
	"io"
	"maps"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/whiskercam/whisker/"

// allowed lists, for every package of the module, the module's packages
// it may import. Arrows point down the house: the binary wires the
// daemon, the daemon its rooms, the rooms the libraries; nothing imports
// agent but its command.
var allowed = map[string][]string{
	"agent/cmd/whisker": {"agent", "agent/broker", "agent/config", "agent/ota", "agent/pipeline", "agent/protocol", "agent/web", "camera", "camera/frame",
		"firmware/attest", "firmware/bundle", "firmware/fleet", "firmware/model", "firmware/update", "internal/atomicfile", "internal/demo",
		"learner", "learner/backbone", "learner/bench", "learner/detect", "learner/embedder", "learner/plots"},
	"agent": {"agent/broker", "agent/config", "agent/homeassistant", "agent/inbox", "agent/metrics", "agent/ota", "agent/pipeline", "agent/protocol", "agent/web", "camera",
		"firmware/attest", "internal/atomicfile", "internal/wait", "learner", "learner/backbone", "learner/embedder"},
	// The configuration holds each room's section under its key.
	"agent/config": {"agent/broker", "agent/homeassistant", "agent/inbox", "agent/ota", "agent/pipeline", "agent/protocol", "agent/web",
		"camera", "internal/atomicfile", "learner", "learner/backbone"},
	"agent/inbox":              {"agent/protocol"},
	"agent/metrics":            {"agent/protocol", "learner"},
	"agent/web":                {"agent/inbox", "agent/protocol", "learner", "learner/plots"},
	"agent/protocol":           {"firmware/attest"},
	"agent/broker":             {"agent/protocol"},
	"agent/pipeline":           {"agent/protocol", "camera", "camera/frame", "learner", "learner/backbone", "learner/detect"},
	"agent/homeassistant":      {"agent/protocol", "learner"},
	"agent/ota":                {"agent/protocol", "firmware/attest", "firmware/bundle", "firmware/model", "firmware/update"},
	"camera":                   {"camera/frame", "internal/wait"},
	"camera/frame":             {},
	"learner":                  {"internal/atomicfile"},
	"learner/backbone":         {"camera/frame", "firmware/model"},
	"learner/detect":           {},
	"learner/embedder":         {"camera", "camera/frame", "learner", "learner/backbone", "learner/detect"},
	"learner/bench":            {"camera", "camera/frame", "internal/atomicfile", "learner", "learner/embedder", "learner/plots"},
	"learner/plots":            {"learner"},
	"firmware/tfl":             {},
	"firmware/model":           {"firmware/tfl", "internal/atomicfile"},
	"firmware/model/modeltest": {"firmware/model", "firmware/tfl"},
	"firmware/bundle":          {},
	"firmware/update":          {"firmware/bundle", "firmware/attest", "internal/atomicfile"},
	"firmware/fleet":           {"agent/protocol", "firmware/bundle", "firmware/attest"},
	"firmware/attest":          {"firmware/bundle"},
	"internal/atomicfile":      {},
	"internal/wait":            {},
	"internal/demo":            {"camera", "camera/frame"},
	"internal/testenv":         {},
	"internal/importgraph":     {},
	"systemd":                  {},

	// Discovery schemas for the tests of agent/homeassistant and agent.
	"agent/homeassistant/hatest": {},
}

// ownCgo are the packages that may call C themselves: the edges where
// TensorFlow Lite (learner/backbone) meets Go. OpenCV is reached only
// through gocv, from camera.
var ownCgo = []string{"learner/backbone"}

// linksC are the packages that may depend on C at all (their own cgo, or
// gocv and go-tflite below them). Every other package must build with
// CGO_ENABLED=0.
var linksC = []string{"agent/cmd/whisker", "agent", "agent/config", "agent/pipeline", "camera", "internal/demo", "learner/backbone", "learner/bench", "learner/embedder"}

type pkg struct {
	ImportPath string
	Standard   bool
	Imports    []string
	Deps       []string
	CgoFiles   []string
}

// list returns the module's packages (with -deps: and everything they
// depend on) as go list describes them.
func list(t *testing.T, deps bool) map[string]pkg {
	t.Helper()
	args := []string{"list", "-json=ImportPath,Standard,Imports,Deps,CgoFiles"}
	if deps {
		args = append(args, "-deps")
	}
	cmd := exec.Command("go", append(args, "github.com/whiskercam/whisker/...")...)
	cmd.Env = append(cmd.Environ(), "CGO_ENABLED=1") // so that cgo files are listed as such
	out, err := cmd.Output()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		t.Fatalf("go list: %v\n%s", err, ee.Stderr)
	} else if err != nil {
		t.Fatalf("go list: %v", err)
	}
	pkgs := map[string]pkg{}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p pkg
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs[p.ImportPath] = p
	}
	return pkgs
}

func TestImportGraph(t *testing.T) {
	pkgs := list(t, false)
	for path, p := range pkgs {
		name := strings.TrimPrefix(path, module)
		ok, known := allowed[name]
		if !known {
			t.Errorf("package %s is not in the import graph's tables: add it to allowed (and to linksC if it needs C)", name)
			continue
		}
		for _, imp := range p.Imports {
			if to, in := strings.CutPrefix(imp, module); in && !slices.Contains(ok, to) {
				t.Errorf("%s imports %s, which the graph does not allow", name, to)
			}
		}
		if len(p.CgoFiles) > 0 && !slices.Contains(ownCgo, name) {
			t.Errorf("%s has cgo files %v; only %v may call C themselves", name, p.CgoFiles, ownCgo)
		}
	}
	for name := range maps.Keys(allowed) {
		if _, ok := pkgs[module+name]; !ok {
			t.Errorf("the graph lists %s, which no longer exists", name)
		}
	}
}

// TestPurePackagesNeedNoC checks that no package outside linksC depends,
// however indirectly, on a package with cgo files (the standard library's
// optional cgo aside).
func TestPurePackagesNeedNoC(t *testing.T) {
	all := list(t, true)
	for path, p := range all {
		name, ours := strings.CutPrefix(path, module)
		if !ours || slices.Contains(linksC, name) {
			continue
		}
		for _, d := range p.Deps {
			if dp := all[d]; !dp.Standard && len(dp.CgoFiles) > 0 {
				t.Errorf("%s must build without cgo but depends on %s, which has cgo files", name, d)
			}
		}
	}
}
