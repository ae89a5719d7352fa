package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// EmbeddedBroker is an MQTT broker inside the agent process, for setups
// with no broker of their own. It listens on loopback by default and lets
// any client in.
type EmbeddedBroker struct {
	srv  *mqtt.Server
	addr string
}

// StartEmbeddedBroker starts a broker listening on addr (host:port; port 0
// picks a free one).
func StartEmbeddedBroker(addr string, log *slog.Logger) (*EmbeddedBroker, error) {
	// Bind first so that a busy port is reported here, with the address.
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("embedded broker: listen on %s: %w (set mqtt.embedded_listen, or mqtt.broker to use another broker)", addr, err)
	}
	actual := ln.Addr().String()
	ln.Close()
	srv := mqtt.New(&mqtt.Options{
		InlineClient: false,
		// The broker's own info lines (hooks, listeners) are noise here.
		Logger: slog.New(minLevel{log.With("component", "broker").Handler(), slog.LevelWarn}),
	})
	if err := srv.AddHook(new(allowAll), nil); err != nil {
		return nil, err
	}
	if err := srv.AddListener(listeners.NewTCP(listeners.Config{Type: "tcp", ID: "whisker", Address: actual})); err != nil {
		return nil, fmt.Errorf("embedded broker: %w", err)
	}
	if err := srv.Serve(); err != nil {
		return nil, fmt.Errorf("embedded broker: %w", err)
	}
	return &EmbeddedBroker{srv: srv, addr: actual}, nil
}

// URL is the broker's address for clients.
func (b *EmbeddedBroker) URL() string { return "tcp://" + b.addr }

// Close stops the broker.
func (b *EmbeddedBroker) Close() error { return b.srv.Close() }

// allowAll lets every client connect and use every topic; the embedded
// broker listens on loopback unless configured otherwise.
type allowAll struct{ mqtt.HookBase }

func (h *allowAll) ID() string { return "allow-all" }

func (h *allowAll) Provides(b byte) bool {
	return b == mqtt.OnConnectAuthenticate || b == mqtt.OnACLCheck
}

func (h *allowAll) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool { return true }

func (h *allowAll) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool { return true }

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
