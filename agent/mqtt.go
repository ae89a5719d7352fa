package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/whiskercam/whisker/internal/wait"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/whiskercam/whisker/agent/config"
	"github.com/whiskercam/whisker/agent/protocol"
)

// Inbound is a message from a request topic. Ack must be called once the
// request's outcome is durable and answered; until then the broker keeps
// the message for redelivery.
type Inbound struct {
	Topic   string // protocol.TopicLabel or protocol.TopicCmd
	Payload []byte
	// Retained: the broker kept the message and delivers it again at
	// every subscription; it is never acted on (it was, when published).
	Retained bool
	Ack      func()
	// Reply, when set, receives the answer instead of the result topic
	// (requests from the web page). It must have room for one.
	Reply chan<- protocol.Result
}

// Bus is the agent's MQTT connection. Handlers only hand messages off;
// sightings go through a bounded queue that drops the oldest when the
// broker is slow or away.
type Bus struct {
	cfg    config.MQTTConfig
	log    *slog.Logger
	url    string
	prefix string
	client paho.Client

	// ctx is Run's context: waits end when the agent stops.
	ctx     context.Context
	inbound chan<- Inbound
	// Extra maps further topics to subscribe to (full names) to the name
	// their messages carry in Inbound.Topic. Set before Run.
	Extra     map[string]string
	status    func() protocol.Status
	connected func()
	out       chan []byte
	dropped   atomic.Uint64
	lost      atomic.Uint64
	up        atomic.Bool
	everUp    chan struct{}
	everOnce  atomic.Bool
	// shed counts QoS 0 requests dropped because the request queue was
	// full: nothing else bounds them.
	shed atomic.Uint64

	pauseMu sync.Mutex
	paused  map[string]bool // subscriptions let go of for now (full names)
}

// sightingQueue bounds sightings waiting for the broker.
const sightingQueue = 256

// NewBus prepares a connection to url for device. inbound receives label
// and command messages; status supplies the retained status published on
// every (re)connect; connected, if set, runs after each (re)connect.
func NewBus(cfg config.MQTTConfig, device, url string, log *slog.Logger, inbound chan<- Inbound, status func() protocol.Status, connected func()) (*Bus, error) {
	b := &Bus{
		ctx: context.Background(),
		cfg: cfg, log: log, url: url,
		prefix:  cfg.TopicPrefix + "/" + device + "/",
		inbound: inbound, status: status, connected: connected,
		out:    make(chan []byte, sightingQueue),
		everUp: make(chan struct{}),
	}
	tlsCfg, err := cfg.TLS.Build(url)
	if err != nil {
		return nil, err
	}
	offline, _ := json.Marshal(protocol.Status{State: "offline", Device: device})
	opts := paho.NewClientOptions().
		AddBroker(url).
		SetClientID(clientID(cfg, device)).
		SetUsername(cfg.Username).
		SetPassword(cfg.Password).
		// A persistent session: the broker queues QoS 1 labels and
		// commands sent while the agent is away.
		SetCleanSession(false).
		SetResumeSubs(true).
		SetAutoAckDisabled(true).
		// Each message is handed to its handler in a goroutine of its
		// own, so a handler waiting for the request queue never stalls
		// the client (acknowledgements of our own publishes included).
		// The broker bounds how many unacknowledged messages are in
		// flight, so these goroutines are bounded too.
		SetOrderMatters(false).
		SetKeepAlive(cfg.KeepAlive).
		SetConnectTimeout(10*time.Second).
		SetAutoReconnect(true).
		SetConnectRetry(true).
		SetConnectRetryInterval(2*time.Second).
		SetMaxReconnectInterval(30*time.Second).
		SetWriteTimeout(10*time.Second).
		SetBinaryWill(b.Topic(protocol.TopicStatus), offline, 1, true).
		SetOnConnectHandler(b.onConnect).
		SetConnectionLostHandler(func(_ paho.Client, err error) {
			b.up.Store(false)
			b.lost.Add(1)
			log.Warn("MQTT connection lost; reconnecting", "broker", url, "err", err)
		}).
		SetReconnectingHandler(func(paho.Client, *paho.ClientOptions) {
			log.Info("MQTT reconnecting", "broker", url)
		}).
		SetConnectionNotificationHandler(func(_ paho.Client, n paho.ConnectionNotification) {
			if f, ok := n.(paho.ConnectionNotificationFailed); ok {
				log.Warn("MQTT connection failed; retrying", "broker", url, "err", f.Reason, "hint", protocol.ConnectHint(f.Reason))
			}
		})
	if tlsCfg != nil {
		opts.SetTLSConfig(tlsCfg)
	}
	b.client = paho.NewClient(opts)
	return b, nil
}

