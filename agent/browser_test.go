package agent_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"flag"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime/pprof"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"golang.org/x/image/draw"

	"github.com/whiskercam/whisker/agent"
	"github.com/whiskercam/whisker/agent/web"
	"github.com/whiskercam/whisker/internal/testenv"
)

var screenshots = flag.Bool("screenshots", false, "write the browser test's screenshots to docs/web/ (else to a temporary directory)")

// browserCtx starts headless chromium (Debian's, as root without its
// sandbox) for one test.
func browserCtx(t *testing.T) context.Context {
	t.Helper()
	bin := testenv.Command(t, "chromium", "chromium")
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(bin), chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.WindowSize(1280, 900))
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelA() })
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// eval runs JavaScript in the page and returns its value.
func eval[T any](t *testing.T, ctx context.Context, js string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("%s: %v", js, err)
	}
	return v
}

// waitFor waits until a JavaScript condition holds in the page.
func waitFor(t *testing.T, ctx context.Context, what, js string, timeout time.Duration) {
	t.Helper()
	if err := chromedp.Do(ctx, chromedp.Poll[chromedp.Void](js, chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(timeout))); err != nil {
		html, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`(document.getElementById("status") ? "status: " + document.getElementById("status").textContent + "\n" : "") + (document.getElementById("main") || document.body).innerText.slice(0, 3000)`))
		var stacks strings.Builder
		pprof.Lookup("goroutine").WriteTo(&stacks, 1)
		t.Fatalf("waiting %v for %s: %v\npage:\n%s\ngoroutines:\n%s", timeout, what, err, html, stacks.String())
	}
}

func navigate(t *testing.T, ctx context.Context, url string) {
	t.Helper()
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		t.Fatalf("open %s: %v", url, err)
	}
}

