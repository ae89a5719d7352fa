// Package web serves the page that teaches and watches the camera: the
// inbox of recent sightings grouped into visits (one click or key names
// one), the pets with their samples, the head's health and the live view.
// It is server-rendered (html/template, embedded files, a little plain
// JavaScript that the page also works without) and pure Go.
//
// Every change goes through Backend.Do, the agent's request path for MQTT
// labels and commands: the same validation, idempotency and durability.
// Anonymous use is allowed only when the page listens on loopback and no
// users are configured; otherwise everyone logs in. Every change is a
// POST that carries the session's CSRF token and comes from the page's
// own origin.
package web

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/whiskercam/whisker/agent/inbox"
	"github.com/whiskercam/whisker/agent/protocol"
	"github.com/whiskercam/whisker/learner"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Backend is what the page needs of the agent.
type Backend interface {
	// Do runs a label (protocol.TopicLabel) or command (TopicCmd) request
	// through the agent's request path and returns its answer.
	Do(ctx context.Context, topic string, payload []byte) protocol.Result
	Labels() ([]protocol.LabelCount, error)
	// Samples lists the stored samples of the running backbone.
	Samples() ([]Sample, error)
	SampleJPEG(id uint64) ([]byte, error)
	// Head describes the current head (nil while there is none).
	Head() *learner.HeadSummary
	// Threshold is the probability setting in use (0: calibrated).
	Threshold() float64
	// Evaluate cross-validates the stored samples (seconds).
	Evaluate(ctx context.Context) (*learner.Report, error)
	// Recent returns the last sightings, newest first, with their current
	// names.
	Recent(n int) []protocol.Sighting
	// Latest returns the newest frame with the pets' boxes.
	Latest() (id string, frame []byte, ok bool)
	// Snapshot returns a recent sighting's frame and crop JPEGs.
	Snapshot(id string) (frame, crop []byte, ok bool)
	// IsPet says whether a label names a pet (is announced).
	IsPet(label string) bool
	Health() Health
}

// Sample is a stored sample, without its vector.
type Sample struct {
	ID     uint64
	Label  string
	Time   time.Time
	Source string
}

// Health is what the health page says about the agent itself.
type Health struct {
	OK          bool
	Problems    []string
	Camera      string
	CameraState string
	FPS         float64
	MQTT        bool
	Sightings   uint64
	Uptime      time.Duration
	Backbone    string
	Embed       string
}

