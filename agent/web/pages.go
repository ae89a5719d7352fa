package web

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/whiskercam/whisker/agent/inbox"
	"github.com/whiskercam/whisker/agent/protocol"
)

// page is what every template gets.
type page struct {
	Title, Page     string
	Device, Version string
	CSRF            string
	User            string
	Login           bool // the page asks for a login (so it offers a logout)
	Flash           string
	Todo            int
	Data            any
}

var funcs = template.FuncMap{
	"pct":   func(x float64) string { return fmt.Sprintf("%.0f%%", 100*x) },
	"pct1":  func(x float64) string { return fmt.Sprintf("%.1f%%", 100*x) },
	"conf":  func(x float64) string { return fmt.Sprintf("%.2f", x) },
	"clock": func(t time.Time) string { return t.Local().Format("15:04:05") },
	"when": func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return t.Local().Format("Mon 15:04:05")
	},
	"ago": func(t time.Time) string { return ago(time.Since(t)) },
	"span": func(a, b time.Time) string {
		d := b.Sub(a).Round(time.Second)
		if d < time.Second {
			return "a moment"
		}
		return d.String()
	},
	"add":     func(a, b int) int { return a + b },
	"mib":     func(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) },
	"unknown": func(l string) bool { return l == protocol.Unknown || l == "" },
	"ts": func(s string) string {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return s
		}
		return t.Local().Format("15:04:05")
	},
	"dict": func(kv ...any) map[string]any {
		m := make(map[string]any, len(kv)/2)
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	},
}

func ago(d time.Duration) string {
	switch {
	case d < 2*time.Second:
		return "just now"
	case d < time.Minute:
		return fmt.Sprintf("%d s ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%d min ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%.1f h ago", d.Hours())
	}
	return fmt.Sprintf("%d days ago", int(d.Hours()/24))
}

// parseTemplates makes one template set per page: the layout with the
// page's content.
func (s *Server) parseTemplates() error {
	s.pages = map[string]*template.Template{}
	layout, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html")
	if err != nil {
		return err
	}
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return err
	}
	for _, n := range names {
		name := strings.TrimSuffix(path.Base(n), ".html")
		if name == "layout" {
			continue
		}
		t, err := template.Must(layout.Clone()).ParseFS(templateFS, n)
		if err != nil {
			return err
		}
		s.pages[name] = t
	}
	return nil
}

// render writes a page; a failure is logged (the response may be half
// written).
func (s *Server) render(w http.ResponseWriter, r *http.Request, name, title string, data any) {
	rs := sessionOf(r)
	p := page{Title: title, Page: name, Device: s.opt.Device, Version: s.opt.Version, CSRF: rs.csrf, User: rs.user,
		Login: !s.anon, Data: data}
	p.Flash = s.members.takeFlash(rs.id) + s.visitors.takeFlash(rs.id)
	if s.anon || rs.user != "" {
		for _, v := range s.inbox.Visits(0, s.cfg.Unsure) {
			if v.Todo {
				p.Todo++
			}
		}
	}
	var buf bytes.Buffer
	if err := s.pages[name].ExecuteTemplate(&buf, "layout.html", p); err != nil {
		s.log.Error("render page", "page", name, "err", err)
		http.Error(w, "the page could not be made: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Write(buf.Bytes())
}

// wantsJSON says whether the page's script sent the request (it then
// gets JSON, not a redirect).
func wantsJSON(r *http.Request) bool {
	return strings.Contains(r.Header.Get("Accept"), "application/json")
}

// outcome is the answer to an action for the page's script.
type outcome struct {
	OK      bool     `json:"ok"`
	Message string   `json:"message"`
	Results []result `json:"results,omitempty"`
}

type result struct {
	RequestID string `json:"request_id"`
	OK        bool   `json:"ok"`
	Error     string `json:"error,omitempty"`
	Duplicate bool   `json:"duplicate,omitempty"`
}

// answer ends an action: JSON for the script, else a message for the
// next page and a redirect back to back.
func (s *Server) answer(w http.ResponseWriter, r *http.Request, o outcome, back string) {
	if wantsJSON(r) {
		w.Header().Set("Content-Type", "application/json")
		if !o.OK {
			w.WriteHeader(http.StatusUnprocessableEntity)
		}
		json.NewEncoder(w).Encode(o)
		return
	}
	rs := sessionOf(r)
	s.members.setFlash(rs.id, o.Message)
	s.visitors.setFlash(rs.id, o.Message)
	http.Redirect(w, r, back, http.StatusSeeOther)
}

// fail refuses an action before any request was made.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, code int, msg, back string) {
	if wantsJSON(r) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		json.NewEncoder(w).Encode(outcome{Message: msg})
		return
	}
	if rs := sessionOf(r); rs != nil && back != "" {
		s.members.setFlash(rs.id, msg)
		s.visitors.setFlash(rs.id, msg)
		http.Redirect(w, r, back, http.StatusSeeOther)
		return
	}
	http.Error(w, msg, code)
}

