package broker

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
	"golang.org/x/time/rate"
)

// Limits of the embedded broker.
const (
	// maxConnections bounds open connections, authenticated or not.
	maxConnections = 128
	// maxClients bounds connected clients, maxSessions the sessions kept
	// (connected or not).
	maxClients  = 64
	maxSessions = 128
	// sessionExpiry is how long a disconnected client's session is kept.
	sessionExpiry = 24 * 60 * 60
	// maxQueued bounds the QoS 1 messages stored for one client, and the
	// writes waiting for it.
	maxQueued = 256
	// QoS 0 requests (label, cmd) are limited per client to requestRate a
	// second, in bursts of requestBurst, well under maxQueued: beyond it
	// the broker drops them, as the agent would (it sheds QoS 0 requests
	// when its queue is full). Without the limit a flood of them fills the
	// camera's queue of writes here, and a QoS 1 request that arrives
	// behind them is dropped by the broker with no retry.
	requestRate  = 50
	requestBurst = 100
	// PacketOverhead is what a packet carries beyond its payload (topic,
	// header, properties): the broker's packet limit is the payload limit
	// plus this.
	PacketOverhead = 64 << 10
)

// agentUser is the user name of the agent's own connection. It is not a
// valid configured user name, so no configured user can take it.
const agentUser = "@agent"

// Options configure the embedded broker.
type Options struct {
	// Listen is host:port (port 0 picks a free one).
	Listen string
	Access Config
	Topics Topics
	// MaxPayload is mqtt.max_payload: packets over it plus PacketOverhead
	// make the broker close the connection before reading them.
	MaxPayload int
	// Device and ClientID are the agent's own: its connection is a
	// camera of Device, and ClientID (and whisker-<device> of every camera
	// user) can be used by that camera alone.
	Device   string
	ClientID string
}

// Embedded is an MQTT broker inside the agent process, for setups with no
// broker of their own. Every client is authenticated and every publish,
// subscription and will checked against its role's rules.
type Embedded struct {
	srv    *mqtt.Server
	addr   string
	secret string
	gate   *gate
}

// Start starts the broker.
func Start(o Options, log *slog.Logger) (*Embedded, error) {
	if err := o.Access.Validate(o.Listen); err != nil {
		return nil, err
	}
	g, err := newGate(o, log.With("component", "broker"))
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return nil, fmt.Errorf("embedded broker: listen on %s: %w (set mqtt.embedded_listen, or mqtt.broker to use another broker)", o.Listen, err)
	}
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumPacketSize = uint32(o.MaxPayload + PacketOverhead)
	caps.MaximumClients = maxClients
	caps.MaximumSessionExpiryInterval = sessionExpiry
	caps.MaximumInflight = maxQueued
	caps.MaximumClientWritesPending = maxQueued
	caps.SharedSubAvailable = 0
	srv := mqtt.New(&mqtt.Options{
		InlineClient: false,
		Capabilities: caps,
		// The broker logs every refused connection; the gate logs them at a
		// limited rate instead.
		Logger: slog.New(minLevel{log.With("component", "broker").Handler(), slog.LevelError}),
	})
	g.srv = srv
	if err := srv.AddHook(g, nil); err != nil {
		ln.Close()
		return nil, err
	}
	lim := &limitListener{Listener: ln, slots: make(chan struct{}, maxConnections)}
	if err := srv.AddListener(listeners.NewNet("whisker", lim)); err != nil {
		ln.Close()
		return nil, fmt.Errorf("embedded broker: %w", err)
	}
	if err := srv.Serve(); err != nil {
		srv.Close()
		return nil, fmt.Errorf("embedded broker: %w", err)
	}
	return &Embedded{srv: srv, addr: ln.Addr().String(), secret: g.agentSecret, gate: g}, nil
}

// URL is the broker's address for clients.
func (b *Embedded) URL() string { return "tcp://" + b.addr }

// AgentCredentials are the user name and password of the agent's own
// connection: a camera of Options.Device. The password is made afresh at
// every start and never leaves the process.
func (b *Embedded) AgentCredentials() (user, password string) { return agentUser, b.secret }

// Refused counts refused connections, and denied publishes, subscriptions
// and wills.
func (b *Embedded) Refused() uint64 { return b.gate.refused.Load() }

// Close stops the broker.
func (b *Embedded) Close() error { return b.srv.Close() }

// principal is who a client is.
type principal struct {
	name   string // "" for anonymous clients
	role   Role
	device string
}

// gate is the hook that authenticates clients and checks what they do.
type gate struct {
	mqtt.HookBase
	log         *slog.Logger
	srv         *mqtt.Server
	topics      Topics
	anonymous   Role
	users       map[string]account
	agentDevice string
	agentSecret string
	// owners maps client ids that belong to one camera to its user.
	owners map[string]string

	// Password checks take one core at most; a password that checked
	// once is remembered (by its hash), so reconnects cost nothing.
	checking chan struct{}
	good     sync.Map // user name -> sha256 of the password that checked

	refused atomic.Uint64
	logged  atomic.Int64 // unix nanoseconds of the last refusal logged
	quiet   atomic.Uint64

	// limits holds each connected client's limiter of QoS 0 requests.
	limits sync.Map // *mqtt.Client -> *rate.Limiter
}

