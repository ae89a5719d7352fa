package broker

import (
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/whiskercam/whisker/internal/testenv"
)

var update = flag.Bool("update", false, "rewrite examples/mosquitto/whisker.acl")

var exampleTopics = Topics{Prefix: "whisker", Discovery: "homeassistant", Household: "home"}

func TestRules(t *testing.T) {
	porch := Rules(Camera, "porch", exampleTopics)
	op := Rules(Operator, "", exampleTopics)
	view := Rules(Viewer, "", exampleTopics)
	for _, tc := range []struct {
		rules []Rule
		who   string
		topic string
		write bool
		want  bool
	}{
		{porch, "camera", "whisker/porch/status", true, true},
		{porch, "camera", "whisker/porch/sighting", true, true},
		{porch, "camera", "whisker/porch/sighting/revised", true, true},
		{porch, "camera", "whisker/porch/result", true, true},
		{porch, "camera", "whisker/porch/snapshot/6b08-1/crop", true, true},
		{porch, "camera", "whisker/porch/pet/tigger_49df5f", true, true},
		{porch, "camera", "homeassistant/sensor/whisker_porch/tigger_last_seen/config", true, true},
		{porch, "camera", "whisker/household/home/samples", true, true},
		{porch, "camera", "whisker/household/home/samples", false, true},
		{porch, "camera", "whisker/porch/label", false, true},
		{porch, "camera", "whisker/porch/cmd", false, true},
		{porch, "camera", "whisker/porch/label", true, false},
		{porch, "camera", "whisker/porch/cmd", true, false},
		{porch, "camera", "whisker/garden/status", true, false},
		{porch, "camera", "whisker/garden/label", false, false},
		{porch, "camera", "homeassistant/sensor/whisker_garden/x/config", true, false},
		{porch, "camera", "homeassistant/sensor/whisker_porchX/x/config", true, false},
		{porch, "camera", "whisker/household/other/samples", true, false},
		{porch, "camera", "whisker/porch/#", false, false},
		{porch, "camera", "#", false, false},
		{op, "operator", "whisker/porch/label", true, true},
		{op, "operator", "whisker/garden/cmd", true, true},
		{op, "operator", "whisker/porch/result", false, true},
		{op, "operator", "whisker/#", false, true},
		{op, "operator", "whisker/+/snapshot/#", false, true},
		{op, "operator", "whisker/porch/status", true, false},
		{op, "operator", "whisker/porch/result", true, false},
		{op, "operator", "whisker/porch/pet/x", true, false},
		{op, "operator", "whisker/household/home/samples", true, false},
		{op, "operator", "homeassistant/sensor/whisker_porch/x/config", true, false},
		{op, "operator", "whisker/+/label", true, false}, // a topic name has no wildcards
		{op, "operator", "#", false, false},
		{op, "operator", "$SYS/#", false, false},
		{view, "viewer", "whisker/porch/status", false, true},
		{view, "viewer", "whisker/+/status", false, true},
		{view, "viewer", "whisker/porch/sighting", false, true},
		{view, "viewer", "whisker/+/sighting/#", false, true},
		{view, "viewer", "whisker/porch/pet/#", false, true},
		{view, "viewer", "whisker/porch/snapshot/latest", false, true},
		{view, "viewer", "homeassistant/#", false, true},
		{view, "viewer", "homeassistant/status", true, true},
		{view, "viewer", "whisker/porch/result", false, false},
		{view, "viewer", "whisker/porch/label", false, false},
		{view, "viewer", "whisker/porch/snapshot/6b08-1", false, false},
		{view, "viewer", "whisker/porch/snapshot/#", false, false},
		{view, "viewer", "whisker/household/home/samples", false, false},
		{view, "viewer", "whisker/#", false, false},
		{view, "viewer", "whisker/porch/label", true, false},
		{view, "viewer", "whisker/porch/cmd", true, false},
		{view, "viewer", "whisker/porch/status", true, false},
		{view, "viewer", "homeassistant/sensor/whisker_porch/x/config", true, false},
	} {
		if got := Allowed(tc.rules, tc.topic, tc.write); got != tc.want {
			t.Errorf("%s %s %q: allowed %v, want %v", tc.who, map[bool]string{true: "writes", false: "reads"}[tc.write], tc.topic, got, tc.want)
		}
	}
}

func TestCovers(t *testing.T) {
	for _, tc := range []struct {
		f, sub string
		want   bool
	}{
		{"a/#", "a", true}, {"a/#", "a/b/c", true}, {"a/#", "a/#", true}, {"a/#", "a/+", true},
		{"a/+", "a/b", true}, {"a/+", "a/+", true}, {"a/+", "a/#", false}, {"a/+", "a/b/c", false},
		{"a/b", "a/+", false}, {"a/b", "a/b", true}, {"a/b", "a", false}, {"a", "a/b", false},
		{"+/b", "$SYS/b", false}, {"#", "$SYS/x", false}, {"a/#", "", false}, {"a/+/c", "a//c", true},
	} {
		if got := covers(tc.f, tc.sub); got != tc.want {
			t.Errorf("covers(%q, %q) = %v, want %v", tc.f, tc.sub, got, tc.want)
		}
	}
}

