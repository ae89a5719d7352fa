package agent

import (
	"strings"
	"testing"

	"github.com/whiskercam/whisker/agent/protocol"
	"github.com/whiskercam/whisker/learner"
)

// The wire contract reserves the learner's class of other animals and
// scenes by its exact name.
func TestOtherAnimalsIsTheLearnersBackground(t *testing.T) {
	if protocol.OtherAnimals != learner.Background {
		t.Fatalf("protocol reserves %q, the learner's class is %q", protocol.OtherAnimals, learner.Background)
	}
	if err := protocol.CheckLabelName(learner.Background); err == nil {
		t.Fatalf("%q accepted as a label", learner.Background)
	}
}

func TestAdviceSaysWhatToLabelNext(t *testing.T) {
	if got := advice(nil, nil, nil, nil); len(got) != 1 || !strings.Contains(got[0], "at least two") {
		t.Errorf("no head: %q", got)
	}
	h := &learner.Head{Classes: []string{"Misty", "Tigger", "neither"}}
	counts := []learner.LabelCount{{Label: "Misty", Samples: 2}, {Label: "Tigger", Samples: 12}, {Label: "neither", Samples: 1}}
	unknown := map[string]uint64{learner.WhyUnsure: 3, learner.WhyFar: 1, learner.WhyBackground: 4, learner.WhyNoPet: 9}
	got := strings.Join(advice(counts, unknown, h, []string{"neither"}), "\n")
	for _, want := range []string{"Misty has 2 sample(s)", "3 sighting(s) were too unsure", "5 sighting(s) looked unlike every pet"} {
		if !strings.Contains(got, want) {
			t.Errorf("advice lacks %q:\n%s", want, got)
		}
	}
	for _, not := range []string{"Tigger has", "neither has"} {
		if strings.Contains(got, not) {
			t.Errorf("advice has %q:\n%s", not, got)
		}
	}
}
