package backbone_test

import (
	"errors"
	"testing"

	"github.com/whiskercam/whisker/firmware/model"
	"github.com/whiskercam/whisker/learner/backbone"
)

func TestParseDelegate(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want backbone.Delegate
		ok   bool
	}{
		{"", backbone.DelegateNone, true},
		{"none", backbone.DelegateNone, true},
		{"xnnpack", backbone.DelegateXNNPACK, true},
		{"edgetpu", backbone.DelegateEdgeTPU, true},
		{"gpu", backbone.DelegateGPU, true},
		{"XNNPACK", "", false},
		{"tpu", "", false},
		{"cpu", "", false},
	} {
		got, err := backbone.ParseDelegate(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseDelegate(%q) = %q, %v; want %q (ok %v)", tc.in, got, err, tc.want, tc.ok)
		}
	}
	if _, err := backbone.New(nil, backbone.Options{Delegate: "tpu"}); err == nil {
		t.Error("New accepted an unknown delegate")
	}
}

// With no delegate asked for, none runs and nothing fell back.
func TestNoDelegateRunsOnCPU(t *testing.T) {
	b := open(t, cut(t, model.PoolAvg))
	st := b.Delegate()
	if st.Requested != backbone.DelegateNone || st.Active != backbone.DelegateNone || st.Fallback != nil {
		t.Fatalf("delegate status %+v, want none without a fallback", st)
	}
}

// A delegate the binary was built without: the backbone says so, runs on
// the CPU kernels, and computes what the CPU build computes.
func TestDelegateNotBuiltFallsBackToCPU(t *testing.T) {
	data := cut(t, model.PoolAvg)
	cpu := open(t, data)
	in := ramp(300*300*3, 0.3)
	want, err := cpu.Embed(in)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []backbone.Delegate{backbone.DelegateXNNPACK, backbone.DelegateEdgeTPU, backbone.DelegateGPU} {
		t.Run(string(d), func(t *testing.T) {
			b, err := backbone.New(data, backbone.Options{Threads: 2, Delegate: d})
			if err != nil {
				t.Fatalf("New with delegate %s: %v (want a CPU fallback)", d, err)
			}
			defer b.Close()
			st := b.Delegate()
			if backbone.DelegateBuilt(d) {
				// Built in: it runs, or it fell back for a reason of the
				// machine (no device, no driver), never the build.
				if errors.Is(st.Fallback, backbone.ErrDelegateNotBuilt) || (st.Fallback == nil) != (st.Active == d) {
					t.Fatalf("status %+v for a delegate this binary has", st)
				}
				t.Logf("%s is built in: active %s, fallback %v", d, st.Active, st.Fallback)
				return
			}
			if st.Requested != d || st.Active != backbone.DelegateNone {
				t.Fatalf("status %+v, want %s requested and none active", st, d)
			}
			if !errors.Is(st.Fallback, backbone.ErrDelegateNotBuilt) {
				t.Fatalf("fallback reason %v, want ErrDelegateNotBuilt", st.Fallback)
			}
			t.Logf("fallback: %v", st.Fallback)
			got, err := b.Embed(in)
			if err != nil {
				t.Fatal(err)
			}
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("value %d: %g on the fallback, %g on the CPU build", i, got[i], want[i])
				}
			}
		})
	}
}
