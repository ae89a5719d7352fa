package broker

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/whiskercam/whisker/internal/testenv"
)

// The same roles are checked against the embedded broker and against a
// real mosquitto running the recipe in examples/mosquitto, with the same
// clients doing the same things.

var exampleMembers = []Member{
	{Name: "porch", Role: Camera, Device: "porch"},
	{Name: "garden", Role: Camera, Device: "garden"},
	{Name: "me", Role: Operator},
	{Name: "homeassistant", Role: Viewer},
}

// world is a running broker and the credentials of one user of each kind.
type world struct {
	name  string
	url   string
	creds map[string][2]string // camera porch, camera garden, operator, viewer
	// takenOver says whether a second client with the camera's client id
	// (or its user name as one) takes the first one's place.
	retainsRequests bool
	// anonymousOnLoopback: anonymous clients on loopback are let in.
	anonymousOnLoopback bool
	refused             func() uint64
	// log is the broker's log, for failures.
	log func() string
}

const (
	porch, garden, operator, viewer = "porch", "garden", "operator", "viewer"
)

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func passwords(t testing.TB) map[string]string {
	return map[string]string{"porch": "porch-pw", "garden": "garden-pw", "me": "me-pw", "homeassistant": "ha-pw"}
}

// embeddedWorld runs the embedded broker of camera porch, with camera
// garden, an operator and a viewer as users.
func embeddedWorld(t *testing.T) *world {
	pw := passwords(t)
	var users []User
	for _, m := range exampleMembers[1:] {
		h, err := HashPassword(pw[m.Name], 1000)
		if err != nil {
			t.Fatal(err)
		}
		users = append(users, User{Name: m.Name, Role: string(m.Role), Device: m.Device, PasswordHash: h})
	}
	b, err := Start(Options{Listen: "127.0.0.1:0", Access: Config{Anonymous: "operator", Users: users}, Topics: exampleTopics,
		MaxPayload: 1 << 20, Device: "porch", ClientID: "whisker-porch"}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	user, secret := b.AgentCredentials()
	return &world{name: "embedded", url: b.URL(), refused: b.Refused, anonymousOnLoopback: true, creds: map[string][2]string{
		porch: {user, secret}, garden: {"garden", pw["garden"]}, operator: {"me", pw["me"]}, viewer: {"homeassistant", pw["homeassistant"]},
	}}
}

// mosquittoWorld runs mosquitto with examples/mosquitto/whisker.conf and
// whisker.acl, and a password file of the four users.
func mosquittoWorld(t *testing.T) *world {
	pw := passwords(t)
	root := testenv.Root(t)
	dir := t.TempDir()
	var pwLines []string
	for _, m := range exampleMembers {
		h, err := HashPassword(pw[m.Name], 1000)
		if err != nil {
			t.Fatal(err)
		}
		pwLines = append(pwLines, m.Name+":"+h)
	}
	pwFile := filepath.Join(dir, "whisker.passwd")
	if err := os.WriteFile(pwFile, []byte(strings.Join(pwLines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	recipe, err := os.ReadFile(filepath.Join(root, "examples/mosquitto/whisker.conf"))
	if err != nil {
		t.Fatal(err)
	}
	m := testenv.StartMosquittoListeners(t, func(port int, _ string) []string {
		var lines []string
		for _, l := range strings.Split(string(recipe), "\n") {
			key, _, _ := strings.Cut(strings.TrimSpace(l), " ")
			switch key {
			case "", "#":
			case "listener":
				lines = append(lines, fmt.Sprintf("listener %d 127.0.0.1", port))
			case "password_file":
				lines = append(lines, "password_file "+pwFile)
			case "acl_file":
				lines = append(lines, "acl_file "+filepath.Join(root, "examples/mosquitto/whisker.acl"))
			default:
				if !strings.HasPrefix(key, "#") {
					lines = append(lines, l)
				}
			}
		}
		return lines
	})
	logf := func() string { b, _ := os.ReadFile(filepath.Join(m.Dir(), "mosquitto.log")); return string(b) }
	return &world{name: "mosquitto", url: m.URL(), retainsRequests: true, log: logf, creds: map[string][2]string{
		porch: {"porch", pw["porch"]}, garden: {"garden", pw["garden"]}, operator: {"me", pw["me"]}, viewer: {"homeassistant", pw["homeassistant"]},
	}}
}

func TestMosquittoACLIsTheRoles(t *testing.T) {
	acl, err := MosquittoACL(exampleMembers, exampleTopics)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(testenv.Root(t), "examples/mosquitto/whisker.acl")
	if *update {
		if err := os.WriteFile(path, []byte(acl), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	shipped, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(shipped) != acl {
		t.Fatalf("%s is not what whisker mqtt acl makes of the example users (go test -run TestMosquittoACLIsTheRoles ./agent/broker -update):\n%s", path, acl)
	}
}

// client is a test MQTT client that keeps every message it receives.
type client struct {
	t    *testing.T
	who  string
	c    paho.Client
	msgs chan paho.Message
	lost atomic.Bool
}

func (w *world) dial(t *testing.T, who, clientID string) *client {
	t.Helper()
	c, err := w.tryDial(t, who, clientID)
	if err != nil {
		t.Fatalf("%s: connect as %s: %v", w.name, who, err)
	}
	return c
}

func (w *world) tryDial(t *testing.T, who, clientID string) (*client, error) {
	cr := w.creds[who]
	cl := &client{t: t, who: who, msgs: make(chan paho.Message, 1024)}
	if clientID == "" {
		clientID = fmt.Sprintf("t-%s-%d", who, time.Now().UnixNano())
	}
	opts := paho.NewClientOptions().AddBroker(w.url).SetClientID(clientID).SetUsername(cr[0]).SetPassword(cr[1]).
		SetCleanSession(true).SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(10 * time.Second).
		SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) { cl.msgs <- m }).
		SetConnectionLostHandler(func(paho.Client, error) { cl.lost.Store(true) })
	cl.c = paho.NewClient(opts)
	tok := cl.c.Connect()
	if !tok.WaitTimeout(15*time.Second) || tok.Error() != nil {
		return nil, fmt.Errorf("%v", tokenErr(tok))
	}
	t.Cleanup(func() { cl.c.Disconnect(50) })
	return cl, nil
}

func tokenErr(tok paho.Token) error {
	if tok.Error() != nil {
		return tok.Error()
	}
	return errors.New("timed out")
}

func (c *client) sub(filter string) {
	c.t.Helper()
	tok := c.c.Subscribe(filter, 1, nil)
	if !tok.WaitTimeout(15*time.Second) || tok.Error() != nil {
		c.t.Fatalf("%s: subscribe %s: %v", c.who, filter, tokenErr(tok))
	}
}

func (c *client) unsub(filter string) {
	c.t.Helper()
	if tok := c.c.Unsubscribe(filter); !tok.WaitTimeout(15*time.Second) || tok.Error() != nil {
		c.t.Fatalf("%s: unsubscribe %s: %v", c.who, filter, tokenErr(tok))
	}
}

func (c *client) pub(topic, payload string, qos byte, retained bool) error {
	tok := c.c.Publish(topic, qos, retained, payload)
	if !tok.WaitTimeout(15*time.Second) || tok.Error() != nil {
		return tokenErr(tok)
	}
	return nil
}

// sync returns once the broker has handled everything this client sent
// before: a subscription's acknowledgement comes after them.
func (c *client) sync() {
	c.t.Helper()
	c.sub("whisker/sync/" + c.who)
}

// until reads messages until one carries payload, and says whether one
// carrying probe came first.
func (c *client) until(payload, probe string) bool {
	c.t.Helper()
	seen := false
	deadline := time.After(15 * time.Second)
	for {
		select {
		case m := <-c.msgs:
			switch string(m.Payload()) {
			case probe:
				seen = true
			case payload:
				return seen
			}
		case <-deadline:
			c.t.Fatalf("%s: %q did not arrive within 15 s", c.who, payload)
			return false
		}
	}
}

// roles are one connected client of each kind.
type roles map[string]*client

func (w *world) connectAll(t *testing.T) roles {
	r := roles{}
	for _, who := range []string{porch, garden, operator, viewer} {
		r[who] = w.dial(t, who, "")
	}
	return r
}

var probes atomic.Uint64

func next(what string) string { return fmt.Sprintf("%s-%d", what, probes.Add(1)) }

// sentinel is a topic each reader may read and the writer that may write
// it, for knowing that an earlier message would have arrived by now.
func (r roles) sentinel(reader string) (topic string, writer *client) {
	switch reader {
	case porch:
		return "whisker/porch/label", r[operator]
	case garden:
		return "whisker/household/home/samples", r[porch]
	}
	return "whisker/porch/status", r[porch]
}

// writes says whether a publish by who on topic reaches a subscriber that
// may read it.
func (r roles) writes(t *testing.T, who, topic string) bool {
	monitor := r[operator]
	if !strings.HasPrefix(topic, "whisker/") {
		monitor = r[viewer]
	}
	st, sw := r.sentinel(monitor.who)
	monitor.sub(topic)
	monitor.sub(st)
	defer monitor.unsub(topic)
	probe, done := next("probe"), next("sentinel")
	if err := r[who].pub(topic, probe, 0, false); err != nil {
		t.Fatalf("%s publishes on %s: %v", who, topic, err)
	}
	r[who].sync()
	if err := sw.pub(st, done, 1, false); err != nil {
		t.Fatal(err)
	}
	return monitor.until(done, probe)
}

// reads says whether who, subscribing to filter, receives what writer
// publishes on topic.
func (r roles) reads(t *testing.T, who, filter, topic, writer string) bool {
	st, sw := r.sentinel(who)
	reader := r[who]
	reader.sub(filter)
	reader.sub(st)
	defer reader.unsub(filter)
	probe, done := next("probe"), next("sentinel")
	if err := r[writer].pub(topic, probe, 1, false); err != nil {
		t.Fatalf("%s publishes on %s: %v", writer, topic, err)
	}
	r[writer].sync()
	if err := sw.pub(st, done, 1, false); err != nil {
		t.Fatal(err)
	}
	return reader.until(done, probe)
}

func TestRolesOnBothBrokers(t *testing.T) {
	for _, start := range []func(*testing.T) *world{embeddedWorld, mosquittoWorld} {
		w := start(t)
		t.Run(w.name, func(t *testing.T) {
			t.Cleanup(func() {
				if t.Failed() && w.log != nil {
					t.Logf("%s log:\n%s", w.name, w.log())
				}
			})
			t.Run("writes", func(t *testing.T) {
				r := w.connectAll(t)
				for _, tc := range []struct {
					who, topic string
					want       bool
				}{
					{porch, "whisker/porch/status", true},
					{porch, "whisker/porch/result", true},
					{porch, "whisker/porch/snapshot/latest", true},
					{porch, "whisker/porch/pet/tigger_49df5f", true},
					{porch, "homeassistant/sensor/whisker_porch/tigger_49df5f_last_seen/config", true},
					{porch, "whisker/household/home/samples", true},
					{porch, "whisker/porch/label", false},
					{porch, "whisker/porch/cmd", false},
					{porch, "whisker/garden/status", false},
					{porch, "whisker/garden/result", false},
					{porch, "homeassistant/sensor/whisker_garden/x/config", false},
					{porch, "whisker/household/other/samples", false},
					{garden, "whisker/garden/status", true},
					{garden, "whisker/porch/status", false},
					{garden, "whisker/porch/cmd", false},
					{operator, "whisker/porch/label", true},
					{operator, "whisker/porch/cmd", true},
					{operator, "whisker/garden/cmd", true},
					{operator, "whisker/porch/status", false},
					{operator, "whisker/porch/result", false},
					{operator, "whisker/porch/pet/tigger_49df5f", false},
					{operator, "whisker/porch/snapshot/latest", false},
					{operator, "whisker/household/home/samples", false},
					{operator, "homeassistant/sensor/whisker_porch/x/config", false},
					{viewer, "homeassistant/status", true},
					{viewer, "whisker/porch/label", false},
					{viewer, "whisker/porch/cmd", false},
					{viewer, "whisker/porch/status", false},
					{viewer, "whisker/porch/sighting", false},
					{viewer, "whisker/porch/snapshot/latest", false},
					{viewer, "whisker/household/home/samples", false},
					{viewer, "homeassistant/sensor/whisker_porch/x/config", false},
				} {
					if got := r.writes(t, tc.who, tc.topic); got != tc.want {
						t.Errorf("%s publishing on %s reached a subscriber: %v, want %v", tc.who, tc.topic, got, tc.want)
					}
				}
			})
			t.Run("reads", func(t *testing.T) {
				r := w.connectAll(t)
				for _, tc := range []struct {
					who, filter, topic, writer string
					want                       bool
				}{
					{viewer, "whisker/porch/status", "whisker/porch/status", porch, true},
					{viewer, "whisker/+/sighting", "whisker/porch/sighting", porch, true},
					{viewer, "whisker/porch/pet/#", "whisker/porch/pet/tigger_49df5f", porch, true},
					{viewer, "whisker/porch/snapshot/latest", "whisker/porch/snapshot/latest", porch, true},
					{viewer, "homeassistant/#", "homeassistant/sensor/whisker_porch/x/config", porch, true},
					{viewer, "whisker/porch/result", "whisker/porch/result", porch, false},
					{viewer, "whisker/porch/label", "whisker/porch/label", operator, false},
					{viewer, "whisker/porch/cmd", "whisker/porch/cmd", operator, false},
					{viewer, "whisker/porch/snapshot/+", "whisker/porch/snapshot/6b08-1", porch, false},
					{viewer, "whisker/household/home/samples", "whisker/household/home/samples", porch, false},
					{viewer, "whisker/#", "whisker/porch/result", porch, false},
					{porch, "whisker/porch/label", "whisker/porch/label", operator, true},
					{porch, "whisker/porch/cmd", "whisker/porch/cmd", operator, true},
					{porch, "whisker/household/home/samples", "whisker/household/home/samples", garden, true},
					{porch, "whisker/garden/cmd", "whisker/garden/cmd", operator, false},
					{porch, "whisker/garden/status", "whisker/garden/status", garden, false},
					{garden, "whisker/porch/label", "whisker/porch/label", operator, false},
					{garden, "whisker/garden/cmd", "whisker/garden/cmd", operator, true},
					{operator, "whisker/porch/result", "whisker/porch/result", porch, true},
					{operator, "whisker/porch/snapshot/#", "whisker/porch/snapshot/6b08-1", porch, true},
					{operator, "whisker/household/home/samples", "whisker/household/home/samples", porch, true},
					{operator, "homeassistant/#", "homeassistant/sensor/whisker_porch/x/config", porch, false},
				} {
					if got := r.reads(t, tc.who, tc.filter, tc.topic, tc.writer); got != tc.want {
						t.Errorf("%s subscribed to %s received %s's message on %s: %v, want %v", tc.who, tc.filter, tc.writer, tc.topic, got, tc.want)
					}
				}
			})
			t.Run("wrong passwords", func(t *testing.T) {
				for _, cr := range [][2]string{{"me", "wrong"}, {"me", ""}, {"nobody", "me-pw"}, {"homeassistant", "me-pw"}} {
					saved := w.creds[operator]
					w.creds[operator] = cr
					_, err := w.tryDial(t, operator, "")
					w.creds[operator] = saved
					if err == nil {
						t.Errorf("user %q with password %q let in", cr[0], cr[1])
					}
				}
			})
			t.Run("anonymous", func(t *testing.T) {
				conn, code, err := rawConnect(w.url, next("anon"), "", "", nil)
				if err == nil {
					conn.Close()
				}
				if (err == nil) != w.anonymousOnLoopback {
					t.Errorf("an anonymous client on loopback let in: %v (code %d), want %v", err == nil, code, w.anonymousOnLoopback)
				}
			})
			t.Run("camera client id", func(t *testing.T) {
				cam := w.dial(t, porch, "whisker-porch")
				cam.sub("whisker/porch/label")
				for _, who := range []string{viewer, operator, garden} {
					for _, id := range []string{"whisker-porch", "porch"} {
						if c, err := w.tryDial(t, who, id); err == nil {
							c.c.Disconnect(50)
						}
						// Whether refused or renamed, the camera keeps its
						// connection and its session.
						if err := cam.pub("whisker/porch/status", next("alive"), 1, false); err != nil || cam.lost.Load() {
							t.Fatalf("%s connecting with client id %q took the camera's connection: %v", who, id, err)
						}
					}
				}
			})
			t.Run("wills", func(t *testing.T) {
				// A will is a publish made later in the client's name. One on a
				// topic the client may not publish to is refused at connect
				// (embedded) or never sent (mosquitto): the camera's own will,
				// sent after, arrives first.
				// (With mosquitto a user name is the client id: the monitor
				// is never the user whose will is tried.)
				opMonitor := w.dial(t, operator, "")
				opMonitor.sub("whisker/porch/cmd")
				opMonitor.sub("whisker/porch/status")
				for _, tc := range []struct{ who, topic string }{
					{viewer, "whisker/porch/cmd"}, {viewer, "whisker/porch/status"}, {garden, "whisker/porch/cmd"},
					{garden, "whisker/porch/status"}, {operator, "whisker/porch/status"},
				} {
					monitor := opMonitor
					if tc.who == operator {
						monitor = w.dial(t, viewer, "")
						monitor.sub("whisker/porch/status")
					}
					cr := w.creds[tc.who]
					denied := next("will")
					conn, code, err := rawConnect(w.url, next("will-client"), cr[0], cr[1], &rawWill{topic: tc.topic, payload: denied})
					if err == nil {
						conn.Close() // without DISCONNECT: the broker sends the will, if it kept one
					}
					t.Logf("%s connecting with a will on %s: code %d, %v", tc.who, tc.topic, code, err)
					cr = w.creds[porch]
					allowed := next("will")
					conn, _, err = rawConnect(w.url, next("will-client"), cr[0], cr[1], &rawWill{topic: "whisker/porch/status", payload: allowed})
					if err != nil {
						t.Fatalf("camera with a will on its status: %v", err)
					}
					conn.Close()
					if monitor.until(allowed, denied) {
						t.Errorf("the will of %s on %s was delivered", tc.who, tc.topic)
					}
				}
			})
			t.Run("retained requests", func(t *testing.T) {
				r := roles{operator: w.dial(t, operator, ""), garden: w.dial(t, garden, "")}
				probe := next("retained-label")
				if err := r[operator].pub("whisker/garden/label", probe, 1, true); err != nil {
					t.Fatal(err)
				}
				done := next("retained-sample")
				if err := r[garden].pub("whisker/household/home/samples", done, 1, true); err != nil {
					t.Fatal(err)
				}
				later := w.dial(t, garden, "")
				later.sub("whisker/garden/label")
				later.sub("whisker/household/home/samples")
				kept := later.until(done, probe)
				if kept != w.retainsRequests {
					t.Errorf("a retained label is kept by the broker: %v, want %v", kept, w.retainsRequests)
				}
				r[operator].pub("whisker/garden/label", "", 1, true) // clear it
			})
			t.Run("150 MB publish", func(t *testing.T) {
				cr := w.creds[operator]
				conn, code, err := rawConnect(w.url, next("big"), cr[0], cr[1], nil)
				if err != nil {
					t.Fatalf("connect: code %d, %v", code, err)
				}
				defer conn.Close()
				const size = 150 << 20
				written, err := rawHugePublish(conn, "whisker/porch/label", size)
				t.Logf("the broker closed the connection after %d of %d bytes: %v", written, size, err)
				if err == nil || written >= size/2 {
					t.Fatalf("the broker took %d bytes of a %d-byte publish (%v)", written, size, err)
				}
				// The broker still serves.
				c := w.dial(t, operator, "")
				if err := c.pub("whisker/porch/cmd", next("after"), 1, false); err != nil {
					t.Fatal(err)
				}
			})
		})
	}
}

// rawWill is a will for rawConnect.
type rawWill struct{ topic, payload string }

// rawConnect opens an MQTT 3.1.1 connection by hand, so that a test can
// send what no client library would (a will it then abandons, a packet of
// any size) and close the socket without DISCONNECT. It returns the
// CONNACK's return code.
func rawConnect(url, clientID, user, password string, will *rawWill) (net.Conn, byte, error) {
	return rawConnectSession(url, clientID, user, password, will, true)
}

// rawConnectSession is rawConnect with the clean session flag given.
func rawConnectSession(url, clientID, user, password string, will *rawWill, clean bool) (net.Conn, byte, error) {
	conn, err := net.DialTimeout("tcp", strings.TrimPrefix(url, "tcp://"), 10*time.Second)
	if err != nil {
		return nil, 0, err
	}
	var body bytes.Buffer
	str := func(s string) {
		binary.Write(&body, binary.BigEndian, uint16(len(s)))
		body.WriteString(s)
	}
	str("MQTT")
	body.WriteByte(4)
	flags := byte(0)
	if clean {
		flags |= 0x02
	}
	if user != "" {
		flags |= 0x80 | 0x40
	}
	if will != nil {
		flags |= 0x04 | 0x08 // will, QoS 1
	}
	body.WriteByte(flags)
	binary.Write(&body, binary.BigEndian, uint16(30))
	str(clientID)
	if will != nil {
		str(will.topic)
		str(will.payload)
	}
	if user != "" {
		str(user)
		str(password)
	}
	pkt := append([]byte{0x10}, remainingLength(body.Len())...)
	conn.SetDeadline(time.Now().Add(15 * time.Second))
	if _, err := conn.Write(append(pkt, body.Bytes()...)); err != nil {
		conn.Close()
		return nil, 0, err
	}
	ack := make([]byte, 4)
	if _, err := io.ReadFull(bufio.NewReader(conn), ack); err != nil {
		conn.Close()
		return nil, 0, fmt.Errorf("no CONNACK: %w", err)
	}
	conn.SetDeadline(time.Time{})
	if ack[0] != 0x20 || ack[3] != 0 {
		conn.Close()
		return nil, ack[3], fmt.Errorf("connection refused, code %d", ack[3])
	}
	return conn, 0, nil
}

func remainingLength(n int) []byte {
	var out []byte
	for {
		b := byte(n % 128)
		n /= 128
		if n > 0 {
			b |= 0x80
		}
		out = append(out, b)
		if n == 0 {
			return out
		}
	}
}

// rawHugePublish sends the header of a QoS 0 publish of size bytes, then
// zeros until the broker closes the connection or size bytes are sent.
func rawHugePublish(conn net.Conn, topic string, size int) (int, error) {
	var hdr bytes.Buffer
	binary.Write(&hdr, binary.BigEndian, uint16(len(topic)))
	hdr.WriteString(topic)
	pkt := append([]byte{0x30}, remainingLength(hdr.Len()+size)...)
	pkt = append(pkt, hdr.Bytes()...)
	conn.SetWriteDeadline(time.Now().Add(60 * time.Second))
	if _, err := conn.Write(pkt); err != nil {
		return 0, err
	}
	chunk := make([]byte, 64<<10)
	written := 0
	for written < size {
		n, err := conn.Write(chunk[:min(len(chunk), size-written)])
		written += n
		if err != nil {
			return written, err
		}
	}
	return written, nil
}

// TestEmbeddedBrokerBoundsConnectionsAndSessions: idle connections and
// persistent sessions are bounded; a client connected before the flood
// keeps working.
func TestEmbeddedBrokerBoundsConnectionsAndSessions(t *testing.T) {
	w := embeddedWorld(t)
	op := w.dial(t, operator, "")
	op.sub("whisker/porch/status")
	cam := w.dial(t, porch, "")
	alive := func() {
		t.Helper()
		done := next("alive")
		if err := cam.pub("whisker/porch/status", done, 1, false); err != nil {
			t.Fatal(err)
		}
		op.until(done, "")
	}
	// Connections that never send CONNECT.
	var idle []net.Conn
	for range maxConnections + 50 {
		c, err := net.Dial("tcp", strings.TrimPrefix(w.url, "tcp://"))
		if err != nil {
			break // the backlog is full: also a bound
		}
		idle = append(idle, c)
	}
	alive()
	for _, c := range idle {
		c.Close()
	}
	// Persistent sessions of new client ids, until refused.
	cr := w.creds[operator]
	refusedAt := 0
	for i := range maxSessions + 10 {
		conn, _, err := rawConnectSession(w.url, fmt.Sprintf("persist-%d", i), cr[0], cr[1], nil, false)
		if err != nil {
			refusedAt = i
			break
		}
		conn.Close()
	}
	if refusedAt == 0 || refusedAt > maxSessions {
		t.Fatalf("persistent sessions of new client ids refused from the %dth on, want at most %d kept", refusedAt, maxSessions)
	}
	t.Logf("the %dth new persistent session was refused", refusedAt+1)
	alive()
	// A client id the broker knows still connects.
	if conn, _, err := rawConnectSession(w.url, "persist-0", cr[0], cr[1], nil, false); err != nil {
		t.Fatalf("a known session refused: %v", err)
	} else {
		conn.Close()
	}
}
