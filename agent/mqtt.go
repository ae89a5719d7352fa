package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// Inbound is a message from a request topic. Ack must be called once the
// request's outcome is durable and answered; until then the broker keeps
// the message for redelivery.
type Inbound struct {
	Topic   string // TopicLabel or TopicCmd
	Payload []byte
	Ack     func()
}

// Bus is the agent's MQTT connection. Handlers only hand messages off;
// sightings go through a bounded queue that drops the oldest when the
// broker is slow or away.
type Bus struct {
	cfg    MQTTConfig
	log    *slog.Logger
	url    string
	prefix string
	client paho.Client

	inbound  chan<- Inbound
	status   func() Status
	out      chan []byte
	dropped  atomic.Uint64
	lost     atomic.Uint64
	up       atomic.Bool
	everUp   chan struct{}
	everOnce atomic.Bool
}

// sightingQueue bounds sightings waiting for the broker.
const sightingQueue = 256

// NewBus prepares a connection to url for device. inbound receives label
// and command messages; status supplies the retained status published on
// every (re)connect.
func NewBus(cfg MQTTConfig, device, url string, log *slog.Logger, inbound chan<- Inbound, status func() Status) *Bus {
	b := &Bus{
		cfg: cfg, log: log, url: url,
		prefix:  cfg.TopicPrefix + "/" + device + "/",
		inbound: inbound, status: status,
		out:    make(chan []byte, sightingQueue),
		everUp: make(chan struct{}),
	}
	clientID := cfg.ClientID
	if clientID == "" {
		clientID = "whisker-" + device
	}
	offline, _ := json.Marshal(Status{State: "offline", Device: device})
	opts := paho.NewClientOptions().
		AddBroker(url).
		SetClientID(clientID).
		SetUsername(cfg.Username).
		SetPassword(cfg.Password).
		// A persistent session: the broker queues QoS 1 labels and
		// commands sent while the agent is away.
		SetCleanSession(false).
		SetResumeSubs(true).
		SetAutoAckDisabled(true).
		SetOrderMatters(true).
		SetKeepAlive(cfg.KeepAlive).
		SetConnectTimeout(10*time.Second).
		SetAutoReconnect(true).
		SetConnectRetry(true).
		SetConnectRetryInterval(2*time.Second).
		SetMaxReconnectInterval(30*time.Second).
		SetWriteTimeout(10*time.Second).
		SetBinaryWill(b.Topic(TopicStatus), offline, 1, true).
		SetOnConnectHandler(b.onConnect).
		SetConnectionLostHandler(func(_ paho.Client, err error) {
			b.up.Store(false)
			b.lost.Add(1)
			log.Warn("MQTT connection lost; reconnecting", "broker", url, "err", err)
		}).
		SetReconnectingHandler(func(paho.Client, *paho.ClientOptions) {
			log.Info("MQTT reconnecting", "broker", url)
		})
	b.client = paho.NewClient(opts)
	return b
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

func (b *Bus) onConnect(c paho.Client) {
	b.log.Info("MQTT connected", "broker", b.url, "topics", b.prefix+"#")
	for _, name := range []string{TopicLabel, TopicCmd} {
		name := name
		tok := c.Subscribe(b.Topic(name), 1, func(_ paho.Client, m paho.Message) {
			b.handoff(name, m)
		})
		if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			b.log.Error("MQTT subscribe failed", "topic", b.Topic(name), "err", tokenErr(tok))
		}
	}
	b.up.Store(true)
	if err := b.PublishStatus(b.status()); err != nil {
		b.log.Warn("publish status", "err", err)
	}
	if b.everOnce.CompareAndSwap(false, true) {
		close(b.everUp)
	}
}

// handoff passes a request on without blocking the client's router. When
// the agent is too busy, the message is answered and acknowledged here.
func (b *Bus) handoff(name string, m paho.Message) {
	in := Inbound{Topic: name, Payload: m.Payload(), Ack: m.Ack}
	select {
	case b.inbound <- in:
	default:
		id, _ := decodeStrict(m.Payload(), b.cfg.MaxPayload, &struct{}{})
		b.log.Warn("request queue full; refusing", "topic", m.Topic(), "request_id", id)
		res := Result{RequestID: id, Topic: name, Error: "the agent is busy; try again in a moment", TS: timestamp(time.Now())}
		if err := b.PublishResult(res); err == nil {
			m.Ack()
		}
	}
}

func tokenErr(t paho.Token) error {
	if t.Error() != nil {
		return t.Error()
	}
	return errors.New("timed out")
}

func (b *Bus) publish(topic string, qos byte, retained bool, payload []byte, wait time.Duration) error {
	tok := b.client.Publish(topic, qos, retained, payload)
	if !tok.WaitTimeout(wait) {
		return fmt.Errorf("publish %s: no acknowledgement within %v", topic, wait)
	}
	if err := tok.Error(); err != nil {
		return fmt.Errorf("publish %s: %w", topic, err)
	}
	return nil
}

// PublishResult answers a request (QoS 1).
func (b *Bus) PublishResult(r Result) error {
	payload, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return b.publish(b.Topic(TopicResult), 1, false, payload, 15*time.Second)
}

// PublishStatus publishes the retained status.
func (b *Bus) PublishStatus(s Status) error {
	payload, err := json.Marshal(s)
	if err != nil {
		return err
	}
	return b.publish(b.Topic(TopicStatus), 1, true, payload, 10*time.Second)
}

// PublishSighting queues a sighting; it never blocks. When the queue is
// full the oldest sighting is dropped.
func (b *Bus) PublishSighting(s Sighting) {
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
	b.log.Info("MQTT connecting", "broker", b.url)
	b.client.Connect() // retries by itself; onConnect reports success
	defer func() {
		if b.client.IsConnectionOpen() {
			st := b.status()
			st.State = "offline"
			if err := b.PublishStatus(st); err != nil {
				b.log.Warn("publish offline status", "err", err)
			}
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
			if !sleepCtx(ctx, 200*time.Millisecond) {
				return nil
			}
			continue
		}
		tok := b.client.Publish(b.Topic(TopicSighting), 0, false, pending)
		if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			b.log.Debug("sighting not published", "err", tokenErr(tok))
			b.dropped.Add(1)
		}
		pending = nil
	}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
