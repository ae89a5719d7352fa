package homeassistant

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"unicode"

	"golang.org/x/text/unicode/norm"
)

// A pet's entities are named after its label, but identified by an id
// of its own that the agent keeps: renaming "Tiger" to "Tigger" changes
// the names Home Assistant shows and keeps every unique_id, so history,
// areas, dashboards and automations stay with the pet.

// PetRecord ties a label to the id its entities are known by.
type PetRecord struct {
	ID    string `json:"id"`
	Label string `json:"label"`
	// Pending marks a record made for a rename that is being applied:
	// it takes the pet over once the rename is in the store, and is
	// dropped when the rename did not happen.
	Pending bool `json:"pending,omitempty"`
}

// Removed is a component of a forgotten pet. Home Assistant is told to
// remove it when it happens and again at its next start (its birth
// message), in case it was not listening.
type Removed struct {
	Key      string `json:"key"`
	Platform string `json:"platform"`
}

// State is what the service keeps across restarts (Memory).
type State struct {
	Pets    []PetRecord `json:"pets,omitempty"`
	Removed []Removed   `json:"removed,omitempty"`
	// Legacy lists the pets an earlier version announced with one
	// discovery config per entity; they are migrated to the device
	// config once, keeping their entities.
	Legacy []string `json:"-"`
}

// LegacyID is the id of a pet announced by an earlier version: the slug
// its unique_ids and topics were made of (lower-case letters and digits
// of the label, then a short hash of the exact label), so that migrating
// keeps every entity.
func LegacyID(label string) string {
	var b strings.Builder
	under := false
	for _, r := range strings.ToLower(label) {
		if r < 128 && (unicode.IsLetter(r) || unicode.IsDigit(r)) {
			b.WriteRune(r)
			under = false
		} else if !under && b.Len() > 0 {
			b.WriteByte('_')
			under = true
		}
		if b.Len() >= 32 {
			break
		}
	}
	sum := sha256.Sum256([]byte(label))
	return strings.TrimRight(b.String(), "_") + "_" + hex.EncodeToString(sum[:3])
}

// NewPetID is a fresh random pet id: "pet_" and 8 hex digits.
func NewPetID() string {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return "pet_" + hex.EncodeToString(b[:])
}

// validPetID says whether an id read back from disk can be part of
// topics, unique_ids and discovery keys.
func validPetID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_') {
			return false
		}
	}
	return true
}

// EntitySlug is a label as the object part of an entity id: lower-case
// ASCII letters and digits with single underscores between words, accents
// dropped ("Zoë" is "zoe", "Mr. Whiskers" is "mr_whiskers"). A label with
// nothing left (say "猫") gives "".
func EntitySlug(label string) string {
	var b strings.Builder
	under := false
	for _, r := range norm.NFKD.String(label) {
		switch {
		case unicode.Is(unicode.Mn, r): // a combining accent
			continue
		case r == 'ß':
			b.WriteString("ss")
			under = false
			continue
		case r == 'æ' || r == 'Æ':
			b.WriteString("ae")
			under = false
			continue
		case r == 'ø' || r == 'Ø':
			b.WriteByte('o')
			under = false
			continue
		case r == 'œ' || r == 'Œ':
			b.WriteString("oe")
			under = false
			continue
		}
		r = unicode.ToLower(r)
		if r < 128 && (r >= 'a' && r <= 'z' || r >= '0' && r <= '9') {
			b.WriteRune(r)
			under = false
		} else if !under && b.Len() > 0 {
			b.WriteByte('_')
			under = true
		}
	}
	s := strings.TrimRight(b.String(), "_")
	if len(s) > 48 {
		s = strings.TrimRight(s[:48], "_")
	}
	return s
}

// reconcile brings the records up to date with the labels that name pets
// now: a record whose label is gone is dropped (its pet was forgotten,
// renamed or merged away), a pending record whose rename happened takes
// its pet over, one whose rename did not is dropped, and a label without
// a record gets a new id. It returns the records kept, in label order,
// and the ids dropped.
func reconcile(records []PetRecord, labels []string, newID func() string) (kept []PetRecord, dropped []string) {
	byLabel := map[string]PetRecord{}
	seen := map[string]bool{}
	// Settled records first, so that a pending record never takes an id
	// or a label a settled one holds.
	ordered := slices.Clone(records)
	slices.SortStableFunc(ordered, func(a, b PetRecord) int {
		switch {
		case a.Pending == b.Pending:
			return 0
		case a.Pending:
			return 1
		}
		return -1
	})
	for _, r := range ordered {
		if _, taken := byLabel[r.Label]; taken || seen[r.ID] || !validPetID(r.ID) || !slices.Contains(labels, r.Label) {
			continue
		}
		r.Pending = false
		byLabel[r.Label] = r
		seen[r.ID] = true
	}
	for _, l := range slices.Sorted(slices.Values(labels)) {
		r, ok := byLabel[l]
		if !ok {
			id := newID()
			for seen[id] || !validPetID(id) {
				id = newID()
			}
			r = PetRecord{ID: id, Label: l}
			seen[id] = true
		}
		kept = append(kept, r)
	}
	slices.SortFunc(kept, func(a, b PetRecord) int { return strings.Compare(a.Label, b.Label) })
	for _, r := range records {
		if validPetID(r.ID) && !slices.ContainsFunc(kept, func(k PetRecord) bool { return k.ID == r.ID }) {
			dropped = append(dropped, r.ID)
		}
	}
	slices.Sort(dropped)
	dropped = slices.Compact(dropped)
	return kept, dropped
}

// slugs gives each pet the object part of its default entity ids: the
// slug of its label, or, when that is empty or another pet of this
// device has it too, the slug followed by the pet's id.
func slugs(pets []PetRecord) map[string]string {
	count := map[string]int{}
	for _, p := range pets {
		count[EntitySlug(p.Label)]++
	}
	out := map[string]string{}
	for _, p := range pets {
		s := EntitySlug(p.Label)
		switch {
		case s == "":
			s = p.ID
		case count[s] > 1:
			s = fmt.Sprintf("%s_%s", s, p.ID)
		}
		out[p.ID] = s
	}
	return out
}