func TestPasswords(t *testing.T) {
	h, err := HashPassword("s3cret", 1000)
	if err != nil {
		t.Fatal(err)
	}
	ph, err := parseHash(h)
	if err != nil || !ph.check("s3cret") || ph.check("s3cret ") || ph.check("") {
		t.Fatalf("hash %s: %v", h, err)
	}
	if h2, _ := HashPassword("s3cret", 1000); h2 == h {
		t.Fatal("two hashes of one password are equal: the salt is not random")
	}
	// mosquitto_passwd's own hashes check.
	file := filepath.Join(t.TempDir(), "passwd")
	out, err := exec.Command(testenv.Command(t, "mosquitto_passwd", "mosquitto"), "-b", "-c", file, "alice", "wonder land").CombinedOutput()
	if err != nil {
		t.Fatalf("mosquitto_passwd: %v\n%s", err, out)
	}
	users, err := ReadPasswordFile(file)
	if err != nil {
		t.Fatal(err)
	}
	ph, err = parseHash(users["alice"])
	if err != nil || !ph.check("wonder land") || ph.check("wonderland") {
		t.Fatalf("mosquitto_passwd's hash %q: %v", users["alice"], err)
	}
	for _, tc := range []struct{ content, want string }{
		{"bob\n", ":1: not a \"name:hash\""},
		{"# c\n\nbob:plain\n", ":3: user bob: not a \"$7$\""},
		{"bob:$7$0$AAAA$AAAA\n", "iteration count"},
		{"b b:" + h + "\n", ":1: not"},
		{"bob:" + h + "\nbob:" + h + "\n", "listed twice"},
	} {
		p := filepath.Join(t.TempDir(), "p")
		os.WriteFile(p, []byte(tc.content), 0o600)
		if _, err := ReadPasswordFile(p); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want an error with %q", tc.content, err, tc.want)
		}
	}
	if _, err := ReadPasswordFile(t.TempDir()); err == nil {
		t.Error("a directory read as a password file")
	}
}

func TestConfigValidate(t *testing.T) {
	h, _ := HashPassword("x", 10)
	for _, tc := range []struct {
		listen string
		cfg    Config
		want   string
	}{
		{"127.0.0.1:1883", DefaultConfig(), ""},
		{"[::1]:1883", Config{Anonymous: "none"}, ""},
		{"localhost:1883", DefaultConfig(), ""},
		{"0.0.0.0:1883", DefaultConfig(), "listens beyond loopback"},
		{":1883", DefaultConfig(), "listens beyond loopback"},
		{"192.168.1.5:1883", DefaultConfig(), "listens beyond loopback"},
		{"0.0.0.0:1883", Config{Anonymous: "operator", Users: []User{{Name: "ha", Role: "viewer", PasswordHash: h}}}, ""},
		{"127.0.0.1:1883", Config{Anonymous: "camera"}, "mqtt.embedded.anonymous"},
		{"127.0.0.1:1883", Config{Anonymous: "operator", Users: []User{{Name: "ha", Role: "admin", PasswordHash: h}}}, "users[0].role"},
		{"127.0.0.1:1883", Config{Anonymous: "operator", Users: []User{{Name: "h a", Role: "viewer", PasswordHash: h}}}, "users[0].name"},
		{"127.0.0.1:1883", Config{Anonymous: "operator", Users: []User{{Name: "ha", Role: "viewer"}}}, "users[0].password_hash"},
		{"127.0.0.1:1883", Config{Anonymous: "operator", PasswordFile: "/p", Users: []User{{Name: "ha", Role: "viewer"}}}, ""},
		{"127.0.0.1:1883", Config{Anonymous: "operator", Users: []User{{Name: "ha", Role: "viewer", PasswordHash: "secret"}}}, "users[0].password_hash: (hidden)"},
		{"127.0.0.1:1883", Config{Anonymous: "operator", Users: []User{{Name: "ha", Role: "viewer", Device: "x", PasswordHash: h}}}, "camera users only"},
		{"127.0.0.1:1883", Config{Anonymous: "operator", Users: []User{{Name: "cam.1", Role: "camera", PasswordHash: h}}}, "users[0].device"},
		{"127.0.0.1:1883", Config{Anonymous: "operator", Users: []User{{Name: "ha", Role: "viewer", PasswordHash: h}, {Name: "ha", Role: "operator", PasswordHash: h}}}, "listed twice"},
	} {
		err := tc.cfg.Validate(tc.listen)
		if (tc.want == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s %+v: %v, want %q", tc.listen, tc.cfg, err, tc.want)
		}
	}
}

// TestAnonymousOnlyOverLoopback asks the broker's gate directly about a
// client from another address, which a test on one machine cannot open.
func TestAnonymousOnlyOverLoopback(t *testing.T) {
	g, err := newGate(Options{Access: DefaultConfig(), Topics: exampleTopics, Device: "porch", ClientID: "whisker-porch"}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	g.srv = mqtt.New(nil)
	for _, tc := range []struct {
		remote, id string
		want       bool
	}{
		{"127.0.0.1:5000", "tool", true},
		{"[::1]:5000", "tool", true},
		{"192.168.1.20:5000", "tool", false},
		{"10.0.0.1:5000", "tool", false},
		{"[fe80::1]:5000", "tool", false},
		{"pipe", "tool", false},
		{"127.0.0.1:5000", "whisker-porch", false}, // the agent's own client id
	} {
		cl := &mqtt.Client{ID: tc.id}
		cl.Net.Remote = tc.remote
		if got := g.OnConnectAuthenticate(cl, packets.Packet{}); got != tc.want {
			t.Errorf("anonymous client %s from %s let in: %v, want %v", tc.id, tc.remote, got, tc.want)
		}
	}
}