// Options are what the server needs besides its configuration.
type Options struct {
	Device, Version string
	// Listen is http.listen: on loopback, without users, no login.
	Listen string
	// Secure marks cookies Secure (the listener serves HTTPS).
	Secure bool
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

// Server is the page.
type Server struct {
	cfg   Config
	opt   Options
	log   *slog.Logger
	be    Backend
	inbox *inbox.Inbox
	now   func() time.Time

	anon     bool // anonymous use: loopback and no users
	users    map[string]user
	dummy    *hash // checked for unknown users, so that they take as long
	visitors *sessions
	members  *sessions
	throttle *throttle
	verify   chan struct{} // bounds concurrent password checks
	streams  chan struct{} // bounds open event streams
	xorigin  *http.CrossOriginProtection

	pages  map[string]*template.Template
	static http.Handler
	thumbs *thumbCache
	eval   *evaluation

	stopOnce sync.Once
	stopped  chan struct{}
}

type user struct {
	name string
	hash *hash
}

// cookieName is the session cookie.
const cookieName = "whisker_session"

// New prepares the page.
func New(cfg Config, opt Options, log *slog.Logger, be Backend, ib *inbox.Inbox) (*Server, error) {
	if opt.Now == nil {
		opt.Now = time.Now
	}
	s := &Server{cfg: cfg, opt: opt, log: log, be: be, inbox: ib, now: opt.Now,
		anon: Loopback(opt.Listen) && len(cfg.Users) == 0, users: map[string]user{},
		throttle: newThrottle(opt.Now), verify: make(chan struct{}, 2), streams: make(chan struct{}, 32), xorigin: http.NewCrossOriginProtection(),
		thumbs: newThumbCache(512), eval: &evaluation{}, stopped: make(chan struct{})}
	s.visitors = newSessions(time.Hour, opt.Now)
	if s.anon {
		s.visitors = newSessions(cfg.SessionTTL, opt.Now)
	}
	s.members = newSessions(cfg.SessionTTL, opt.Now)
	for _, u := range cfg.Users {
		h, err := parseHash(u.PasswordHash)
		if err != nil {
			return nil, fmt.Errorf("web.users %s: %w", u.Name, err)
		}
		s.users[strings.ToLower(u.Name)] = user{name: u.Name, hash: h}
	}
	dummy, err := HashPassword("no such user")
	if err != nil {
		return nil, err
	}
	s.dummy, _ = parseHash(dummy)
	if !s.anon && len(s.users) == 0 {
		return nil, errors.New("web: the page listens beyond loopback and web.users is empty: nobody could log in")
	}
	if err := s.parseTemplates(); err != nil {
		return nil, err
	}
	sub, err := fs.Sub(staticFS, "static")
	if err != nil {
		return nil, err
	}
	s.static = http.StripPrefix("/static/", http.FileServerFS(sub))
	if !s.anon && !opt.Secure {
		log.Warn("the page asks for a login but is served without TLS: passwords and cookies cross the network in clear; set http.tls.cert_file and key_file")
	}
	return s, nil
}

// Stop ends the event streams, so that the HTTP server can shut down.
func (s *Server) Stop() { s.stopOnce.Do(func() { close(s.stopped) }) }

// Handler serves the page under /.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/inbox", http.StatusSeeOther) })
	mux.HandleFunc("GET /inbox", s.inboxPage)
	mux.HandleFunc("POST /inbox/label", s.labelAction)
	mux.HandleFunc("GET /pets", s.petsPage)
	mux.HandleFunc("POST /pets/samples", s.samplesAction)
	mux.HandleFunc("POST /pets/rename", s.renameAction)
	mux.HandleFunc("POST /pets/forget", s.forgetAction)
	mux.HandleFunc("POST /pets/upload", s.uploadAction)
	mux.HandleFunc("GET /health", s.healthPage)
	mux.HandleFunc("POST /health/retrain", s.retrainAction)
	mux.HandleFunc("POST /health/threshold", s.thresholdAction)
	mux.HandleFunc("GET /health/plot/{name}", s.plotImage)
	mux.HandleFunc("GET /live", s.livePage)
	mux.HandleFunc("GET /live/frame.jpg", s.liveFrame)
	mux.HandleFunc("GET /events", s.events)
	mux.HandleFunc("GET /img/sighting/{id}/{kind}", s.sightingImage)
	mux.HandleFunc("GET /img/sample/{id}", s.sampleImage)
	mux.HandleFunc("GET /login", s.loginPage)
	mux.HandleFunc("POST /login", s.loginAction)
	mux.HandleFunc("POST /logout", s.logoutAction)
	mux.Handle("GET /static/", s.static)
	return s.guard(mux)
}

// ctxKey keys the request's session in its context.
type ctxKey struct{}

type reqSession struct {
	id string
	*session
}

func sessionOf(r *http.Request) *reqSession {
	rs, _ := r.Context().Value(ctxKey{}).(*reqSession)
	return rs
}

// public paths are served without a logged-in session.
func public(r *http.Request) bool {
	return r.URL.Path == "/login" || strings.HasPrefix(r.URL.Path, "/static/")
}