type account struct {
	role   Role
	device string
	hash   hash
}

func newGate(o Options, log *slog.Logger) (*gate, error) {
	g := &gate{log: log, topics: o.Topics, anonymous: Role(o.Access.Anonymous), users: map[string]account{},
		agentDevice: o.Device, owners: map[string]string{}, checking: make(chan struct{}, 1)}
	var secret [32]byte
	if _, err := rand.Read(secret[:]); err != nil {
		return nil, err
	}
	g.agentSecret = hex.EncodeToString(secret[:])
	var file map[string]string
	if o.Access.PasswordFile != "" {
		var err error
		if file, err = ReadPasswordFile(o.Access.PasswordFile); err != nil {
			return nil, fmt.Errorf("mqtt.embedded.password_file: %w", err)
		}
	}
	g.owners[o.ClientID] = agentUser
	g.owners["whisker-"+o.Device] = agentUser
	for _, u := range o.Access.Users {
		h := u.PasswordHash
		if fh, ok := file[u.Name]; ok {
			if h != "" && h != fh {
				return nil, fmt.Errorf("mqtt.embedded.users: %s has one password hash in the configuration and another in %s", u.Name, o.Access.PasswordFile)
			}
			h = fh
		}
		if h == "" {
			return nil, fmt.Errorf("mqtt.embedded.users: %s has no password hash, neither in the configuration nor in %s", u.Name, o.Access.PasswordFile)
		}
		ph, err := parseHash(h)
		if err != nil {
			return nil, fmt.Errorf("mqtt.embedded.users: %s: %w", u.Name, err)
		}
		if ph.iterations < WeakIterations {
			log.Warn("weak password hash: make it again with `whisker mqtt passwd`", "user", u.Name, "iterations", ph.iterations)
		}
		role, _ := ParseRole(u.Role)
		a := account{role: role, hash: ph}
		if role == Camera {
			a.device = u.device()
			if a.device == o.Device {
				return nil, fmt.Errorf("mqtt.embedded.users: %s is a camera of %s, the device this agent is", u.Name, o.Device)
			}
			if _, taken := g.owners["whisker-"+a.device]; taken {
				return nil, fmt.Errorf("mqtt.embedded.users: two cameras of device %s", a.device)
			}
			g.owners["whisker-"+a.device] = u.Name
		}
		g.users[u.Name] = a
	}
	for name := range file {
		if _, ok := g.users[name]; !ok {
			log.Warn("user in the password file has no role in mqtt.embedded.users; it cannot connect", "user", name)
		}
	}
	return g, nil
}

func (g *gate) ID() string { return "whisker-access" }

func (g *gate) Provides(b byte) bool {
	switch b {
	case mqtt.OnConnectAuthenticate, mqtt.OnACLCheck, mqtt.OnPublish, mqtt.OnWill, mqtt.OnDisconnect:
		return true
	}
	return false
}

// who says who a connected client is, from its user name.
func (g *gate) who(cl *mqtt.Client) (principal, bool) {
	name := string(cl.Properties.Username)
	switch {
	case name == "":
		return principal{role: g.anonymous}, g.anonymous != None
	case name == agentUser:
		return principal{name: name, role: Camera, device: g.agentDevice}, true
	}
	a, ok := g.users[name]
	return principal{name: name, role: a.role, device: a.device}, ok
}

func (g *gate) rules(p principal) []Rule { return Rules(p.role, p.device, g.topics) }

// refuse counts and logs a refusal; logs are limited to one a second, with
// the number left out.
func (g *gate) refuse(cl *mqtt.Client, what string, args ...any) {
	g.refused.Add(1)
	now := time.Now().UnixNano()
	last := g.logged.Load()
	if now-last < int64(time.Second) || !g.logged.CompareAndSwap(last, now) {
		g.quiet.Add(1)
		return
	}
	args = append(args, "client", cl.ID, "user", string(cl.Properties.Username), "remote", cl.Net.Remote)
	if n := g.quiet.Swap(0); n > 0 {
		args = append(args, "not_logged_since", n)
	}
	g.log.Warn(what, args...)
}