// do sends requests through the agent's request path, one after the
// other, and sums up their answers.
func (s *Server) do(r *http.Request, topic string, reqs []map[string]any, done string) outcome {
	var o outcome
	okN := 0
	var errs []string
	for _, req := range reqs {
		payload, err := json.Marshal(req)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		res := s.be.Do(r.Context(), topic, payload)
		o.Results = append(o.Results, result{RequestID: res.RequestID, OK: res.Ok, Error: res.Error, Duplicate: res.Duplicate})
		if res.Ok {
			okN++
		} else {
			errs = append(errs, res.Error)
		}
	}
	o.OK = len(errs) == 0 && okN > 0
	switch {
	case o.OK:
		o.Message = done
	case okN > 0:
		o.Message = fmt.Sprintf("%s, but %d of %d failed: %s", done, len(errs), len(reqs), strings.Join(errs, "; "))
	case len(errs) > 0:
		o.Message = "refused: " + strings.Join(errs, "; ")
	default:
		o.Message = "nothing to do"
	}
	return o
}

// requestID is the request id a form carries (made when the page was
// rendered, so that sending the same form twice applies it once), with a
// suffix per request of the action.
func requestID(r *http.Request, suffix string) string {
	id := r.PostFormValue("request_id")
	if id == "" || len(id) > 64 {
		id = "web-" + token()[:16]
	}
	if suffix != "" {
		id += "-" + suffix
	}
	return id
}

// ---- inbox ----

type inboxData struct {
	Visits     []visitCard
	Done       []visitCard
	Pets       []string // label buttons, pets first
	Others     []string // no-pet labels with samples besides neither/stranger
	Neither    string
	Stranger   string
	RequestID  string
	Unsure     float64
	Stats      inbox.Stats
	MaxPerCard int
}

type visitCard struct {
	inbox.VisitView
	Shown   []inbox.Entry // the thumbnails shown
	Hidden  int
	Unsure  bool
	Shortly bool // still in view
}

// maxThumbs is how many sightings a visit shows.
const maxThumbs = 6

func spread[T any](xs []T, n int) []T {
	if len(xs) <= n {
		return xs
	}
	out := make([]T, n)
	for i := range n {
		out[i] = xs[i*(len(xs)-1)/(n-1)]
	}
	return out
}

func (s *Server) card(v inbox.VisitView) visitCard {
	c := visitCard{VisitView: v, Shown: spread(v.Entries, maxThumbs)}
	c.Hidden = len(v.Entries) - len(c.Shown)
	c.Unsure = !v.Unknown() && v.Confidence < s.cfg.Unsure
	c.Shortly = s.now().Sub(v.End) < 20*time.Second
	return c
}

func (s *Server) labelChoices() (pets, others []string) {
	counts, _ := s.be.Labels()
	for _, c := range counts {
		switch {
		case c.Label == s.cfg.NeitherLabel || c.Label == s.cfg.StrangerLabel:
		case s.be.IsPet(c.Label):
			pets = append(pets, c.Label)
		default:
			others = append(others, c.Label)
		}
	}
	return pets, others
}

