package web

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/whiskercam/whisker/agent/inbox"
	"github.com/whiskercam/whisker/agent/protocol"
	"github.com/whiskercam/whisker/learner"
)

// fakeBackend answers requests as the agent would for these tests, and
// records them.
type fakeBackend struct {
	mu   sync.Mutex
	reqs []map[string]any
}

func (f *fakeBackend) Do(_ context.Context, topic string, payload []byte) protocol.Result {
	var req map[string]any
	if err := json.Unmarshal(payload, &req); err != nil {
		return protocol.Result{Error: err.Error()}
	}
	req["topic"] = topic
	f.mu.Lock()
	f.reqs = append(f.reqs, req)
	f.mu.Unlock()
	id, _ := req["request_id"].(string)
	return protocol.Result{RequestID: id, Ok: true}
}

func (f *fakeBackend) requests() []map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.reqs)
}

func (f *fakeBackend) Labels() ([]protocol.LabelCount, error) {
	return []protocol.LabelCount{{Label: "Misty", Samples: 2}, {Label: "Tigger", Samples: 3}, {Label: "neither", Samples: 1}}, nil
}
func (f *fakeBackend) Samples() ([]Sample, error) {
	return []Sample{{ID: 1, Label: "Tigger", Time: time.Now(), Source: "image"}, {ID: 2, Label: "Misty", Time: time.Now(), Source: "image"}}, nil
}
func (f *fakeBackend) SampleJPEG(id uint64) ([]byte, error) {
	if id > 2 {
		return nil, learner.ErrNotFound
	}
	return testJPEG(400, 300), nil
}
func (f *fakeBackend) Head() *learner.HeadSummary { return nil }
func (f *fakeBackend) Threshold() float64         { return 0 }
func (f *fakeBackend) Evaluate(context.Context) (*learner.Report, error) {
	return nil, fmt.Errorf("none")
}
func (f *fakeBackend) Recent(int) []protocol.Sighting         { return nil }
func (f *fakeBackend) Latest() (string, []byte, bool)         { return "", nil, false }
func (f *fakeBackend) Snapshot(string) ([]byte, []byte, bool) { return nil, nil, false }
func (f *fakeBackend) IsPet(l string) bool                    { return l != "neither" && l != "stranger" }
func (f *fakeBackend) Health() Health                         { return Health{OK: true} }

func testJPEG(w, h int) []byte {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Set(x, y, color.RGBA{uint8(x), uint8(y), 100, 255})
		}
	}
	var buf bytes.Buffer
	jpeg.Encode(&buf, img, nil)
	return buf.Bytes()
}

type fixture struct {
	srv   *httptest.Server
	be    *fakeBackend
	inbox *inbox.Inbox
	web   *Server
}

// start serves the page as if it listened on listen (the test server
// itself is on 127.0.0.1).
func start(t *testing.T, cfg Config, listen string) *fixture {
	t.Helper()
	ib, err := inbox.Open(filepath.Join(t.TempDir(), "inbox.db"), inbox.Default(), slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ib.Close() })
	be := &fakeBackend{}
	w, err := New(cfg, Options{Device: "test", Version: "t", Listen: listen}, slog.New(slog.DiscardHandler), be, ib)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(w.Handler())
	t.Cleanup(func() { w.Stop(); srv.Close() })
	return &fixture{srv: srv, be: be, inbox: ib, web: w}
}

// browser is a client with a cookie jar that does not follow redirects.
func browser(t *testing.T) *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

var csrfMeta = regexp.MustCompile(`<meta name="csrf" content="([^"]+)">`)

// open loads a page and returns its body and CSRF token.
func open(t *testing.T, c *http.Client, u string) (string, string) {
	t.Helper()
	res, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", u, res.StatusCode, b)
	}
	m := csrfMeta.FindSubmatch(b)
	if m == nil {
		t.Fatalf("GET %s: no CSRF token in the page", u)
	}
	return string(b), string(m[1])
}

func post(t *testing.T, c *http.Client, u string, form url.Values, header map[string]string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res
}

