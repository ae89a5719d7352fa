package protocol

import (
	"encoding/base64"
	"strings"
	"testing"
)

func TestDecodeLabel(t *testing.T) {
	img := base64.StdEncoding.EncodeToString([]byte{0xff, 0xd8, 0xff})
	for _, tc := range []struct {
		payload string
		id      string
		reason  string // "" means accepted
	}{
		{`{"request_id":"a","sighting_id":"s-1","label":"Tigger"}`, "a", ""},
		{`{"v":1,"request_id":"b","image":"` + img + `","label":"Misty"}`, "b", ""},
		{`{"request_id":"c","sighting_id":"s-1","label":"Ünïcødé cat"}`, "c", ""},
		{`{"v":2,"request_id":"d","sighting_id":"s","label":"x"}`, "d", "version 2"},
		{`{"request_id":"e","sighting_id":"s","label":"a\u0007b"}`, "e", "control characters"},
		{`{"request_id":"f","sighting_id":"s","label":"back\\slash"}`, "f", "path separator"},
		{`{"request_id":"g","sighting_id":"s","label":"unknown"}`, "g", "reserved"},
		{`{"request_id":"h","sighting_id":"s","label":" padded"}`, "h", "spaces"},
		{`{"request_id":"i","sighting_id":"s","label":"` + strings.Repeat("é", 65) + `"}`, "i", "65 characters"},
		{`{"request_id":"j","sighting_id":"s","image":"` + img + `","label":"x"}`, "j", "not both"},
		{`{"request_id":7,"sighting_id":"s","label":"x"}`, "", "must be string"},
		{"{\"request_id\":\"k\",\"label\":\"\xff\xfe\"}", "k", "UTF-8"},
		{`{"request_id":"l","sighting_id":"s","label":"x"} {}`, "l", "after the JSON"},
		{`{"request_id":"m", "sighting_id":`, "m", "ends before"},
		{`null`, "", "request_id is missing"},
		{`{"request_id":"n","sighting_ids":["s-1","s-2"],"label":"Tigger"}`, "n", ""},
		{`{"request_id":"o","sighting_ids":[],"label":"Tigger"}`, "o", "list is empty"},
		{`{"request_id":"p","sighting_ids":["s-1","s-1"],"label":"Tigger"}`, "p", "named twice"},
		{`{"request_id":"q","sighting_ids":["s-1"],"sighting_id":"s-2","label":"Tigger"}`, "q", "not both"},
		{`{"request_id":"r","sighting_ids":["s-1"],"image":"` + img + `","label":"Tigger"}`, "r", "not both"},
		{`{"request_id":"s","sighting_ids":[""],"label":"Tigger"}`, "s", "printable"},
		{`{"request_id":"t","sighting_ids":"s-1","label":"Tigger"}`, "t", "must be slice"},
		{`{"request_id":"u","sighting_ids":[` + strings.Repeat(`"x",`, 200) + `"y"],"label":"Tigger"}`, "u", "at most 200"},
		{`{"request_id":"v","image":"` + img + `","detect":true,"label":"Misty"}`, "v", ""},
		{`{"request_id":"w","sighting_id":"s","detect":true,"label":"Misty"}`, "w", "detect is for images"},
		{`{"request_id":"x","sighting_id":"` + strings.Repeat("s", 129) + `","label":"Misty"}`, "x", "128 printable"},
	} {
		_, err := DecodeLabel([]byte(tc.payload), 1<<20)
		switch {
		case tc.reason == "" && err != nil:
			t.Errorf("%s: refused: %v", tc.payload, err)
		case tc.reason != "" && (err == nil || !strings.Contains(err.Error(), tc.reason)):
			t.Errorf("%s: err %v, want one mentioning %q", tc.payload, err, tc.reason)
		case err != nil:
			if re, ok := err.(*RequestError); !ok || re.RequestID != tc.id {
				t.Errorf("%s: error %#v does not carry request id %q", tc.payload, err, tc.id)
			}
		}
	}
}