func (s *Server) inboxPage(w http.ResponseWriter, r *http.Request) {
	d := inboxData{Neither: s.cfg.NeitherLabel, Stranger: s.cfg.StrangerLabel, RequestID: "web-" + token()[:16],
		Unsure: s.cfg.Unsure, Stats: s.inbox.Stats(), MaxPerCard: maxThumbs}
	d.Pets, d.Others = s.labelChoices()
	for _, v := range s.inbox.Visits(0, s.cfg.Unsure) {
		switch {
		case v.Todo && len(d.Visits) < 24:
			d.Visits = append(d.Visits, s.card(v))
		case !v.Todo && len(d.Done) < 12:
			d.Done = append(d.Done, s.card(v))
		}
	}
	s.render(w, r, "inbox", "Inbox", d)
}

// labelAction names a visit (a spread of its sightings) or the sightings
// selected in it. Sightings of the visit already stored under another
// name are moved to the new one.
func (s *Server) labelAction(w http.ResponseWriter, r *http.Request) {
	label := strings.TrimSpace(r.PostFormValue("label"))
	if label == "" {
		label = strings.TrimSpace(r.PostFormValue("name"))
	}
	if err := protocol.CheckLabelName(label); err != nil {
		s.fail(w, r, http.StatusBadRequest, "give a name: "+err.Error(), "/inbox")
		return
	}
	selected := r.PostForm["sighting"]
	var ids []string
	var moves []uint64
	var visitID uint64
	if v := r.PostFormValue("visit"); v != "" {
		if _, err := fmt.Sscan(v, &visitID); err != nil {
			s.fail(w, r, http.StatusBadRequest, "bad visit", "/inbox")
			return
		}
	}
	switch {
	case len(selected) > 0:
		if len(selected) > protocol.MaxBatch {
			s.fail(w, r, http.StatusBadRequest, fmt.Sprintf("select at most %d sightings", protocol.MaxBatch), "/inbox")
			return
		}
		for _, id := range selected {
			if e, ok := s.inbox.Get(id); ok && e.SampleID != 0 && e.Labelled != "" {
				if e.Labelled != label {
					moves = append(moves, e.SampleID)
				}
				continue
			}
			ids = append(ids, id)
		}
	case visitID != 0:
		v, ok := s.inbox.VisitByID(visitID)
		if !ok {
			s.fail(w, r, http.StatusNotFound, "that visit is no longer in the inbox", "/inbox")
			return
		}
		var fresh []string
		same := 0
		for _, e := range v.Entries {
			switch {
			case e.Labelled == "":
				fresh = append(fresh, e.ID)
			case e.Labelled == label:
				same++
			case e.SampleID != 0:
				moves = append(moves, e.SampleID)
			}
		}
		// A visit named before is corrected by moving its samples; one
		// named this way already gets no more.
		if len(moves) == 0 && same == 0 {
			ids = spread(fresh, s.cfg.VisitSamples)
		}
	default:
		s.fail(w, r, http.StatusBadRequest, "select sightings or a visit to name", "/inbox")
		return
	}
	var o outcome
	if len(ids) > 0 {
		o = s.do(r, protocol.TopicLabel, []map[string]any{{"request_id": requestID(r, ""), "sighting_ids": ids, "label": label}},
			fmt.Sprintf("named %d sighting(s) %q", len(ids), label))
	}
	if len(moves) > 0 {
		var reqs []map[string]any
		for _, id := range moves {
			reqs = append(reqs, map[string]any{"request_id": requestID(r, fmt.Sprintf("m%d", id)), "cmd": "move", "sample_id": id, "to": label})
		}
		m := s.do(r, protocol.TopicCmd, reqs, fmt.Sprintf("moved %d sample(s) to %q", len(moves), label))
		if len(ids) > 0 {
			m.OK = m.OK && o.OK
			m.Message = o.Message + "; " + m.Message
			m.Results = append(o.Results, m.Results...)
		}
		o = m
	}
	if len(ids) == 0 && len(moves) == 0 {
		o = outcome{OK: true, Message: fmt.Sprintf("already named %q", label)}
	}
	s.answer(w, r, o, "/inbox")
}

