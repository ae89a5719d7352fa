package protocol

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// Client talks to a Whisker agent over MQTT, as any user's MQTT client
// would: it publishes requests and waits for their answers on the result
// topic. `whisker label` is built on it.
type Client struct {
	c      paho.Client
	prefix string

	mu      sync.Mutex
	waiting map[string]chan Result
	watch   func(Sighting)
}

// ClientConfig says where the agent is.
type ClientConfig struct {
	Broker   string
	Prefix   string // topic prefix, default "whisker"
	Device   string
	Username string
	Password string
	TLS      TLSConfig
	ClientID string
}

// NewRequestID returns a fresh random request id.
func NewRequestID() string {
	var b [8]byte
	rand.Read(b[:])
	return "cli-" + hex.EncodeToString(b[:])
}

// Dial connects to the broker and subscribes to the agent's result and
// sighting topics.
func Dial(ctx context.Context, cfg ClientConfig) (*Client, error) {
	if cfg.Prefix == "" {
		cfg.Prefix = "whisker"
	}
	if cfg.ClientID == "" {
		cfg.ClientID = NewRequestID()
	}
	cl := &Client{prefix: cfg.Prefix + "/" + cfg.Device + "/", waiting: map[string]chan Result{}}
	tlsCfg, err := cfg.TLS.Build(cfg.Broker)
	if err != nil {
		return nil, err
	}
	subscribed := make(chan error, 1)
	opts := paho.NewClientOptions().AddBroker(cfg.Broker).SetClientID(cfg.ClientID).
		SetUsername(cfg.Username).SetPassword(cfg.Password).SetCleanSession(true).
		SetConnectTimeout(10 * time.Second).SetAutoReconnect(true).
		SetOnConnectHandler(func(c paho.Client) {
			tok := c.SubscribeMultiple(map[string]byte{cl.prefix + TopicResult: 1, cl.prefix + TopicSighting: 0}, cl.route)
			tok.WaitTimeout(10 * time.Second)
			select {
			case subscribed <- tok.Error():
			default:
			}
		})
	if tlsCfg != nil {
		opts.SetTLSConfig(tlsCfg)
	}
	cl.c = paho.NewClient(opts)
	tok := cl.c.Connect()
	select {
	case <-tok.Done():
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if err := tok.Error(); err != nil {
		return nil, fmt.Errorf("connect to %s: %w (%s)", cfg.Broker, err, ConnectHint(err))
	}
	select {
	case err := <-subscribed:
		if err != nil {
			cl.Close()
			return nil, fmt.Errorf("subscribe: %w", err)
		}
	case <-ctx.Done():
		cl.Close()
		return nil, ctx.Err()
	}
	return cl, nil
}

func (cl *Client) route(_ paho.Client, m paho.Message) {
	switch strings.TrimPrefix(m.Topic(), cl.prefix) {
	case TopicResult:
		var r Result
		if json.Unmarshal(m.Payload(), &r) != nil {
			return
		}
		cl.mu.Lock()
		ch := cl.waiting[r.RequestID]
		cl.mu.Unlock()
		if ch != nil {
			select {
			case ch <- r:
			default:
			}
		}
	case TopicSighting:
		var s Sighting
		if json.Unmarshal(m.Payload(), &s) != nil {
			return
		}
		cl.mu.Lock()
		w := cl.watch
		cl.mu.Unlock()
		if w != nil {
			w(s)
		}
	}
}

// Close disconnects.
func (cl *Client) Close() { cl.c.Disconnect(200) }

// Request publishes a request (a JSON object whose request_id is set if
// missing) on topic ("label" or "cmd") and waits for its answer.
func (cl *Client) Request(ctx context.Context, topic string, req map[string]any) (Result, error) {
	id, _ := req["request_id"].(string)
	if id == "" {
		id = NewRequestID()
		req["request_id"] = id
	}
	payload, err := json.Marshal(req)
	if err != nil {
		return Result{}, err
	}
	ch := make(chan Result, 4)
	cl.mu.Lock()
	cl.waiting[id] = ch
	cl.mu.Unlock()
	defer func() {
		cl.mu.Lock()
		delete(cl.waiting, id)
		cl.mu.Unlock()
	}()
	tok := cl.c.Publish(cl.prefix+topic, 1, false, payload)
	select {
	case <-tok.Done():
		if err := tok.Error(); err != nil {
			return Result{}, fmt.Errorf("publish: %w", err)
		}
	case <-ctx.Done():
		return Result{}, ctx.Err()
	}
	select {
	case r := <-ch:
		return r, nil
	case <-ctx.Done():
		return Result{}, fmt.Errorf("no answer from the agent (is it running, with device %q?): %w",
			strings.TrimSuffix(strings.TrimPrefix(cl.prefix, strings.SplitN(cl.prefix, "/", 2)[0]+"/"), "/"), ctx.Err())
	}
}

// Watch calls fn for every sighting until ctx ends.
func (cl *Client) Watch(ctx context.Context, fn func(Sighting)) {
	cl.mu.Lock()
	cl.watch = fn
	cl.mu.Unlock()
	<-ctx.Done()
	cl.mu.Lock()
	cl.watch = nil
	cl.mu.Unlock()
}

// Snapshot asks the agent for the JPEG of a sighting ("latest" for the
// newest) and returns it with the sighting's id.
func (cl *Client) Snapshot(ctx context.Context, sightingID string) ([]byte, string, error) {
	images := make(chan paho.Message, 16)
	tok := cl.c.Subscribe(cl.prefix+TopicSnapshot+"/+", 1, func(_ paho.Client, m paho.Message) {
		select {
		case images <- m:
		default:
		}
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		return nil, "", fmt.Errorf("subscribe to snapshots: %v", tok.Error())
	}
	defer cl.c.Unsubscribe(cl.prefix + TopicSnapshot + "/+")
	res, err := cl.Request(ctx, TopicCmd, map[string]any{"cmd": "snapshot", "sighting_id": sightingID})
	if err != nil {
		return nil, "", err
	}
	if !res.Ok {
		return nil, "", fmt.Errorf("refused: %s", res.Error)
	}
	for {
		select {
		case m := <-images:
			if m.Topic() == res.SnapshotTopic {
				return m.Payload(), res.SightingID, nil
			}
		case <-ctx.Done():
			return nil, "", fmt.Errorf("snapshot did not arrive on %s: %w", res.SnapshotTopic, ctx.Err())
		}
	}
}

// TLSConfig secures the connection to an external broker.
type TLSConfig struct {
	// CAFile verifies the broker (PEM); empty uses the system's roots.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are a client certificate (PEM), if the broker
	// wants one.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ServerName overrides the name checked in the broker's certificate.
	ServerName string `yaml:"server_name"`
	// InsecureSkipVerify accepts any broker certificate (testing only).
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// Build makes the TLS settings for an ssl:// (tls://, mqtts://, wss://)
// broker URL; nil for a plain one.
func (c TLSConfig) Build(url string) (*tls.Config, error) {
	secure := false
	for _, s := range []string{"ssl://", "tls://", "mqtts://", "wss://"} {
		secure = secure || strings.HasPrefix(url, s)
	}
	if !secure {
		if c.CAFile != "" || c.CertFile != "" {
			return nil, fmt.Errorf("mqtt.tls is set but the broker URL %q is not ssl://", url)
		}
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.ServerName, InsecureSkipVerify: c.InsecureSkipVerify}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("mqtt.tls.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("mqtt.tls.ca_file %s: no PEM certificate in it", c.CAFile)
		}
		cfg.RootCAs = pool
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("mqtt.tls.cert_file/key_file: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// ConnectHint turns a connection error into advice.
func ConnectHint(err error) string {
	msg := strings.ToLower(fmt.Sprint(err))
	switch {
	case strings.Contains(msg, "certificate signed by unknown authority"), strings.Contains(msg, "x509"):
		return "the broker's certificate is not trusted: check mqtt.tls.ca_file"
	case strings.Contains(msg, "not authorized"), strings.Contains(msg, "bad user name or password"):
		return "the broker refused the credentials: check mqtt.username and mqtt.password"
	case strings.Contains(msg, "connection refused"):
		return "nothing listens at that address: is the broker running, and is mqtt.broker right?"
	case strings.Contains(msg, "tls"), strings.Contains(msg, "handshake"):
		return "TLS failed: check the broker URL scheme (ssl://) and mqtt.tls"
	}
	return "check mqtt.broker and that the broker is reachable"
}
