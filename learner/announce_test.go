package learner

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestAnnouncer(t *testing.T) {
	const U = Unknown
	cases := []struct {
		name   string
		cfg    AnnouncerConfig
		frames []string // "label" or "label@seconds" for a frame at that time
		want   []string // "frame:kind:label"
	}{
		{"one odd frame never fires", AnnouncerConfig{N: 3, M: 5},
			[]string{U, "Tigger", U, U, "Misty", U, U}, nil},
		{"three of five announce once", AnnouncerConfig{N: 3, M: 5},
			[]string{"Tigger", U, "Tigger", U, "Tigger", "Tigger", "Tigger"},
			[]string{"4:arrived:Tigger"}},
		{"the pet leaves when no frame of the window names it", AnnouncerConfig{N: 2, M: 3},
			[]string{"Tigger", "Tigger", U, U, U, U},
			[]string{"1:arrived:Tigger", "4:left:Tigger"}},
		{"another pet takes over", AnnouncerConfig{N: 2, M: 3},
			[]string{"Tigger", "Tigger", "Misty", "Misty", "Misty"},
			[]string{"1:arrived:Tigger", "3:left:Tigger", "3:arrived:Misty"}},
		{"alternating frames announce no one with a strict majority", AnnouncerConfig{N: 3, M: 4},
			[]string{"Tigger", "Misty", "Tigger", "Misty", "Tigger", "Misty"}, nil},
		{"N of 1 announces every change", AnnouncerConfig{N: 1, M: 1},
			[]string{"Tigger", U, "Misty"},
			[]string{"0:arrived:Tigger", "1:left:Tigger", "2:arrived:Misty"}},
		{"a stalled camera forgets the window", AnnouncerConfig{N: 2, M: 3, MaxGap: 5 * time.Second},
			[]string{"Tigger@0", "Tigger@1", "Tigger@60", U + "@61", "Tigger@62"},
			[]string{"1:arrived:Tigger", "2:left:Tigger", "4:arrived:Tigger"}},
		{"defaults are three of five", AnnouncerConfig{},
			[]string{"Tigger", "Tigger", U, "Tigger"},
			[]string{"3:arrived:Tigger"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, err := NewAnnouncer(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			t0 := time.Date(2026, 11, 27, 3, 0, 0, 0, time.UTC)
			var got []string
			for i, f := range tc.frames {
				label, at := f, t0.Add(time.Duration(i)*100*time.Millisecond)
				if l, sec, ok := strings.Cut(f, "@"); ok {
					var s int
					fmt.Sscan(sec, &s)
					label, at = l, t0.Add(time.Duration(s)*time.Second)
				}
				for _, e := range a.Observe(at, label, 0.9) {
					got = append(got, fmt.Sprintf("%d:%s:%s", i, e.Kind, e.Label))
					if !e.At.Equal(at) {
						t.Errorf("event at %v, frame at %v", e.At, at)
					}
				}
			}
			if strings.Join(got, " ") != strings.Join(tc.want, " ") {
				t.Fatalf("events %v, want %v", got, tc.want)
			}
		})
	}
}

func TestAnnouncerConfigValidate(t *testing.T) {
	for _, c := range []AnnouncerConfig{{N: 4, M: 3}, {N: 0, M: 3}, {N: 1, M: 0}, {N: 1, M: 2000}, {N: 1, M: 1, MaxGap: -1}} {
		if _, err := NewAnnouncer(c); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}

func TestAnnouncerReportsAgreement(t *testing.T) {
	a, _ := NewAnnouncer(AnnouncerConfig{N: 2, M: 3})
	now := time.Now()
	a.Observe(now, "Tigger", 0.7)
	ev := a.Observe(now, "Tigger", 0.9)
	if len(ev) != 1 || ev[0].Frames != 2 || ev[0].Confidence < 0.799 || ev[0].Confidence > 0.801 || a.Current() != "Tigger" {
		t.Fatalf("events %+v, current %q", ev, a.Current())
	}
	a.Reset()
	if a.Current() != "" {
		t.Fatal("reset kept the pet")
	}
}