func TestDecodeMove(t *testing.T) {
	for _, tc := range []struct {
		payload string
		reason  string
	}{
		{`{"request_id":"a","cmd":"move","sample_id":4,"to":"Misty"}`, ""},
		{`{"request_id":"b","cmd":"move","to":"Misty"}`, "sample_id is missing"},
		{`{"request_id":"c","cmd":"move","sample_id":4}`, "label is missing"},
		{`{"request_id":"d","cmd":"move","sample_id":4,"to":"unknown"}`, "reserved"},
		{`{"request_id":"e","cmd":"move","sample_id":4,"to":"Misty","label":"Tigger"}`, "takes no label"},
		{`{"request_id":"f","cmd":"move","sample_id":-4,"to":"Misty"}`, "must be uint64"},
	} {
		r, err := DecodeCmd([]byte(tc.payload), 1<<20)
		switch {
		case tc.reason == "" && err != nil:
			t.Errorf("%s: refused: %v", tc.payload, err)
		case tc.reason == "" && !r.Mutating():
			t.Errorf("%s: move must count as a change (applied once per request id)", tc.payload)
		case tc.reason != "" && (err == nil || !strings.Contains(err.Error(), tc.reason)):
			t.Errorf("%s: err %v, want one mentioning %q", tc.payload, err, tc.reason)
		}
	}
}

func TestDecodeOversize(t *testing.T) {
	p := `{"request_id":"big","sighting_id":"s","label":"` + strings.Repeat("x", 5000) + `"}`
	_, err := DecodeLabel([]byte(p), 1024)
	if err == nil || !strings.Contains(err.Error(), "limit is 1024") || err.(*RequestError).RequestID != "big" {
		t.Fatalf("oversize: %v", err)
	}
}

func FuzzDecodeLabel(f *testing.F) {
	f.Add([]byte(`{"request_id":"a","sighting_id":"s-1","label":"Tigger"}`))
	f.Add([]byte(`{"request_id":"b","image":"/9j/","label":"Misty"}`))
	f.Add([]byte(`{"request_id":"c"`))
	f.Add([]byte(`{"request_id":"d","sighting_ids":["a","b"],"label":"Tigger"}`))
	f.Add([]byte(`{"request_id":"e","image":"/9j/","detect":true,"label":"Misty"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeLabel(b, 1<<16)
		if err != nil {
			if _, ok := err.(*RequestError); !ok {
				t.Fatalf("error of type %T", err)
			}
			if err.Error() == "" {
				t.Fatal("empty reason")
			}
			return
		}
		given := 0
		for _, g := range []bool{r.SightingID != "", len(r.SightingIDs) > 0, len(r.ImageBytes()) > 0} {
			if g {
				given++
			}
		}
		if CheckLabelName(r.Label) != nil || r.RequestID == "" || given != 1 || (r.Detect && len(r.ImageBytes()) == 0) {
			t.Fatalf("accepted an invalid request: %+v", r)
		}
		if len(r.SightingIDs) > MaxBatch || checkSightingIDs(r.SightingIDs) != nil && r.SightingIDs != nil {
			t.Fatalf("accepted a bad batch: %q", r.SightingIDs)
		}
	})
}

func FuzzDecodeCmd(f *testing.F) {
	f.Add([]byte(`{"request_id":"a","cmd":"stats"}`))
	f.Add([]byte(`{"cmd":"retrain"}`))
	f.Add([]byte(`{"request_id":"m","cmd":"move","sample_id":3,"to":"Misty"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeCmd(b, 1<<16)
		if err != nil {
			if _, ok := err.(*RequestError); !ok {
				t.Fatalf("error of type %T", err)
			}
			return
		}
		if r.RequestID == "" {
			t.Fatalf("accepted without request id: %+v", r)
		}
		if r.Cmd == "move" && (r.SampleID == 0 || CheckLabelName(r.To) != nil || r.Label != "") {
			t.Fatalf("accepted a bad move: %+v", r)
		}
	})
}

func FuzzDecodeShared(f *testing.F) {
	f.Add([]byte(`{"v":1,"origin":"porch","sample_id":3,"label":"Tigger","backbone":"bb@1","ts":"2026-01-01T00:00:00Z","features":"AACAPw==","jpeg":""}`))
	f.Add([]byte(`{"v":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, feats, _, err := DecodeShared(b, 1<<16)
		if err != nil {
			return
		}
		if CheckLabelName(s.Label) != nil || len(feats) == 0 || s.Backbone == "" {
			t.Fatalf("accepted an invalid shared sample: %+v", s)
		}
	})
}