// ---- pets ----

type petsData struct {
	Labels    []petCard
	Names     []string
	RequestID string
	MaxUpload int64
	MaxFiles  int
}

type petCard struct {
	Label   string
	Pet     bool
	Samples []Sample
	Count   int
	Hidden  int
}

// maxSamplesShown bounds the thumbnails per label on the page.
const maxSamplesShown = 48

func (s *Server) petsPage(w http.ResponseWriter, r *http.Request) {
	samples, err := s.be.Samples()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	by := map[string][]Sample{}
	for _, smp := range samples {
		by[smp.Label] = append(by[smp.Label], smp)
	}
	d := petsData{RequestID: "web-" + token()[:16], MaxUpload: s.cfg.MaxUpload, MaxFiles: s.cfg.MaxFiles}
	for l := range by {
		d.Names = append(d.Names, l)
	}
	slices.Sort(d.Names)
	all := r.URL.Query().Get("all")
	for _, l := range d.Names {
		smps := by[l]
		slices.SortFunc(smps, func(a, b Sample) int { return b.Time.Compare(a.Time) })
		c := petCard{Label: l, Pet: s.be.IsPet(l), Count: len(smps), Samples: smps}
		if all != l && len(smps) > maxSamplesShown {
			c.Samples, c.Hidden = smps[:maxSamplesShown], len(smps)-maxSamplesShown
		}
		d.Labels = append(d.Labels, c)
	}
	slices.SortStableFunc(d.Labels, func(a, b petCard) int {
		switch {
		case a.Pet && !b.Pet:
			return -1
		case !a.Pet && b.Pet:
			return 1
		}
		return 0
	})
	s.render(w, r, "pets", "Pets", d)
}

// samplesAction forgets the samples selected, or moves them to another
// label; one request per sample.
func (s *Server) samplesAction(w http.ResponseWriter, r *http.Request) {
	ids := r.PostForm["sample"]
	action := r.PostFormValue("op")
	if one := r.PostFormValue("forget"); one != "" {
		ids, action = []string{one}, "forget"
	}
	if len(ids) == 0 || len(ids) > 500 {
		s.fail(w, r, http.StatusBadRequest, "select 1 to 500 samples", "/pets")
		return
	}
	to := strings.TrimSpace(r.PostFormValue("to"))
	var reqs []map[string]any
	for _, v := range ids {
		var id uint64
		if _, err := fmt.Sscan(v, &id); err != nil || id == 0 {
			s.fail(w, r, http.StatusBadRequest, fmt.Sprintf("bad sample id %q", v), "/pets")
			return
		}
		req := map[string]any{"request_id": requestID(r, fmt.Sprint(id)), "sample_id": id}
		switch action {
		case "forget":
			req["cmd"] = "forget"
		case "move":
			req["cmd"], req["to"] = "move", to
		default:
			s.fail(w, r, http.StatusBadRequest, "op must be forget or move", "/pets")
			return
		}
		reqs = append(reqs, req)
	}
	done := fmt.Sprintf("forgot %d sample(s)", len(reqs))
	if action == "move" {
		done = fmt.Sprintf("moved %d sample(s) to %q", len(reqs), to)
	}
	s.answer(w, r, s.do(r, protocol.TopicCmd, reqs, done), "/pets")
}

// renameAction renames a label, or merges it into another (to names an
// existing label).
func (s *Server) renameAction(w http.ResponseWriter, r *http.Request) {
	from := r.PostFormValue("label")
	to := strings.TrimSpace(r.PostFormValue("to"))
	if into := r.PostFormValue("into"); into != "" {
		to = into
	}
	o := s.do(r, protocol.TopicCmd, []map[string]any{{"request_id": requestID(r, ""), "cmd": "rename", "label": from, "to": to}},
		fmt.Sprintf("%q is now %q", from, to))
	s.answer(w, r, o, "/pets")
}

