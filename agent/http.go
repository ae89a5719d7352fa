package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/whiskercam/whisker/agent/metrics"
	"github.com/whiskercam/whisker/agent/protocol"
)

// Health is the body of /healthz.
type Health struct {
	OK            bool     `json:"ok"`
	Problems      []string `json:"problems,omitempty"`
	CameraUp      bool     `json:"camera_up"`
	LastFrameAge  float64  `json:"last_frame_age_s"`
	MQTTConnected bool     `json:"mqtt_connected"`
	Head          bool     `json:"head"`
	Version       string   `json:"version"`
	// Disk is the sample store's disk health.
	Disk *protocol.DiskHealth `json:"disk"`
}

// Health reports whether the agent is doing its job: frames flowing and
// the broker connected.
func (a *Agent) Health() Health {
	cs := a.capture.Status()
	h := Health{CameraUp: cs.Up, MQTTConnected: a.connected(), Head: a.trainer.Head() != nil, Version: a.version}
	if !cs.LastTime.IsZero() {
		h.LastFrameAge = time.Since(cs.LastTime).Seconds()
	}
	switch {
	case cs.LastTime.IsZero():
		h.Problems = append(h.Problems, "no frame from the camera yet")
	case time.Since(cs.LastTime) > a.cfg.HTTP.StaleAfter:
		h.Problems = append(h.Problems, fmt.Sprintf("no frame for %.0f s", h.LastFrameAge))
	}
	if cs.LastErr != "" && !cs.Up {
		h.Problems = append(h.Problems, "camera: "+cs.LastErr)
	}
	if !h.MQTTConnected {
		h.Problems = append(h.Problems, "not connected to the MQTT broker")
	}
	if h.Disk = a.diskHealth(); !h.Disk.OK {
		h.Problems = append(h.Problems, "disk: "+h.Disk.Problem)
	}
	h.OK = len(h.Problems) == 0
	return h
}

// reading is the agent's state as the metrics show it.
func (a *Agent) reading() metrics.Reading {
	cs, ps := a.capture.Status(), a.pipe.Stats()
	_, dropped := a.box.Stats()
	r := metrics.Reading{
		FramesCaptured: cs.Frames, FramesDropped: dropped, Still: ps.Still, Paused: ps.Paused, CameraReopens: cs.Reopens,
		Connected: a.connected(), CameraUp: cs.Up, RecognitionPaused: a.pipe.Paused(), Firmware: a.ota.Firmware(),
	}
	if b := a.bus.Load(); b != nil {
		r.SightingsDropped, r.Reconnects = b.Dropped(), b.Reconnects()
	}
	if h := a.trainer.Head(); h != nil {
		r.HeadClasses = len(h.Labels())
		r.Accuracy, r.Measured = headAccuracy(h)
	}
	r.Samples, _ = a.store.Counts(a.identity) // none when they cannot be read
	return r
}

// serveHTTP serves /metrics, /healthz and the web page until ctx ends.
func (a *Agent) serveHTTP(ctx context.Context) error {
	if a.cfg.HTTP.Listen == "" {
		return nil
	}
	ln, err := net.Listen("tcp", a.cfg.HTTP.Listen)
	if err != nil {
		return fmt.Errorf("http.listen %s: %w", a.cfg.HTTP.Listen, err)
	}
	a.httpAddr.Store(ln.Addr().String())
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", a.metrics.Handler())
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		h := a.Health()
		w.Header().Set("Content-Type", "application/json")
		if !h.OK {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		json.NewEncoder(w).Encode(h)
	})
	if a.web != nil {
		mux.Handle("/", a.web.Handler())
	}
	// No write timeout: the page's event stream stays open; each handler
	// bounds its own work.
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 2 * time.Minute,
		IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 32 << 10}
	if a.web != nil {
		srv.RegisterOnShutdown(a.web.Stop) // ends the page's event streams
	}
	tlsCfg := a.cfg.HTTP.TLS
	a.log.Info("serving /metrics and /healthz", "addr", ln.Addr().String(), "page", a.web != nil, "https", tlsCfg.CertFile != "")
	errc := make(chan error, 1)
	go func() {
		if tlsCfg.CertFile != "" {
			errc <- srv.ServeTLS(ln, tlsCfg.CertFile, tlsCfg.KeyFile)
			return
		}
		errc <- srv.Serve(ln)
	}()
	select {
	case <-ctx.Done():
		shut, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return srv.Shutdown(shut)
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	}
}

// HTTPAddr is the address /metrics and /healthz are served on, once up.
func (a *Agent) HTTPAddr() string {
	v, _ := a.httpAddr.Load().(string)
	return v
}