// OnConnectAuthenticate lets a client in when its user name and password
// check (or it is anonymous over loopback, when anonymous clients have a
// role), its client id is not another camera's, its will is a message it
// may publish, and the session table has room.
func (g *gate) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	name, password := string(pk.Connect.Username), pk.Connect.Password
	switch {
	case name == "":
		if g.anonymous == None {
			g.refuse(cl, "MQTT connection refused: anonymous clients are not let in (mqtt.embedded.anonymous: none)")
			return false
		}
		if !loopbackAddr(cl.Net.Remote) {
			g.refuse(cl, "MQTT connection refused: anonymous clients are let in over loopback only")
			return false
		}
	case name == agentUser:
		if subtle.ConstantTimeCompare(password, []byte(g.agentSecret)) != 1 {
			g.refuse(cl, "MQTT connection refused: wrong password")
			return false
		}
	default:
		if !g.checkPassword(name, password) {
			g.refuse(cl, "MQTT connection refused: unknown user or wrong password")
			return false
		}
	}
	if owner, ok := g.owners[cl.ID]; ok && owner != name {
		g.refuse(cl, "MQTT connection refused: the client id belongs to a camera", "owner", owner)
		return false
	}
	p, _ := g.who(cl)
	if pk.Connect.WillFlag && !Allowed(g.rules(p), pk.Connect.WillTopic, true) {
		g.refuse(cl, "MQTT connection refused: a will on a topic the client may not publish to", "topic", pk.Connect.WillTopic)
		return false
	}
	if _, known := g.srv.Clients.Get(cl.ID); !known && g.srv.Clients.Len() >= maxSessions {
		g.refuse(cl, "MQTT connection refused: the broker keeps its maximum number of sessions", "max", maxSessions)
		return false
	}
	return true
}

// checkPassword checks a user's password against its hash, one check at
// a time; an unknown user costs the same work as a known one.
func (g *gate) checkPassword(name string, password []byte) bool {
	sum := sha256.Sum256(password)
	a, known := g.users[name]
	if v, ok := g.good.Load(name); ok && known && subtle.ConstantTimeCompare(v.([]byte), sum[:]) == 1 {
		return true
	}
	h := a.hash
	if !known {
		h = hash{iterations: DefaultIterations, salt: make([]byte, saltLen), sum: make([]byte, hashLen)}
	}
	g.checking <- struct{}{}
	ok := h.check(string(password))
	<-g.checking
	if !ok || !known {
		return false
	}
	g.good.Store(name, sum[:])
	return true
}

// OnACLCheck allows a publish (write) or a subscription (read) that the
// client's role allows.
func (g *gate) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	p, ok := g.who(cl)
	if ok && Allowed(g.rules(p), topic, write) {
		return true
	}
	what := "MQTT subscription denied"
	if write {
		what = "MQTT publish denied"
	}
	g.refuse(cl, what, "topic", topic, "role", string(p.role))
	return false
}

// OnPublish delivers a retained request (label, cmd) as a plain one: it is
// not kept, so it is never acted on again at a reconnect.
func (g *gate) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if !requestTopic(g.topics, pk.TopicName) {
		return pk, nil
	}
	if pk.FixedHeader.Qos == 0 {
		l, _ := g.limits.LoadOrStore(cl, rate.NewLimiter(requestRate, requestBurst))
		if !l.(*rate.Limiter).Allow() {
			g.refuse(cl, "QoS 0 requests beyond the rate limit dropped (send requests with QoS 1)", "topic", pk.TopicName)
			return pk, packets.ErrRejectPacket
		}
	}
	if pk.FixedHeader.Retain {
		g.refuse(cl, "retained request delivered once and not kept", "topic", pk.TopicName)
		pk.FixedHeader.Retain = false
	}
	return pk, nil
}

// OnDisconnect forgets the client's request limiter.
func (g *gate) OnDisconnect(cl *mqtt.Client, _ error, _ bool) { g.limits.Delete(cl) }

// OnWill does the same for a will on a request topic.
func (g *gate) OnWill(cl *mqtt.Client, will mqtt.Will) (mqtt.Will, error) {
	if will.Retain && requestTopic(g.topics, will.TopicName) {
		will.Retain = false
	}
	return will, nil
}

func loopbackAddr(remote string) bool {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// limitListener bounds the open connections, and keeps accepting after an
// error that passes (out of file descriptors, say) instead of stopping the
// broker, as a plain listener's Serve loop would.
type limitListener struct {
	net.Listener
	slots chan struct{}
}

func (l *limitListener) Accept() (net.Conn, error) {
	l.slots <- struct{}{}
	delay := 5 * time.Millisecond
	for {
		c, err := l.Listener.Accept()
		if err == nil {
			return &limitConn{Conn: c, release: func() { <-l.slots }}, nil
		}
		if errors.Is(err, net.ErrClosed) {
			<-l.slots
			return nil, err
		}
		time.Sleep(delay)
		delay = min(2*delay, time.Second)
	}
}

type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// minLevel drops records below a level.
type minLevel struct {
	slog.Handler
	min slog.Level
}

func (h minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h minLevel) WithAttrs(as []slog.Attr) slog.Handler {
	return minLevel{h.Handler.WithAttrs(as), h.min}
}

func (h minLevel) WithGroup(name string) slog.Handler {
	return minLevel{h.Handler.WithGroup(name), h.min}
}