func (s *Server) forgetAction(w http.ResponseWriter, r *http.Request) {
	label := r.PostFormValue("label")
	if r.PostFormValue("confirm") != label {
		s.fail(w, r, http.StatusBadRequest, fmt.Sprintf("to forget every sample of %q, type its name to confirm", label), "/pets")
		return
	}
	o := s.do(r, protocol.TopicCmd, []map[string]any{{"request_id": requestID(r, ""), "cmd": "forget", "label": label}},
		fmt.Sprintf("forgot %q", label))
	s.answer(w, r, o, "/pets")
}

// ---- health ----

type healthData struct {
	Labels    []protocol.LabelCount
	Head      any
	Setting   float64
	InUse     float64
	Distance  float64
	Eval      *evalState
	Inbox     inbox.Stats
	Agent     Health
	RequestID string
}

func (s *Server) healthPage(w http.ResponseWriter, r *http.Request) {
	d := healthData{Setting: s.be.Threshold(), Inbox: s.inbox.Stats(), Agent: s.be.Health(), RequestID: "web-" + token()[:16]}
	d.Labels, _ = s.be.Labels()
	if h := s.be.Head(); h != nil {
		d.Head = h
		d.InUse = h.Threshold
		if h.Calibration != nil {
			d.Distance = h.Calibration.Distance
		}
		if d.Setting > 0 {
			d.InUse = d.Setting
		}
		d.Eval = s.eval.state(s, h)
	}
	s.render(w, r, "health", "Health", d)
}

func (s *Server) retrainAction(w http.ResponseWriter, r *http.Request) {
	o := s.do(r, protocol.TopicCmd, []map[string]any{{"request_id": requestID(r, ""), "cmd": "retrain"}}, "retrained")
	s.answer(w, r, o, "/health")
}

func (s *Server) thresholdAction(w http.ResponseWriter, r *http.Request) {
	var v float64
	if r.PostFormValue("calibrated") != "" {
		v = 0
	} else if _, err := fmt.Sscan(r.PostFormValue("value"), &v); err != nil {
		s.fail(w, r, http.StatusBadRequest, "the threshold must be a number between 0 and 1", "/health")
		return
	}
	o := s.do(r, protocol.TopicCmd, []map[string]any{{"request_id": requestID(r, ""), "cmd": "threshold", "value": v}},
		fmt.Sprintf("threshold set to %g", v))
	s.answer(w, r, o, "/health")
}

// ---- live ----

type liveData struct {
	Frame    string // the sighting whose frame is shown
	Recent   []protocol.Sighting
	Timeline []petTimeline
}

type petTimeline struct {
	Pet   string
	Stays []inbox.Stay
}

func (s *Server) livePage(w http.ResponseWriter, r *http.Request) {
	d := liveData{Recent: s.be.Recent(8)}
	d.Frame, _, _ = s.be.Latest()
	stays := s.inbox.Timeline(s.now().Add(-24*time.Hour), s.be.IsPet)
	by := map[string][]inbox.Stay{}
	var order []string
	for _, st := range stays {
		if _, ok := by[st.Pet]; !ok {
			order = append(order, st.Pet)
		}
		if len(by[st.Pet]) < 8 {
			by[st.Pet] = append(by[st.Pet], st)
		}
	}
	for _, p := range order {
		d.Timeline = append(d.Timeline, petTimeline{Pet: p, Stays: by[p]})
	}
	s.render(w, r, "live", "Live", d)
}

// events streams "change" events while the inbox changes (new sightings,
// names after a label), so that the page refreshes itself.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming is not supported", http.StatusInternalServerError)
		return
	}
	select {
	case s.streams <- struct{}{}:
		defer func() { <-s.streams }()
	default:
		http.Error(w, "too many open pages", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	fmt.Fprint(w, "retry: 2000\n\n")
	fl.Flush()
	keep := time.NewTicker(25 * time.Second)
	defer keep.Stop()
	ver, ch := s.inbox.Changed()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-s.stopped:
			return
		case <-keep.C:
			fmt.Fprint(w, ": keep-alive\n\n")
		case <-ch:
			ver, ch = s.inbox.Changed()
			fmt.Fprintf(w, "event: change\ndata: %d\n\n", ver)
		}
		fl.Flush()
	}
}