// clientID is the agent's MQTT client id: mqtt.client_id, or
// whisker-<device>.
func clientID(cfg config.MQTTConfig, device string) string {
	if cfg.ClientID != "" {
		return cfg.ClientID
	}
	return "whisker-" + device
}

// Topic is the full name of one of the device's topics.
func (b *Bus) Topic(name string) string { return b.prefix + name }

// Connected reports whether the broker connection is up.
func (b *Bus) Connected() bool { return b.up.Load() }

// Reconnects is the number of lost connections so far.
func (b *Bus) Reconnects() uint64 { return b.lost.Load() }

// Dropped is the number of sightings dropped while the broker was slow or away.
func (b *Bus) Dropped() uint64 { return b.dropped.Load() }

// Ready is closed once the first connection is up.
func (b *Bus) Ready() <-chan struct{} { return b.everUp }

// subscriptions maps the topics the agent subscribes to (full names) to
// the name their messages carry in Inbound.Topic.
func (b *Bus) subscriptions() map[string]string {
	subs := map[string]string{b.Topic(protocol.TopicLabel): protocol.TopicLabel, b.Topic(protocol.TopicCmd): protocol.TopicCmd}
	for topic, name := range b.Extra {
		subs[topic] = name
	}
	return subs
}

// route registers a handler for every subscription before the first
// connect: with a persistent session the broker delivers queued messages
// right after CONNACK, before a subscription made in onConnect could add
// its route, and a message without a route is never acknowledged, so it
// would hold the broker's in-flight window until the next reconnect.
func (b *Bus) route() {
	for topic, name := range b.subscriptions() {
		b.client.AddRoute(topic, func(_ paho.Client, m paho.Message) { b.handoff(name, m) })
	}
}

func (b *Bus) onConnect(c paho.Client) {
	b.log.Info("MQTT connected", "broker", b.url, "topics", b.prefix+"#")
	for topic := range b.subscriptions() {
		if b.isPaused(topic) {
			continue
		}
		tok := c.Subscribe(topic, 1, nil) // handled by the routes added before connecting
		if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			b.log.Error("MQTT subscribe failed", "topic", topic, "err", tokenErr(tok))
		}
	}
	b.up.Store(true)
	if err := b.PublishStatus(b.status()); err != nil {
		b.log.Warn("publish status", "err", err)
	}
	if b.everOnce.CompareAndSwap(false, true) {
		close(b.everUp)
	}
	if b.connected != nil {
		go b.connected()
	}
}

// handoff passes a request to the request worker. It waits while the
// worker is busy; the message stays unacknowledged until answered, so
// nothing is lost if the agent stops meanwhile (the broker redelivers).
//
// A QoS 0 message is never acknowledged, so the broker does not bound how
// many are in flight: one that finds the queue full is dropped (and
// counted) instead of holding a goroutine and its payload.
func (b *Bus) handoff(name string, m paho.Message) {
	in := Inbound{Topic: name, Payload: m.Payload(), Ack: m.Ack, Retained: m.Retained()}
	if m.Qos() == 0 {
		select {
		case b.inbound <- in:
		default:
			if b.shed.Add(1)%100 == 1 {
				b.log.Warn("request queue full: QoS 0 requests dropped (send requests with QoS 1)", "dropped", b.shed.Load(), "topic", m.Topic())
			}
		}
		return
	}
	select {
	case b.inbound <- in:
	case <-b.ctx.Done():
	}
}

// Shed is the number of QoS 0 requests dropped because the queue was full.
func (b *Bus) Shed() uint64 { return b.shed.Load() }

// Pause unsubscribes from an extra topic (a full name) until Resume: its
// messages are then neither received nor acknowledged. Unacknowledged
// ones stay with the broker, which delivers them again at the next
// connection.
func (b *Bus) Pause(topic string) {
	b.pauseMu.Lock()
	if b.paused == nil {
		b.paused = map[string]bool{}
	}
	already := b.paused[topic]
	b.paused[topic] = true
	b.pauseMu.Unlock()
	if already || !b.client.IsConnectionOpen() {
		return
	}
	if tok := b.client.Unsubscribe(topic); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		b.log.Warn("MQTT unsubscribe failed", "topic", topic, "err", tokenErr(tok))
	}
}

