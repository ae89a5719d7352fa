package protocol

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"unicode"

	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"
)

// Label names come from people, over MQTT, from other cameras and from
// files, typed on phones and keyboards with every input method. Two names
// that look alike must be one pet, so that a look-alike cannot make a
// second "Tigger":
//
//   - A name is kept in Unicode normalisation form NFKC: compatibility
//     characters become the ones they stand for (fullwidth "Ｔｉｇｇｅｒ",
//     the ligature "ﬁ", mathematical letters "𝐓𝐢𝐠𝐠𝐞𝐫" and a decomposed
//     "é" all become the plain letters). Decoders normalise what they
//     receive; CheckLabelName refuses a name that is not normalised.
//   - Names are compared by LabelKey: NFKC with full Unicode case folding,
//     so "tigger", "TIGGER" and "Tigger" are one label. The name keeps the
//     spelling it was first stored with; a label request in another case
//     is stored under that spelling.
//   - The letters of one name come from one script, or from a mix that
//     one language writes with (Unicode's "highly restrictive" profile:
//     Latin with Han and Japanese kana, with Han and Bopomofo, or with Han
//     and Hangul). A Cyrillic "Т" in a Latin "Тigger" is refused: it is
//     there to look like another name.
//
// Two names written entirely in different scripts can still look alike
// (a Cyrillic "сосо" and a Latin "coco"); those are different names.

// labelFold is full Unicode case folding; it holds no state, so one is
// shared.
var labelFold = cases.Fold()

// NormalizeLabel returns a label name in NFKC form, the form labels are
// stored and compared in.
func NormalizeLabel(l string) string { return norm.NFKC.String(l) }

// LabelKey is the form in which label names are compared: NFKC, case
// folded, NFKC again (folding can undo normalisation).
func LabelKey(l string) string {
	return norm.NFKC.String(labelFold.String(norm.NFKC.String(l)))
}

// SameLabel says whether two label names name the same label.
func SameLabel(a, b string) bool { return LabelKey(a) == LabelKey(b) }

// FindLabel returns the name among known that names the same label as l
// (the exact spelling first), and whether there is one.
func FindLabel(l string, known []string) (string, bool) {
	if slices.Contains(known, l) {
		return l, true
	}
	key := LabelKey(l)
	for _, k := range known {
		if LabelKey(k) == key {
			return k, true
		}
	}
	return "", false
}

// scriptMixes are the sets of scripts one name may mix (Unicode TS #39,
// "highly restrictive"); a name in a single script is always allowed.
var scriptMixes = [][]string{
	{"Latin", "Han", "Hiragana", "Katakana"},
	{"Latin", "Han", "Bopomofo"},
	{"Latin", "Han", "Hangul"},
}

// scriptsOf lists the scripts of the letters, marks and digits of s,
// leaving out the characters every script shares (Common, Inherited).
func scriptsOf(s string) []string {
	seen := map[string]bool{}
	for _, r := range s {
		if unicode.In(r, unicode.Common, unicode.Inherited) {
			continue
		}
		for name, table := range unicode.Scripts {
			if name != "Common" && name != "Inherited" && unicode.Is(table, r) {
				seen[name] = true
				break
			}
		}
	}
	out := make([]string, 0, len(seen))
	for name := range seen {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

// checkScripts refuses a name whose letters mix scripts no language
// writes together.
func checkScripts(l string) error {
	scripts := scriptsOf(l)
	if len(scripts) <= 1 {
		return nil
	}
	for _, mix := range scriptMixes {
		if allIn(scripts, mix) {
			return nil
		}
	}
	return fmt.Errorf("label %q mixes letters of %s: write it in one script", l, strings.Join(scripts, " and "))
}

func allIn(have, allowed []string) bool {
	for _, s := range have {
		if !slices.Contains(allowed, s) {
			return false
		}
	}
	return true
}