func addVisit(ib *inbox.Inbox, n int) uint64 {
	t0 := time.Now().Add(-time.Minute)
	for i := range n {
		f := make([]float32, 8)
		f[0] = 1
		ib.Add([]inbox.Observed{{ID: fmt.Sprintf("s-%d", i), At: t0.Add(time.Duration(i) * 3 * time.Second), Frame: uint64(i + 1),
			Label: protocol.Unknown, Box: &protocol.SightingBox{X: 10, Y: 10, W: 50, H: 50, Class: "Cat"}, Features: f, Backbone: "bb",
			Crop: testJPEG(320, 240)}})
	}
	return ib.Visits(1, 0.8)[0].ID
}

func TestChangesNeedTokenSessionAndOrigin(t *testing.T) {
	f := start(t, Default(), "127.0.0.1:9808")
	visit := addVisit(f.inbox, 10)
	c := browser(t)
	_, tok := open(t, c, f.srv.URL+"/inbox")
	form := url.Values{"visit": {fmt.Sprint(visit)}, "label": {"Tigger"}, "request_id": {"r1"}}
	for _, tc := range []struct {
		name   string
		client *http.Client
		form   url.Values
		header map[string]string
		want   int
	}{
		{"no session", browser(t), withCSRF(form, tok), nil, http.StatusForbidden},
		{"no token", c, form, nil, http.StatusForbidden},
		{"a wrong token", c, withCSRF(form, tok[:len(tok)-2]+"xx"), nil, http.StatusForbidden},
		{"another site", c, withCSRF(form, tok), map[string]string{"Origin": "https://evil.example"}, http.StatusForbidden},
		{"another site (fetch metadata)", c, withCSRF(form, tok), map[string]string{"Sec-Fetch-Site": "cross-site"}, http.StatusForbidden},
		{"another host name (rebinding)", c, withCSRF(form, tok), map[string]string{"Host": "evil.example"}, http.StatusMisdirectedRequest},
	} {
		req, _ := http.NewRequest(http.MethodPost, f.srv.URL+"/inbox/label", strings.NewReader(tc.form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for k, v := range tc.header {
			if k == "Host" {
				req.Host = v
			}
			req.Header.Set(k, v)
		}
		res, err := tc.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != tc.want {
			t.Errorf("%s: status %d, want %d", tc.name, res.StatusCode, tc.want)
		}
	}
	if n := len(f.be.requests()); n != 0 {
		t.Fatalf("refused changes reached the agent: %v", f.be.requests())
	}
	// No change by GET: the action routes answer only POST.
	for _, p := range []string{"/inbox/label", "/pets/samples", "/pets/rename", "/pets/forget", "/pets/upload", "/health/retrain", "/health/threshold", "/logout"} {
		res, err := c.Get(f.srv.URL + p + "?visit=1&label=Tigger&csrf=" + tok)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("GET %s: %d, want 405", p, res.StatusCode)
		}
	}
	// The same form with its token goes through, as one batch of sightings
	// spread over the visit, and twice is the same request (same id).
	for range 2 {
		if res := post(t, c, f.srv.URL+"/inbox/label", withCSRF(form, tok), map[string]string{"Origin": f.srv.URL}); res.StatusCode != http.StatusSeeOther {
			t.Fatalf("label with token: %d", res.StatusCode)
		}
	}
	reqs := f.be.requests()
	if len(reqs) != 2 || reqs[0]["request_id"] != "r1" || reqs[1]["request_id"] != "r1" || reqs[0]["topic"] != protocol.TopicLabel {
		t.Fatalf("requests %v", reqs)
	}
	ids, _ := reqs[0]["sighting_ids"].([]any)
	if len(ids) != Default().VisitSamples || ids[0] != "s-0" || ids[len(ids)-1] != "s-9" {
		t.Errorf("a visit of 10 named by %v, want %d spread from s-0 to s-9", ids, Default().VisitSamples)
	}
}

func withCSRF(v url.Values, tok string) url.Values {
	out := url.Values{}
	for k, vs := range v {
		out[k] = vs
	}
	out.Set("csrf", tok)
	return out
}

func TestCookie(t *testing.T) {
	f := start(t, Default(), "127.0.0.1:9808")
	res, err := http.Get(f.srv.URL + "/inbox")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	var c *http.Cookie
	for _, k := range res.Cookies() {
		if k.Name == cookieName {
			c = k
		}
	}
	if c == nil || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || len(c.Value) < 40 {
		t.Fatalf("session cookie %+v", c)
	}
	for _, h := range []string{"Content-Security-Policy", "X-Frame-Options", "X-Content-Type-Options"} {
		if res.Header.Get(h) == "" {
			t.Errorf("no %s header", h)
		}
	}
	if !strings.Contains(res.Header.Get("Content-Security-Policy"), "script-src 'self'") {
		t.Errorf("CSP %q allows scripts from elsewhere", res.Header.Get("Content-Security-Policy"))
	}
}

func TestPathsAreNotFiles(t *testing.T) {
	f := start(t, Default(), "127.0.0.1:9808")
	addVisit(f.inbox, 1)
	c := browser(t)
	open(t, c, f.srv.URL+"/inbox")
	for _, p := range []string{
		"/static/../web.go", "/static/..%2fweb.go", "/static/%2e%2e/web.go", "/static/templates/layout.html",
		"/img/sighting/..%2f..%2finbox.db/crop.jpg", "/img/sighting/s-0/..%2f..%2fx", "/img/sighting/s-0/passwd",
		"/img/sample/..%2f1", "/img/sample/-1", "/img/sample/99", "/img/sighting/" + strings.Repeat("a", 200) + "/crop.jpg",
		"/health/plot/..%2f..%2fetc%2fpasswd",
	} {
		req, _ := http.NewRequest(http.MethodGet, f.srv.URL+p, nil)
		req.URL.Opaque = p // as sent, not cleaned by the client
		res, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode == http.StatusOK {
			t.Errorf("GET %s served %d bytes", p, len(body))
		}
		if bytes.Contains(body, []byte("package web")) || bytes.Contains(body, []byte("{{define")) {
			t.Errorf("GET %s served a source file", p)
		}
	}
	for _, p := range []string{"/static/app.js", "/static/app.css", "/img/sighting/s-0/crop.jpg", "/img/sighting/s-0/thumb.jpg", "/img/sample/1"} {
		res, err := c.Get(f.srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %d", p, res.StatusCode)
		}
	}
}

func TestLoginBeyondLoopback(t *testing.T) {
	hash, err := HashPassword("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	bc, _ := bcrypt.GenerateFromPassword([]byte("battery staple"), bcrypt.MinCost)
	cfg := Default()
	cfg.Users = []User{{Name: "ann", PasswordHash: hash}, {Name: "bob", PasswordHash: string(bc)}}
	if err := cfg.Validate("0.0.0.0:9808", 8<<20); err != nil {
		t.Fatal(err)
	}
	f := start(t, cfg, "0.0.0.0:9808")
	addVisit(f.inbox, 3)
	c := browser(t)
	// Without a session: the pages send to the login, images and changes
	// are refused, the login page and its files are served.
	res, _ := c.Get(f.srv.URL + "/inbox")
	res.Body.Close()
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/login" {
		t.Fatalf("GET /inbox without login: %d %s", res.StatusCode, res.Header.Get("Location"))
	}
	for _, p := range []string{"/img/sighting/s-0/crop.jpg", "/live/frame.jpg", "/events", "/img/sample/1"} {
		res, _ := c.Get(f.srv.URL + p)
		res.Body.Close()
		if res.StatusCode == http.StatusOK {
			t.Errorf("GET %s without login: 200", p)
		}
	}
	_, tok := open(t, c, f.srv.URL+"/login")
	if res := post(t, c, f.srv.URL+"/inbox/label", url.Values{"csrf": {tok}, "visit": {"1"}, "label": {"x"}}, nil); res.StatusCode != http.StatusUnauthorized {
		t.Errorf("a change before logging in: %d, want 401", res.StatusCode)
	}
	// A login needs the login page's token too.
	if res := post(t, c, f.srv.URL+"/login", url.Values{"username": {"ann"}, "password": {"correct horse"}}, nil); res.StatusCode != http.StatusForbidden {
		t.Errorf("login without token: %d, want 403", res.StatusCode)
	}
	if res := post(t, c, f.srv.URL+"/login", url.Values{"csrf": {tok}, "username": {"ann"}, "password": {"wrong"}}, nil); res.StatusCode != http.StatusSeeOther {
		t.Errorf("wrong password: %d", res.StatusCode)
	}
	if res, _ := c.Get(f.srv.URL + "/inbox"); res.StatusCode != http.StatusSeeOther {
		t.Errorf("after a wrong password the inbox answers %d", res.StatusCode)
	}
	for _, who := range [][2]string{{"ann", "correct horse"}, {"BOB", "battery staple"}} {
		c := browser(t)
		_, tok := open(t, c, f.srv.URL+"/login")
		before := c.Jar.Cookies(mustURL(f.srv.URL))
		res := post(t, c, f.srv.URL+"/login", url.Values{"csrf": {tok}, "username": {who[0]}, "password": {who[1]}}, nil)
		if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/inbox" {
			t.Fatalf("login %s: %d %s", who[0], res.StatusCode, res.Header.Get("Location"))
		}
		after := c.Jar.Cookies(mustURL(f.srv.URL))
		if len(before) != 1 || len(after) != 1 || before[0].Value == after[0].Value {
			t.Errorf("the session id did not change at login (fixation)")
		}
		body, tok2 := open(t, c, f.srv.URL+"/inbox")
		if !strings.Contains(body, "Log out") || tok2 == tok {
			t.Errorf("logged in as %s: no logout, or the token of the login page", who[0])
		}
		if res := post(t, c, f.srv.URL+"/logout", url.Values{"csrf": {tok2}}, nil); res.StatusCode != http.StatusSeeOther {
			t.Errorf("logout: %d", res.StatusCode)
		}
		c.Jar.SetCookies(mustURL(f.srv.URL), after) // the old cookie, kept by a thief
		if res, _ := c.Get(f.srv.URL + "/inbox"); res.StatusCode != http.StatusSeeOther {
			t.Errorf("a session logged out still opens the inbox: %d", res.StatusCode)
		}
	}
	// Guessing is slowed down: after five failures, the next try waits.
	c = browser(t)
	_, tok = open(t, c, f.srv.URL+"/login")
	codes := []int{}
	for range 7 {
		req, _ := http.NewRequest(http.MethodPost, f.srv.URL+"/login", strings.NewReader(url.Values{"csrf": {tok}, "username": {"ann"}, "password": {"guess"}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Accept", "application/json")
		res, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		codes = append(codes, res.StatusCode)
	}
	if codes[0] != http.StatusUnauthorized || codes[6] != http.StatusTooManyRequests {
		t.Errorf("statuses of 7 wrong passwords %v: want 401 first and 429 at the end", codes)
	}
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}

func TestConfig(t *testing.T) {
	hash, _ := HashPassword("pw")
	for _, tc := range []struct {
		cfg    func(*Config)
		listen string
		want   string
	}{
		{func(*Config) {}, "127.0.0.1:9808", ""},
		{func(*Config) {}, "localhost:9808", ""},
		{func(*Config) {}, "[::1]:9808", ""},
		{func(*Config) {}, "0.0.0.0:9808", "web.users"},
		{func(*Config) {}, ":9808", "web.users"},
		{func(*Config) {}, "192.168.1.5:9808", "web.users"},
		{func(c *Config) { c.Enabled = false }, "0.0.0.0:9808", ""},
		{func(c *Config) { c.Users = []User{{"ann", hash}} }, "0.0.0.0:9808", ""},
		{func(c *Config) { c.Users = []User{{"ann", "plain-text"}} }, "0.0.0.0:9808", "users[0].password_hash"},
		{func(c *Config) {
			c.Users = []User{{"ann", "$argon2id$v=19$m=9999999,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"}}
		}, "127.0.0.1:1", "users[0].password_hash"},
		{func(c *Config) { c.Users = []User{{"ann", hash}, {"ANN", hash}} }, "127.0.0.1:1", "given twice"},
		{func(c *Config) { c.Users = []User{{"a b", hash}} }, "127.0.0.1:1", "users[0].name"},
		{func(c *Config) { c.MaxUpload = 100 << 20 }, "127.0.0.1:1", "web.max_upload"},
		{func(c *Config) { c.StrangerLabel = "unknown" }, "127.0.0.1:1", "web.stranger_label"},
	} {
		c := Default()
		tc.cfg(&c)
		err := c.Validate(tc.listen, 8<<20)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.listen, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: err %v, want one naming %s", tc.listen, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), hash) {
			t.Errorf("the error shows the hash: %v", err)
		}
	}
	h, _ := parseHash(hash)
	if !h.verify("pw") || h.verify("pw ") || h.verify("") {
		t.Error("argon2id hash does not verify exactly its password")
	}
}

// upload posts a multipart form: fields in order, then the photos.
func upload(t *testing.T, c *http.Client, u string, fields [][2]string, photos map[string][]byte, header map[string]string) (int, outcome) {
	t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	for _, kv := range fields {
		mw.WriteField(kv[0], kv[1])
	}
	names := make([]string, 0, len(photos))
	for n := range photos {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		w, _ := mw.CreateFormFile("photo", n)
		w.Write(photos[n])
	}
	mw.Close()
	req, _ := http.NewRequest(http.MethodPost, u, &body)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Accept", "application/json")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var o outcome
	json.NewDecoder(res.Body).Decode(&o)
	return res.StatusCode, o
}

func TestUploadLimits(t *testing.T) {
	cfg := Default()
	cfg.MaxUpload, cfg.MaxFiles = 64<<10, 3
	f := start(t, cfg, "127.0.0.1:9808")
	c := browser(t)
	_, tok := open(t, c, f.srv.URL+"/pets")
	u := f.srv.URL + "/pets/upload"
	photo := testJPEG(200, 150)
	png := append([]byte("\x89PNG\r\n\x1a\n"), make([]byte, 100)...)
	fields := [][2]string{{"csrf", tok}, {"request_id", "up"}, {"label", "Misty"}}

	// Without the token, or with the token after the photos: refused
	// before any photo is read.
	if code, _ := upload(t, c, u, [][2]string{{"label", "Misty"}}, map[string][]byte{"a.jpg": photo}, nil); code != http.StatusForbidden {
		t.Errorf("upload without token: %d", code)
	}
	// Too large as a whole: refused by its length, before reading.
	big := map[string][]byte{}
	for i := range 4 {
		big[fmt.Sprintf("%d.jpg", i)] = bytes.Repeat([]byte{0xFF}, 70<<10)
	}
	if code, _ := upload(t, c, u, fields, big, nil); code != http.StatusRequestEntityTooLarge {
		t.Errorf("an upload over max_files x max_upload: %d, want 413", code)
	}
	if len(f.be.requests()) != 0 {
		t.Fatalf("refused uploads reached the agent: %v", f.be.requests())
	}
	// One photo too large, one not a photo, two good ones: the good ones
	// are labelled with the detector, one request each.
	code, o := upload(t, c, u, fields, map[string][]byte{
		"a.jpg": photo, "b.png": png, "huge.jpg": append([]byte{0xFF, 0xD8, 0xFF}, make([]byte, 65<<10)...),
	}, nil)
	if code != http.StatusUnprocessableEntity || !strings.Contains(o.Message, "huge.jpg is over") || !strings.Contains(o.Message, "stored 2 of 3") {
		t.Errorf("mixed upload: %d %q", code, o.Message)
	}
	code, o = upload(t, c, u, fields, map[string][]byte{"evil.jpg": []byte("<script>alert(1)</script>")}, nil)
	if code != http.StatusUnprocessableEntity || !strings.Contains(o.Message, "not a JPEG or PNG") {
		t.Errorf("not a photo: %d %q", code, o.Message)
	}
	reqs := f.be.requests()
	if len(reqs) != 2 {
		t.Fatalf("%d requests, want 2: %v", len(reqs), reqs)
	}
	for _, r := range reqs {
		if r["topic"] != protocol.TopicLabel || r["detect"] != true || r["label"] != "Misty" || r["image"] == "" {
			t.Errorf("upload request %v", r)
		}
	}
	// Too many photos: only max_files are read.
	code, o = upload(t, c, u, fields, map[string][]byte{"1.jpg": photo, "2.jpg": photo, "3.jpg": photo, "4.jpg": photo}, nil)
	if !strings.Contains(o.Message, "only 3 photos") || len(f.be.requests()) != 5 {
		t.Errorf("four photos of three allowed: %d %q, %d requests", code, o.Message, len(f.be.requests()))
	}
}