// guard applies the rules every request passes: security headers; on
// anonymous loopback use, a loopback Host (so that another site cannot
// reach the page by rebinding its own name to 127.0.0.1); a session (a
// login beyond loopback); and for every change, the page's own origin and
// the session's CSRF token.
func (s *Server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self'; script-src 'self'; style-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Cache-Control", "no-store")
		if s.anon && !loopbackHost(r.Host) {
			http.Error(w, "this page answers only to localhost, 127.0.0.1 or [::1]: it listens on loopback without a login (configure web.users to use it from elsewhere)", http.StatusMisdirectedRequest)
			return
		}
		unsafe := r.Method != http.MethodGet && r.Method != http.MethodHead
		rs := s.lookup(r)
		switch {
		case rs == nil && unsafe:
			http.Error(w, "no session: load the page again and retry", http.StatusForbidden)
			return
		case rs == nil:
			id, ss := s.visitors.create("")
			rs = &reqSession{id: id, session: ss}
			s.setCookie(w, id, s.visitors.ttl)
		}
		if !s.anon && rs.user == "" && !public(r) {
			if unsafe {
				http.Error(w, "log in first", http.StatusUnauthorized)
				return
			}
			http.Redirect(w, r, "/login", http.StatusSeeOther)
			return
		}
		if unsafe {
			if err := s.xorigin.Check(r); err != nil {
				http.Error(w, "refused: the request does not come from this page ("+err.Error()+")", http.StatusForbidden)
				return
			}
			// The upload checks its token itself, before reading any photo.
			if r.URL.Path != "/pets/upload" && !s.csrfOK(r, rs, r.Header.Get("X-CSRF-Token")) {
				r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
				if !s.csrfOK(r, rs, r.PostFormValue("csrf")) {
					http.Error(w, "refused: the form's security token is missing or stale; load the page again", http.StatusForbidden)
					return
				}
			}
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, rs)))
	})
}

func (s *Server) csrfOK(r *http.Request, rs *reqSession, tok string) bool {
	return tok != "" && len(tok) == len(rs.csrf) && constantEq(tok, rs.csrf)
}

// lookup finds the request's session: a member's, else a visitor's.
func (s *Server) lookup(r *http.Request) *reqSession {
	c, err := r.Cookie(cookieName)
	if err != nil {
		return nil
	}
	if ss, ok := s.members.get(c.Value); ok {
		return &reqSession{id: c.Value, session: ss}
	}
	if ss, ok := s.visitors.get(c.Value); ok {
		return &reqSession{id: c.Value, session: ss}
	}
	return nil
}

func (s *Server) setCookie(w http.ResponseWriter, id string, ttl time.Duration) {
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: id, Path: "/", MaxAge: int(ttl.Seconds()),
		HttpOnly: true, Secure: s.opt.Secure, SameSite: http.SameSiteStrictMode})
}

// loopbackHost says whether a Host header names this machine.
func loopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// clientAddr is the address a login attempt is counted against.
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) {
	rs := sessionOf(r)
	if s.anon || rs.user != "" {
		http.Redirect(w, r, "/inbox", http.StatusSeeOther)
		return
	}
	s.render(w, r, "login", "Log in", nil)
}

func (s *Server) loginAction(w http.ResponseWriter, r *http.Request) {
	if s.anon {
		http.Redirect(w, r, "/inbox", http.StatusSeeOther)
		return
	}
	client := clientAddr(r)
	if d := s.throttle.wait(client); d > 0 {
		w.Header().Set("Retry-After", fmt.Sprint(int(d.Seconds())+1))
		s.fail(w, r, http.StatusTooManyRequests, fmt.Sprintf("too many failed logins from %s: wait %v", client, d.Round(time.Second)), "/login")
		return
	}
	name, password := r.PostFormValue("username"), r.PostFormValue("password")
	if len(name) > 64 || len(password) > 1024 {
		s.fail(w, r, http.StatusBadRequest, "user name or password too long", "/login")
		return
	}
	u, known := s.users[strings.ToLower(name)]
	h := s.dummy
	if known {
		h = u.hash
	}
	select {
	case s.verify <- struct{}{}:
	case <-r.Context().Done():
		return
	}
	ok := h.verify(password) && known
	<-s.verify
	if !ok {
		s.throttle.failed(client)
		s.log.Warn("login failed", "user", name, "from", client)
		s.fail(w, r, http.StatusUnauthorized, "wrong user name or password", "/login")
		return
	}
	s.throttle.succeeded(client)
	s.visitors.drop(sessionOf(r).id)
	id, _ := s.members.create(u.name)
	s.setCookie(w, id, s.members.ttl)
	s.log.Info("logged in", "user", u.name, "from", client)
	http.Redirect(w, r, "/inbox", http.StatusSeeOther)
}

func (s *Server) logoutAction(w http.ResponseWriter, r *http.Request) {
	rs := sessionOf(r)
	s.members.drop(rs.id)
	s.visitors.drop(rs.id)
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: s.opt.Secure, SameSite: http.SameSiteStrictMode})
	if s.anon {
		http.Redirect(w, r, "/inbox", http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}