// Resume subscribes again to a paused topic.
func (b *Bus) Resume(topic string) {
	b.pauseMu.Lock()
	was := b.paused[topic]
	delete(b.paused, topic)
	b.pauseMu.Unlock()
	if !was || !b.client.IsConnectionOpen() {
		return
	}
	if tok := b.client.Subscribe(topic, 1, nil); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		b.log.Warn("MQTT subscribe failed", "topic", topic, "err", tokenErr(tok))
	}
}

func (b *Bus) isPaused(topic string) bool {
	b.pauseMu.Lock()
	defer b.pauseMu.Unlock()
	return b.paused[topic]
}

func tokenErr(t paho.Token) error {
	if t.Error() != nil {
		return t.Error()
	}
	return errors.New("timed out")
}

func (b *Bus) publish(topic string, qos byte, retained bool, payload []byte, wait time.Duration) error {
	return b.publishCtx(b.ctx, topic, qos, retained, payload, wait)
}

func (b *Bus) publishCtx(ctx context.Context, topic string, qos byte, retained bool, payload []byte, wait time.Duration) error {
	// A broker with a packet limit (the embedded one, the mosquitto
	// recipe) closes the connection of a client that goes over it.
	if len(payload) > b.cfg.MaxPayload {
		return fmt.Errorf("publish %s: %d bytes is over the limit of %d (mqtt.max_payload)", topic, len(payload), b.cfg.MaxPayload)
	}
	tok := b.client.Publish(topic, qos, retained, payload)
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-tok.Done():
	case <-t.C:
		return fmt.Errorf("publish %s: no acknowledgement within %v", topic, wait)
	case <-ctx.Done():
		return fmt.Errorf("publish %s: %w", topic, ctx.Err())
	}
	if err := tok.Error(); err != nil {
		return fmt.Errorf("publish %s: %w", topic, err)
	}
	return nil
}

// PublishRaw publishes a payload (QoS 1) to any topic.
func (b *Bus) PublishRaw(topic string, payload []byte, retained bool) error {
	return b.publish(topic, 1, retained, payload, 15*time.Second)
}

// PublishResult answers a request (QoS 1).
func (b *Bus) PublishResult(r protocol.Result) error {
	payload, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return b.publish(b.Topic(protocol.TopicResult), 1, false, payload, 15*time.Second)
}

// PublishStatus publishes the retained status.
func (b *Bus) PublishStatus(s protocol.Status) error {
	payload, err := json.Marshal(s)
	if err != nil {
		return err
	}
	return b.publish(b.Topic(protocol.TopicStatus), 1, true, payload, 10*time.Second)
}

// PublishSighting queues a sighting; it never blocks. When the queue is
// full the oldest sighting is dropped.
func (b *Bus) PublishSighting(s protocol.Sighting) {
	payload, err := json.Marshal(s)
	if err != nil {
		return
	}
	for {
		select {
		case b.out <- payload:
			return
		default:
		}
		select {
		case <-b.out:
			b.dropped.Add(1)
		default:
		}
	}
}

// Run connects and publishes queued sightings until ctx ends, then
// publishes the offline status and disconnects.
func (b *Bus) Run(ctx context.Context) error {
	b.ctx = ctx
	b.log.Info("MQTT connecting", "broker", b.url)
	b.route()
	b.client.Connect() // retries by itself; onConnect reports success
	defer func() {
		if b.client.IsConnectionOpen() {
			st := b.status()
			st.State = "offline"
			payload, _ := json.Marshal(st)
			bye, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			if err := b.publishCtx(bye, b.Topic(protocol.TopicStatus), 1, true, payload, 2*time.Second); err != nil {
				b.log.Warn("publish offline status", "err", err)
			}
			cancel()
		}
		b.client.Disconnect(500)
	}()
	var pending []byte
	for {
		if pending == nil {
			select {
			case <-ctx.Done():
				return nil
			case pending = <-b.out:
			}
		}
		if !b.client.IsConnectionOpen() {
			// The broker is away: hold this one; newer ones queue behind it
			// and the queue drops the oldest when full.
			if !wait.Sleep(ctx, 200*time.Millisecond) {
				return nil
			}
			continue
		}
		tok := b.client.Publish(b.Topic(protocol.TopicSighting), 0, false, pending)
		if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			b.log.Debug("sighting not published", "err", tokenErr(tok))
			b.dropped.Add(1)
		}
		pending = nil
	}
}