// TestBrowser drives the page in a real browser against a real agent on
// the demo video, with the detecting backbone and a real mosquitto: it
// names visits by clicks and keys, sees later sightings named on the live
// page, uploads photos, renames a pet, forgets a sample, is refused a
// change without the CSRF token, and logs in on an agent that listens
// beyond loopback. It takes screenshots of every page at desktop and
// phone size (go test -run TestBrowser ./agent/ -screenshots writes them
// to docs/web/), and reports the time from a click to a sighting named by
// it and the weight of the inbox page.
func TestBrowser(t *testing.T) {
	mosq := testenv.StartMosquitto(t)
	ctx := browserCtx(t)

	cfg := testConfig(t, mosq.URL(), "browser")
	cfg.Backbone = testenv.DetectorBackbone(t)
	// The video shows the cat twice 15 s apart: two visits, not one.
	cfg.Inbox.VisitGap = 5 * time.Second
	cfg.Log.Level = "info"
	if l := os.Getenv("WHISKER_TEST_LOG"); l != "" {
		cfg.Log.Level = l
	}
	a := startAgent(t, cfg)
	base := waitHTTP(t, a)
	shots := shotDir(t)
	began := time.Now()
	step := func(name string) { t.Logf("%5.1fs %s", time.Since(began).Seconds(), name) }

	step("1")
	// 1. The inbox fills by itself (the page follows the agent's events)
	// with visits of the cat, the dog and the empty lawn.
	navigate(t, ctx, base+"/inbox")
	hasVisit := func(alt string) string {
		return fmt.Sprintf(`[...document.querySelectorAll(".visit:not(.done)")].find(v => v.querySelector('img[alt^="%s"]'))`, alt)
	}
	waitFor(t, ctx, "visits of the cat, the dog and the lawn in the inbox",
		hasVisit("Cat")+" && "+hasVisit("Dog")+" && "+hasVisit("The whole frame"), 150*time.Second)
	weight := pageWeight(t, ctx)
	t.Logf("inbox page weight: %d bytes of HTML, %d bytes with its stylesheet, script and %d thumbnails (%d bytes of them)",
		weight.HTML, weight.Total, weight.Images, weight.ImageBytes)

	step("2")
	// 2. By keyboard alone: the dog's visit gets a new name ("n", typing,
	// Enter), the lawn's is "neither" (key 0).
	dog := eval[string](t, ctx, hasVisit("Dog")+".id")
	eval[bool](t, ctx, `document.getElementById("`+dog+`").focus(), true`)
	if err := chromedp.Do(ctx, chromedp.KeyEvent("n")); err != nil {
		t.Fatal(err)
	}
	// The name field takes the keys once it has the focus, as a person
	// waits to see it before typing.
	waitFor(t, ctx, "the new name's field focused", `document.activeElement && document.activeElement.tagName === "INPUT" && document.activeElement.closest("#`+dog+`") !== null`, 20*time.Second)
	if err := chromedp.Do(ctx, chromedp.KeyEvent("Misty"), chromedp.KeyEvent("\r")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the dog's visit named Misty", `document.querySelector('#`+dog+` [data-visit-label="Misty"]')`, 20*time.Second)
	lawn := eval[string](t, ctx, hasVisit("The whole frame")+".id")
	eval[bool](t, ctx, `document.getElementById("`+lawn+`").focus(), true`)
	if err := chromedp.Do(ctx, chromedp.KeyEvent("0")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the lawn's visit named neither", `document.querySelector('#`+lawn+` [data-visit-label="neither"]')`, 20*time.Second)
	waitCond(t, "a head trained on Misty and neither", 30*time.Second, func() bool {
		st, err := a.Stats()
		return err == nil && st.Head != nil && len(st.Head.Classes) == 2
	})

	step("3")
	// 3. Click -> named: with two visits of the cat in the inbox, name one
	// "Tigger" by mouse; the other is named Tigger by the head within
	// moments (re-classified from its kept features, no new frame needed).
	navigate(t, ctx, base+"/inbox")
	twoCats := `[...document.querySelectorAll(".visit:not(.done)")].filter(v => v.querySelector('img[alt^="Cat"]'))`
	waitFor(t, ctx, "two visits of the cat", twoCats+".length >= 2", 120*time.Second)
	cat := eval[string](t, ctx, twoCats+"[0].id")
	eval[bool](t, ctx, `(() => {
		const clicked = "`+cat+`";
		document.addEventListener("click", (e) => { if (e.target.closest("#" + clicked + " button")) window.__t0 = performance.now(); }, true);
		const done = () => [...document.querySelectorAll(".visit")].some(v => v.id !== clicked && v.querySelector('[data-visit-label="Tigger"]'));
		new MutationObserver(() => { if (window.__t0 && !window.__t1 && done()) window.__t1 = performance.now(); })
			.observe(document.getElementById("main"), { childList: true, subtree: true });
		return true;
	})()`)
	// Typing into the focused field keeps the page from refreshing under
	// the mouse (and a refresh keeps that field focused).
	eval[bool](t, ctx, `document.querySelector("#`+cat+` input[name=name]").focus(), true`)
	if err := chromedp.Do(ctx, chromedp.KeyEvent("Tigger"), chromedp.Click(chromedp.CSS("#"+cat+" .new button"))); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "another visit of the cat named Tigger after the click", `window.__t1`, 30*time.Second)
	clickToNamed := time.Duration(eval[float64](t, ctx, `window.__t1 - window.__t0`) * float64(time.Millisecond))
	t.Logf("click -> another sighting named on the page: %v", clickToNamed.Round(time.Millisecond))
	screenshot(t, ctx, shots, "inbox")

	step("4")
	// 4. The live page: later sightings carry the names.
	navigate(t, ctx, base+"/live")
	waitFor(t, ctx, "a named sighting on the live page", `document.querySelector('.recent li[data-label="Tigger"], .recent li[data-label="Misty"]')`, 90*time.Second)
	waitFor(t, ctx, "the live frame", `document.getElementById("live-frame") && document.getElementById("live-frame").naturalWidth > 0`, 10*time.Second)
	waitFor(t, ctx, "a pet on the timeline", `document.querySelector(".timeline li")`, 60*time.Second)
	screenshot(t, ctx, shots, "live")

	step("4b")
	// 4b. At phone size, the pages are reached by tapping the navigation
	// and none is wider than the screen.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(1), chromedp.EmulateMobile)); err != nil {
		t.Fatal(err)
	}
	for _, page := range []string{"inbox", "pets", "health", "live"} {
		if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`nav a[href="/`+page+`"]`))); err != nil {
			t.Fatal(err)
		}
		wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		err := chromedp.Do(wctx, chromedp.WaitReady(chromedp.CSS(`nav a[href="/`+page+`"][aria-current="page"]`)))
		cancel()
		if err != nil {
			t.Fatalf("the %s page at phone size after a tap on its link: %v", page, err)
		}
		if w := eval[int](t, ctx, `document.documentElement.scrollWidth`); w > 390 {
			t.Errorf("the %s page is %d pixels wide on a 390-pixel phone screen", page, w)
		}
	}
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 900, chromedp.EmulateScale(1))); err != nil {
		t.Fatal(err)
	}

	step("5")
	// 5. Pets: upload two photos with the file chooser, then drop two.
	navigate(t, ctx, base+"/pets")
	count := func(label string) int {
		return eval[int](t, ctx, `document.querySelectorAll('.pet[data-label="`+label+`"] .sample').length`)
	}
	tiggers := count("Tigger")
	second := filepath.Join(t.TempDir(), "tigger-2.png")
	if data, err := os.ReadFile(testenv.Photo(t, "chelsea.png")); err != nil || os.WriteFile(second, data, 0o644) != nil {
		t.Fatal("copy chelsea.png", err)
	}
	if err := chromedp.Do(ctx, chromedp.SendKeys(chromedp.ID("up-label"), "Tigger"),
		chromedp.SetUploadFiles(chromedp.ID("up-files"), []string{testenv.Photo(t, "chelsea.png"), second}),
		chromedp.Click(chromedp.CSS("#upload button[type=submit]"))); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the two uploaded photos among Tigger's samples", fmt.Sprintf(`document.querySelectorAll('.pet[data-label="Tigger"] .sample').length == %d`, tiggers+2), 60*time.Second)
	if alt := eval[string](t, ctx, `document.querySelector('.pet[data-label="Tigger"] .sample img').alt`); !strings.Contains(alt, "image:pet") {
		t.Errorf("the uploaded photo's sample %q was not cropped to the pet by the detector", alt)
	}
	misties := count("Misty")
	dogJPEG, err := os.ReadFile(testenv.Photo(t, "dog.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	eval[bool](t, ctx, `(() => {
		document.getElementById("up-label").value = "Misty";
		const bytes = Uint8Array.from(atob("`+base64.StdEncoding.EncodeToString(dogJPEG)+`"), (c) => c.charCodeAt(0));
		const dt = new DataTransfer();
		dt.items.add(new File([bytes], "misty-1.jpg", { type: "image/jpeg" }));
		dt.items.add(new File([bytes], "misty-2.jpg", { type: "image/jpeg" }));
		document.querySelector("#upload .drop").dispatchEvent(new DragEvent("drop", { dataTransfer: dt, bubbles: true, cancelable: true }));
		return true;
	})()`)
	waitFor(t, ctx, "two dropped photos among Misty's samples", fmt.Sprintf(`document.querySelectorAll('.pet[data-label="Misty"] .sample').length == %d`, misties+2), 60*time.Second)
	if msg := eval[string](t, ctx, `document.getElementById("status").textContent`); !strings.Contains(msg, "Stored 2 of 2") {
		t.Errorf("after dropping two photos the page says %q", msg)
	}

	step("6")
	// 6. Forget one sample of Tigger with its button.
	tiggers = count("Tigger")
	victim := eval[string](t, ctx, `document.querySelector('.pet[data-label="Tigger"] .sample').dataset.sample`)
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`.pet[data-label="Tigger"] .sample[data-sample="`+victim+`"] button.x`))); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the forgotten sample gone", fmt.Sprintf(`document.querySelectorAll('.pet[data-label="Tigger"] .sample').length == %d && !document.querySelector('.sample[data-sample="%s"]')`, tiggers-1, victim), 20*time.Second)

	step("7")
	// 7. Rename Misty to Moppet.
	misty := eval[string](t, ctx, `document.querySelector('.pet[data-label="Misty"]').id`)
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS("#"+misty+" summary")),
		chromedp.SendKeys(chromedp.CSS("#"+misty+` form[action="/pets/rename"] input[name=to]`), "Moppet"),
		chromedp.Click(chromedp.CSS("#"+misty+` form[action="/pets/rename"] button`))); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "Misty renamed Moppet", `document.querySelector('.pet[data-label="Moppet"]') && !document.querySelector('.pet[data-label="Misty"]')`, 20*time.Second)
	screenshot(t, ctx, shots, "pets")

	step("8")
	// 8. A change without the CSRF token is refused, from this page and
	// from a page of another origin, and changes nothing.
	status := eval[int](t, ctx, `fetch("/pets/forget", { method: "POST", body: new URLSearchParams({ label: "Tigger", confirm: "Tigger" }) }).then((r) => r.status)`)
	if status != http.StatusForbidden {
		t.Errorf("a change without the token: %d, want 403", status)
	}
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprintf(w, `<form method="post" action="%s/pets/forget"><input name="label" value="Tigger"><input name="confirm" value="Tigger"><button id="go">win a prize</button></form>`, base)
	}))
	defer evil.Close()
	navigate(t, ctx, strings.Replace(evil.URL, "127.0.0.1", "localhost", 1))
	resp, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.ID("go")))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != http.StatusForbidden {
		t.Errorf("a form of another site posted to the page: %d, want 403", resp.Status)
	}
	if body := eval[string](t, ctx, `document.body.innerText`); !strings.Contains(body, "no session") && !strings.Contains(body, "refused") {
		t.Errorf("the refusal says %q", body)
	}
	navigate(t, ctx, base+"/pets")
	if n := count("Tigger"); n != tiggers-1 {
		t.Errorf("after the refused changes Tigger has %d samples, want %d", n, tiggers-1)
	}

	step("9")
	// 9. Health: counts, cross-validation with its plots, limits.
	navigate(t, ctx, base+"/health")
	waitFor(t, ctx, "the evaluation and its plots", `!document.getElementById("eval") && document.querySelector('img[src="/health/plot/confusion.png"]') && document.querySelector('img[src="/health/plot/confusion.png"]').naturalWidth > 0`, 90*time.Second)
	screenshot(t, ctx, shots, "health")

	step("10")
	// 10. Beyond loopback: a second agent with a user; the page asks for
	// the password and sets a strict, script-proof session cookie.
	login(t, ctx, mosq.URL(), shots)
	if *screenshots {
		t.Logf("screenshots in %s", shots)
	}
}

// login starts an agent listening beyond loopback with one user and logs
// in with the browser.
func login(t *testing.T, ctx context.Context, broker string, shots string) {
	hash, err := web.HashPassword("correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	cam := t.TempDir()
	photo, _ := os.ReadFile(testenv.Photo(t, "chelsea.png"))
	os.WriteFile(filepath.Join(cam, "cat.png"), photo, 0o644)
	cfg := testConfig(t, broker, "browser-lan")
	cfg.Camera.Source, cfg.Camera.Motion.Enabled = cam, false
	cfg.HTTP.Listen = "0.0.0.0:0"
	cfg.Web.Users = []web.User{{Name: "ann", PasswordHash: hash}}
	cfg.Log.Level = "info"
	b := startAgent(t, cfg)
	base := waitHTTP(t, b)
	tab, cancel := chromedp.NewContext(ctx)
	defer cancel()
	navigate(t, tab, base+"/inbox")
	waitFor(t, tab, "the login page", `location.pathname == "/login" && document.getElementById("password")`, 10*time.Second)
	screenshot(t, tab, shots, "login")
	submit := func(password string) *network.Response {
		if err := chromedp.Do(tab, chromedp.SendKeys(chromedp.ID("user"), "ann"), chromedp.SendKeys(chromedp.ID("password"), password)); err != nil {
			t.Fatal(err)
		}
		resp, err := chromedp.RunResponse(tab, chromedp.Click(chromedp.CSS("form.login button")))
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	submit("wrong password")
	waitFor(t, tab, "the refusal of a wrong password", `location.pathname == "/login" && document.getElementById("status").textContent.includes("wrong")`, 20*time.Second)
	submit("correct horse battery")
	waitFor(t, tab, "the inbox after logging in", `location.pathname == "/inbox" && document.body.innerText.includes("Log out ann")`, 20*time.Second)
	cookies, err := chromedp.Run(tab, chromedp.Action[network.GetCookiesResult](func(ctx context.Context, tg *chromedp.Target) (network.GetCookiesResult, error) {
		return cdp.Call(ctx, tg, network.GetCookies, network.GetCookiesParams{})
	}))
	if err != nil {
		t.Fatal(err)
	}
	var session *network.Cookie
	for _, c := range cookies.Cookies {
		if c.Name == "whisker_session" {
			session = c
		}
	}
	if session == nil || !session.HTTPOnly || session.SameSite != network.CookieSameSiteStrict {
		t.Errorf("session cookie %+v: want HttpOnly and SameSite=Strict", session)
	}
	if v := eval[string](t, tab, `document.cookie`); strings.Contains(v, "whisker_session") {
		t.Error("the page's script can read the session cookie")
	}
}

func waitHTTP(t *testing.T, a *agent.Agent) string {
	t.Helper()
	waitCond(t, "the agent's HTTP listener", 60*time.Second, func() bool { return a.HTTPAddr() != "" })
	addr := a.HTTPAddr()
	if strings.HasPrefix(addr, "0.0.0.0:") || strings.HasPrefix(addr, "[::]:") {
		addr = "127.0.0.1:" + addr[strings.LastIndex(addr, ":")+1:]
	}
	return "http://" + addr
}

// waitCond waits until cond holds, checking every 50 ms.
func waitCond(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, timeout)
		}
		<-tick.C
	}
}

type weight struct {
	HTML, Total, Images, ImageBytes int
}

// pageWeight sums what the page loaded: its HTML, stylesheet, script and
// the pictures in view (the others load lazily).
func pageWeight(t *testing.T, ctx context.Context) weight {
	nocache := func(off bool) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			if _, err := cdp.Call(ctx, tg, network.Enable, network.EnableParams{}); err != nil {
				return err
			}
			_, err := cdp.Call(ctx, tg, network.SetCacheDisabled, network.SetCacheDisabledParams{CacheDisabled: off})
			return err
		})
	}
	if err := chromedp.Do(ctx, nocache(true), chromedp.Reload()); err != nil {
		t.Fatal(err)
	}
	defer chromedp.Do(ctx, nocache(false))
	waitFor(t, ctx, "the page's pictures", `[...document.images].filter(i => i.loading !== "lazy" || i.getBoundingClientRect().top < innerHeight).every(i => i.complete)`, 30*time.Second)
	return eval[weight](t, ctx, `(() => {
		const nav = performance.getEntriesByType("navigation")[0];
		const res = performance.getEntriesByType("resource").filter((r) => !r.name.includes("/events"));
		const imgs = res.filter((r) => r.initiatorType === "img");
		const size = (r) => r.encodedBodySize || r.transferSize || 0;
		return { HTML: size(nav), Total: size(nav) + res.reduce((a, r) => a + size(r), 0), Images: imgs.length, ImageBytes: imgs.reduce((a, r) => a + size(r), 0) };
	})()`)
}

func shotDir(t *testing.T) string {
	if *screenshots {
		dir := filepath.Join(testenv.Root(t), "docs", "web")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	return t.TempDir()
}

// screenshot saves the page at desktop (1280x900) and phone (390x844)
// size as palette PNGs.
func screenshot(t *testing.T, ctx context.Context, dir, name string) {
	t.Helper()
	for _, size := range []struct {
		suffix        string
		width, height int64
		mobile        bool
	}{{"desktop", 1280, 900, false}, {"phone", 390, 844, true}} {
		opts := []chromedp.EmulateViewportOption{chromedp.EmulateScale(1)}
		if size.mobile {
			opts = append(opts, chromedp.EmulateMobile)
		}
		if err := chromedp.Do(ctx, chromedp.EmulateViewport(size.width, size.height, opts...)); err != nil {
			t.Fatal(err)
		}
		eval[bool](t, ctx, `new Promise((ok) => requestAnimationFrame(() => requestAnimationFrame(() => ok(true))))`)
		raw, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := png.DecodeConfig(bytes.NewReader(raw))
		if err != nil || int64(cfg.Width) != size.width || int64(cfg.Height) != size.height {
			t.Fatalf("screenshot of %s at %dx%d: %dx%d, %v", name, size.width, size.height, cfg.Width, cfg.Height, err)
		}
		if !*screenshots {
			continue // re-encoding takes seconds under the race detector: only for the docs
		}
		small, err := palettePNG(raw)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, name+"-"+size.suffix+".png")
		if err := os.WriteFile(path, small, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot %s: %d bytes", filepath.Base(path), len(small))
	}
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 900, chromedp.EmulateScale(1))); err != nil {
		t.Fatal(err)
	}
}

// palettePNG re-encodes a screenshot at most 960 pixels wide with at most
// 256 colours: the most frequent of its colours at 4 bits a channel, each
// pixel mapped to the nearest.
func palettePNG(raw []byte) ([]byte, error) {
	src, err := png.Decode(bytes.NewReader(raw))
	if err != nil {
		return nil, err
	}
	w, h := src.Bounds().Dx(), src.Bounds().Dy()
	if w > 960 {
		w, h = 960, h*960/w
	}
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	draw.BiLinear.Scale(img, img.Bounds(), src, src.Bounds(), draw.Src, nil)
	key := func(p []uint8) int { return int(p[0]>>4)<<8 | int(p[1]>>4)<<4 | int(p[2]>>4) }
	var count [4096]int
	var sum [4096][3]int
	for i := 0; i < len(img.Pix); i += 4 {
		k := key(img.Pix[i:])
		count[k]++
		sum[k][0] += int(img.Pix[i])
		sum[k][1] += int(img.Pix[i+1])
		sum[k][2] += int(img.Pix[i+2])
	}
	mean := func(k int) color.RGBA {
		n := count[k]
		return color.RGBA{uint8(sum[k][0] / n), uint8(sum[k][1] / n), uint8(sum[k][2] / n), 255}
	}
	keys := make([]int, 0, 4096)
	for k, n := range count {
		if n > 0 {
			keys = append(keys, k)
		}
	}
	sort.Slice(keys, func(i, j int) bool { return count[keys[i]] > count[keys[j]] })
	pal := make(color.Palette, min(len(keys), 256))
	for i := range pal {
		pal[i] = mean(keys[i])
	}
	var index [4096]uint8
	for _, k := range keys {
		index[k] = uint8(pal.Index(mean(k)))
	}
	out := image.NewPaletted(img.Bounds(), pal)
	for i, j := 0, 0; i < len(img.Pix); i, j = i+4, j+1 {
		out.Pix[j] = index[key(img.Pix[i:])]
	}
	var buf bytes.Buffer
	enc := png.Encoder{CompressionLevel: png.BestCompression}
	if err := enc.Encode(&buf, out); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
