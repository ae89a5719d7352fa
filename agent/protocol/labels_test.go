package protocol

import (
	"crypto/ed25519"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestLabelNamesAreNormalised(t *testing.T) {
	for _, tc := range []struct {
		sent, stored string
	}{
		{"Tigger", "Tigger"},
		{"Ｔｉｇｇｅｒ", "Tigger"},      // fullwidth
		{"𝐓𝐢𝐠𝐠𝐞𝐫", "Tigger"},      // mathematical bold
		{"ﬁfi", "fifi"},           // ligature
		{"Cafe\u0301", "Café"},    // decomposed accent
		{"Ⅸ", "IX"},               // roman numeral
		{"Mi\u00a0sty", "Mi sty"}, // no-break space
		{"ねこ", "ねこ"},              // one script
		{"Tama猫", "Tama猫"},        // Latin with Han
		{"タマ猫ちゃん", "タマ猫ちゃん"},      // Han and both kana
		{"Тигр", "Тигр"},          // all Cyrillic
		{"R2-D2 🐱", "R2-D2 🐱"},    // digits, punctuation and emoji belong to every script
		{"Chat noir", "Chat noir"},
	} {
		payload, _ := json.Marshal(map[string]string{"request_id": "n", "sighting_id": "s", "label": tc.sent})
		r, err := DecodeLabel(payload, 1<<16)
		if err != nil {
			t.Errorf("%q: refused: %v", tc.sent, err)
			continue
		}
		if r.Label != tc.stored {
			t.Errorf("%q: decoded as %q, want %q", tc.sent, r.Label, tc.stored)
		}
		if CheckLabelName(r.Label) != nil {
			t.Errorf("%q: decoded name %q does not pass CheckLabelName", tc.sent, r.Label)
		}
	}
}

func TestLookAlikeLabels(t *testing.T) {
	for _, tc := range []struct {
		name   string
		reason string
	}{
		{"\u0422igger", "mixes letters of Cyrillic and Latin"}, // Cyrillic Т
		{"T\u0456gger", "mixes letters of Cyrillic and Latin"}, // Cyrillic і
		{"Tigg\u03b5r", "mixes letters of Greek and Latin"},    // Greek ε
		{"Ｕｎｋｎｏｗｎ", "reserved"},
		{"UNKNOWN", "reserved"},
		{"Tig\u200bger", "control characters"}, // zero-width space
		{"Tig\u202eger", "control characters"}, // right-to-left override
	} {
		payload, _ := json.Marshal(map[string]string{"request_id": "n", "sighting_id": "s", "label": tc.name})
		_, err := DecodeLabel(payload, 1<<16)
		if err == nil || !strings.Contains(err.Error(), tc.reason) {
			t.Errorf("%q: err %v, want one mentioning %q", tc.name, err, tc.reason)
		}
	}
	if err := CheckLabelName("Ｔｉｇｇｅｒ"); err == nil || !strings.Contains(err.Error(), "NFKC") {
		t.Errorf("CheckLabelName of a name not in NFKC form: %v", err)
	}
	for _, same := range [][2]string{{"Tigger", "tigger"}, {"Tigger", "TIGGER"}, {"Tigger", "Ｔｉｇｇｅｒ"}, {"Straße", "STRASSE"}, {"Café", "Cafe\u0301"}} {
		if !SameLabel(same[0], same[1]) {
			t.Errorf("%q and %q are not the same label", same[0], same[1])
		}
	}
	for _, other := range [][2]string{{"Tigger", "Tiger"}, {"Tigger", "\u0422igger"}, {"Café", "Cafe"}} {
		if SameLabel(other[0], other[1]) {
			t.Errorf("%q and %q are the same label", other[0], other[1])
		}
	}
	known := []string{"Misty", "Tigger", "tigger"}
	for _, tc := range []struct{ l, want string }{{"tigger", "tigger"}, {"TIGGER", "Tigger"}, {"ｍｉｓｔｙ", "Misty"}, {"Rex", ""}} {
		got, ok := FindLabel(tc.l, known)
		if got != tc.want || ok != (tc.want != "") {
			t.Errorf("FindLabel(%q) = %q, %v; want %q", tc.l, got, ok, tc.want)
		}
	}
}

func TestCommandLabelsAreNormalised(t *testing.T) {
	r, err := DecodeCmd([]byte(`{"request_id":"c","cmd":"rename","label":"Ｔｉｇｇｅｒ","to":"ＴＩＧＧＥＲ"}`), 1<<16)
	if err != nil || r.Label != "Tigger" || r.To != "TIGGER" {
		t.Fatalf("rename: %+v %v", r, err)
	}
	if _, err := DecodeCmd([]byte(`{"request_id":"c","cmd":"forget","label":"Tigg\u03b5r"}`), 1<<16); err == nil {
		t.Fatal("forget of a mixed-script name accepted")
	}
}

// TestOversizedPayloadIsNotParsed: the size is checked before the JSON is
// read, so a payload over the limit is refused the same whether or not it
// is JSON, and still echoes a request id found in its first bytes.
func TestOversizedPayloadIsNotParsed(t *testing.T) {
	big := strings.Repeat("[", 1<<20) // as JSON, a million nested arrays
	for _, p := range []string{
		`{"request_id":"big1","label":"` + strings.Repeat("x", 1<<20) + `"}`,
		`{"request_id":"big2",` + big,
	} {
		_, err := DecodeLabel([]byte(p), 1024)
		re, ok := err.(*RequestError)
		if !ok || !strings.Contains(re.Reason, "the limit is 1024") || !strings.HasPrefix(re.RequestID, "big") {
			t.Errorf("oversized payload: %v", err)
		}
	}
}

func TestSharedSampleSignature(t *testing.T) {
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	sign := func(m []byte) ([]byte, error) { return ed25519.Sign(priv, m), nil }
	payload, err := EncodeShared("kitchen", 7, "Ｔｉｇｇｅｒ", "bb@1", time.Unix(1, 0), []float32{1, 2}, []byte{0xff, 0xd8}, "k1", sign)
	if err != nil {
		t.Fatal(err)
	}
	s, feats, jpeg, err := DecodeShared(payload, 1<<16)
	if err != nil {
		t.Fatal(err)
	}
	if s.Label != "Tigger" || len(feats) != 2 || len(jpeg) != 2 || s.KeyID != "k1" {
		t.Fatalf("decoded %+v %v %v", s, feats, jpeg)
	}
	sig, err := s.Signature()
	if err != nil || !ed25519.Verify(pub, s.SignedMessage(), sig) {
		t.Fatalf("signature does not verify: %v", err)
	}
	if !strings.HasPrefix(string(s.SignedMessage()), SharedSignContext) {
		t.Fatal("signed message does not start with the context")
	}
	// Every field is covered: change any one and the signature fails.
	for name, change := range map[string]func(*SharedSample){
		"origin": func(s *SharedSample) { s.Origin = "garden" }, "sample_id": func(s *SharedSample) { s.SampleID++ },
		"label": func(s *SharedSample) { s.Label = "Misty" }, "backbone": func(s *SharedSample) { s.Backbone = "bb@2" },
		"ts": func(s *SharedSample) { s.TS = "x" }, "features": func(s *SharedSample) { s.Features = "AAAAAA==" },
		"jpeg": func(s *SharedSample) { s.JPEG = "" }, "key_id": func(s *SharedSample) { s.KeyID = "k2" },
		"v": func(s *SharedSample) { s.V = 2 },
	} {
		c := *s
		change(&c)
		if ed25519.Verify(pub, c.SignedMessage(), sig) {
			t.Errorf("signature still verifies with %s changed", name)
		}
	}
	// Fields do not run into each other: moving a byte from one to the next
	// changes the message.
	a, b := *s, *s
	a.Origin, a.Label = "kitchenT", "igger"
	b.Origin, b.Label = "kitchen", "Tigger"
	if string(a.SignedMessage()) == string(b.SignedMessage()) {
		t.Fatal("field boundaries are not part of the signed message")
	}
	unsigned, _ := EncodeShared("kitchen", 7, "Tigger", "bb@1", time.Unix(1, 0), []float32{1}, nil, "", nil)
	s, _, _, err = DecodeShared(unsigned, 1<<16)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Signature(); err == nil {
		t.Fatal("an unsigned sample has a signature")
	}
}
