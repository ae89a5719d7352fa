package broker

import (
	"fmt"
	"sort"
	"strings"
)

// Member is a user of a mosquitto broker with a role: the camera users'
// Device is the device id in their topics.
type Member struct {
	Name   string
	Role   Role
	Device string
}

// MosquittoACL renders the rules of members as a mosquitto acl_file: one
// section per user, the same rules the embedded broker enforces. Lines
// before the first "user" would apply to anonymous clients; there are
// none, so with allow_anonymous false an anonymous client can do nothing
// anyway. Users are sorted by role, then name.
func MosquittoACL(members []Member, t Topics) (string, error) {
	ms := append([]Member(nil), members...)
	order := map[Role]int{Camera: 0, Operator: 1, Viewer: 2}
	sort.SliceStable(ms, func(i, j int) bool {
		if order[ms[i].Role] != order[ms[j].Role] {
			return order[ms[i].Role] < order[ms[j].Role]
		}
		return ms[i].Name < ms[j].Name
	})
	var b strings.Builder
	fmt.Fprintf(&b, "# Whisker's roles for mosquitto (acl_file), made by `whisker mqtt acl`.\n")
	fmt.Fprintf(&b, "# camera: its own topics, the labels and commands sent to it%s.\n", map[bool]string{true: ", its household's samples", false: ""}[t.Household != ""])
	fmt.Fprintf(&b, "# operator: labels and commands to every camera; reads all of %s/#.\n", t.Prefix)
	fmt.Fprintf(&b, "# viewer: statuses, sightings, pets, the latest snapshot%s; changes nothing.\n", map[bool]string{true: " and Home Assistant discovery", false: ""}[t.Discovery != ""])
	seen := map[string]bool{}
	for _, m := range ms {
		if !validUserName(m.Name) {
			return "", fmt.Errorf("user %q: names are 1-64 letters, digits, '-', '_' or '.'", m.Name)
		}
		if seen[m.Name] {
			return "", fmt.Errorf("user %s is listed twice", m.Name)
		}
		seen[m.Name] = true
		switch m.Role {
		case Camera:
			if m.Device == "" {
				return "", fmt.Errorf("camera user %s has no device", m.Name)
			}
			fmt.Fprintf(&b, "\n# camera %s\nuser %s\n", m.Device, m.Name)
		case Operator, Viewer:
			fmt.Fprintf(&b, "\n# %s\nuser %s\n", m.Role, m.Name)
		default:
			return "", fmt.Errorf("user %s: role %q", m.Name, m.Role)
		}
		for _, r := range Rules(m.Role, m.Device, t) {
			fmt.Fprintf(&b, "topic %s %s\n", r.Access, r.Filter)
		}
	}
	return b.String(), nil
}
