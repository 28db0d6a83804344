package web_test

// The browser test: headless Chromium, driven by chromedp, opens the demo page
// served by web.New over a real Redis, sends a run of requests the way a
// visitor does (choose a count, press Send) and checks what the page shows.
// With UPDATE_SCREENSHOT=1 it also rewrites docs/screenshot.png and
// docs/screenshot-phone.png from the finished run.

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"image/png"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/input"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/gomodule/redigo/redis"

	"github.com/go-floodgate/floodgate/internal/redistest"
	"github.com/go-floodgate/floodgate/limiter"
	"github.com/go-floodgate/floodgate/web"
)

const (
	// browserTimeout bounds the whole browser test, browser starts included.
	browserTimeout = 60 * time.Second
	// runTimeout bounds one run, from pressing Send to #state == "done".
	runTimeout = 20 * time.Second
	// demoQuery paces the page's requests 50 ms apart, so a run of 15 takes
	// about 0.7 s instead of the page's default 10 s.
	demoQuery = "/?interval=50"

	desktopWidth, desktopHeight = 1280, 800
	phoneWidth, phoneHeight     = 390, 844
	phoneScale                  = 2.0
)

func TestBrowserDemo(t *testing.T) {
	exe := chromiumPath(t)
	srv := redistest.Shared(t)

	ctx, cancel := context.WithTimeout(context.Background(), browserTimeout)
	defer cancel()
	// One service for the subtests: each browser is an identity of its own.
	demo := newDemo(t, srv)

	t.Run("15_requests", func(t *testing.T) {
		b := newBrowser(ctx, t, exe)
		before := demo.counters(t)

		b.do(t, "open the page",
			chromedp.EmulateViewport(desktopWidth, desktopHeight),
			chromedp.Navigate(demo.url+demoQuery),
			chromedp.WaitVisible(chromedp.ID("send")),
		)
		p := b.run(t, 15)
		p.check(t, 15, 10, 5)
		if p.Remaining != "0" {
			t.Errorf("#remaining = %q, want 0; rows:%s", p.Remaining, p.rows())
		}
		demo.checkNewCounter(t, before, 10)

		// The screenshots show this finished run: desktop first, then the
		// same page in a phone's viewport.
		dir := screenshotDir(t)
		b.do(t, "settle the page for screenshots", stillPage())
		desktop := b.screenshot(t, "desktop screenshot", chromedp.FullScreenshot(100))
		savePNG(t, filepath.Join(dir, "screenshot.png"), desktop, desktopWidth)

		b.do(t, "switch to a phone's viewport",
			chromedp.EmulateViewport(phoneWidth, phoneHeight,
				chromedp.EmulateScale(phoneScale), chromedp.EmulateMobile, chromedp.EmulateTouch),
			chromedp.Evaluate[chromedp.Void](`window.scrollTo(0, 0)`),
			settle(),
		)
		phone := b.screenshot(t, "phone screenshot", chromedp.CaptureScreenshot())
		savePNG(t, filepath.Join(dir, "screenshot-phone.png"), phone, int(phoneWidth*phoneScale))

		b.checkConsole(t)
	})

	// Right after the 15 (whose browser's quota is spent for this window), a
	// fresh browser gets a new cookie, so a quota of its own.
	t.Run("5_requests_fresh_browser", func(t *testing.T) {
		b := newBrowser(ctx, t, exe) // a new profile, so a new cookie
		before := demo.counters(t)

		b.do(t, "open the page",
			chromedp.EmulateViewport(desktopWidth, desktopHeight),
			chromedp.Navigate(demo.url+demoQuery),
			chromedp.WaitVisible(chromedp.ID("send")),
		)
		p := b.run(t, 5)
		p.check(t, 5, 5, 0)
		// The panel follows the latest response to arrive, and responses
		// can land out of order, so any of the run's 9..5 is right.
		if n, err := strconv.Atoi(p.Remaining); err != nil || n < 5 || n > 9 {
			t.Errorf("#remaining = %q, want 5..9", p.Remaining)
		}
		demo.checkNewCounter(t, before, 5)
		b.checkConsole(t)
	})

	// The console checks above only mean something if the watcher sees a
	// violation when there is one: provoke both kinds on purpose.
	t.Run("console_watcher_sees_violations", func(t *testing.T) {
		b := newBrowser(ctx, t, exe)
		b.do(t, "open the page and break the rules",
			chromedp.Navigate(demo.url+"/"),
			chromedp.WaitVisible(chromedp.ID("send")),
			chromedp.Evaluate[chromedp.Void](`{
				const s = document.createElement('script');
				s.textContent = 'window.inlineRan = true';
				document.head.appendChild(s);
				setTimeout(() => { throw new Error('canary exception'); }, 0);
			}`),
		)
		deadline := time.Now().Add(5 * time.Second)
		for {
			csp, exc := false, false
			for _, p := range b.problems() {
				csp = csp || strings.Contains(p, "Content Security Policy")
				exc = exc || strings.Contains(p, "canary exception")
			}
			if csp && exc {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("watcher missed a provoked problem (CSP seen: %v, exception seen: %v); it saw %q",
					csp, exc, b.problems())
			}
			time.Sleep(20 * time.Millisecond)
		}
		ran, err := chromedp.Run(b.ctx, chromedp.Evaluate[bool](`window.inlineRan === true`))
		if err != nil {
			t.Fatal(err)
		}
		if ran {
			t.Error("an inline script ran: the Content-Security-Policy did not block it")
		}
	})
}

// chromiumPath finds a Chromium or Chrome to drive, or skips the test.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("no chromium on PATH: apt-get install chromium")
	return ""
}

// demo is a web.New service over httptest, deciding on the shared Redis
// under a key prefix of its own.
type demo struct {
	url    string
	prefix string
	redis  *redistest.Server
}

func newDemo(t *testing.T, srv *redistest.Server) *demo {
	t.Helper()
	prefix := redistest.Key(t) + "."
	lim := limiter.New(srv.Pool(t), limiter.WithTimeout(time.Second), limiter.WithPrefix(prefix))
	// As main does at boot: load the script, so no request pays for it.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := lim.Load(ctx); err != nil {
		t.Fatalf("load the limiter's script: %v", err)
	}
	key := make([]byte, web.MinSecretLen)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(web.New(web.Config{
		Limiter: lim,
		Limit:   limiter.Per(10, 10*time.Second),
		Keys:    [][]byte{key},
	}))
	t.Cleanup(ts.Close)
	return &demo{url: ts.URL, prefix: prefix, redis: srv}
}

// counters returns the demo's counters in Redis, by key.
func (d *demo) counters(t *testing.T) map[string]int {
	t.Helper()
	keys, err := redis.Strings(d.redis.Do(t, "KEYS", d.prefix+"*"), nil)
	if err != nil {
		t.Fatal(err)
	}
	m := make(map[string]int, len(keys))
	for _, k := range keys {
		m[k] = d.redis.Int(t, "GET", k)
	}
	return m
}

// checkNewCounter checks that a run went through Redis: one new counter (one
// browser, one identity) holding the run's allowed requests (a denied request
// spends nothing), with its window's expiry set, and the counters that were
// there before left alone.
func (d *demo) checkNewCounter(t *testing.T, before map[string]int, allowed int) {
	t.Helper()
	after := d.counters(t)
	var added []string
	for k, n := range after {
		if old, ok := before[k]; !ok {
			added = append(added, k)
		} else if n != old {
			t.Errorf("Redis counter %s of another browser went from %d to %d", k, old, n)
		}
	}
	if len(added) != 1 {
		t.Fatalf("new Redis counters under %q: %q, want exactly one", d.prefix, added)
	}
	key := added[0]
	if n := after[key]; n != allowed {
		t.Errorf("Redis counter %s = %d, want %d", key, n, allowed)
	}
	if ms := d.redis.Int(t, "PTTL", key); ms <= 0 || ms > 10000 {
		t.Errorf("Redis counter %s: PTTL %d ms, want within the 10 s window", key, ms)
	}
	t.Logf("Redis: %s = %d (other browsers' counters: %d)", key, after[key], len(before))
}

// browser is a headless Chromium with a profile of its own, whose console is
// watched from the start.
type browser struct {
	ctx context.Context

	mu       sync.Mutex
	bad      []string // console errors, exceptions, CSP reports
	messages []string // everything else, for the log
}

func newBrowser(ctx context.Context, t *testing.T, exe string) *browser {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(exe),
		chromedp.Headless,
		chromedp.NoSandbox, // root in a container has no sandbox to give
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true), // no internet here
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-dev-shm-usage", true),               // /dev/shm is small in containers
		chromedp.Flag("disable-background-timer-throttling", true), // the page paces requests with timers
		chromedp.Flag("disable-renderer-backgrounding", true),
		chromedp.Flag("force-color-profile", "srgb"), // stable screenshot colours
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(desktopWidth, desktopHeight),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	bctx, cancelBrowser := chromedp.NewContext(actx)
	// Registered after t.TempDir, so this runs first: the browser is gone
	// before its profile directory is removed.
	t.Cleanup(func() {
		cancelBrowser()
		cancelAlloc()
	})

	b := &browser{ctx: bctx}
	if err := chromedp.Do(bctx); err != nil { // start the browser and open the tab
		t.Fatalf("start %s: %v", exe, err)
	}
	if err := chromedp.Listen(bctx, b.watch); err != nil {
		t.Fatal(err)
	}
	return b
}

// watch records console messages. It runs on chromedp's reader goroutine, so
// it only appends under the lock.
func (b *browser) watch(ev any) {
	var msg string
	bad := false
	switch e := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		msg = "console." + string(e.Type) + ": " + consoleArgs(e.Args)
		bad = e.Type == runtime.ConsoleAPICalledTypeError || e.Type == runtime.ConsoleAPICalledTypeAssert
	case *runtime.EventExceptionThrown:
		d := e.ExceptionDetails
		msg = "exception: " + d.Text
		if d.Exception != nil {
			msg += " " + d.Exception.Description
		}
		bad = true
	case *cdplog.EventEntryAdded:
		en := e.Entry
		msg = fmt.Sprintf("log %s/%s: %s (%s)", en.Source, en.Level, en.Text, en.URL)
		bad = en.Level == cdplog.EntryLevelError && !expected429(en)
	default:
		return
	}
	if strings.Contains(msg, "Content Security Policy") || strings.Contains(msg, "Content-Security-Policy") {
		bad = true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if bad {
		b.bad = append(b.bad, msg)
	} else {
		b.messages = append(b.messages, msg)
	}
}

// expected429 reports whether a log entry is Chromium's network error for a
// 429 from /api/ping: blocked requests are the point of the demo.
func expected429(en *cdplog.Entry) bool {
	return en.Source == cdplog.EntrySourceNetwork &&
		strings.HasSuffix(en.URL, "/api/ping") &&
		strings.Contains(en.Text, "status of 429")
}

func consoleArgs(args []*runtime.RemoteObject) string {
	parts := make([]string, 0, len(args))
	for _, a := range args {
		switch {
		case a.Description != "":
			parts = append(parts, a.Description)
		case len(a.Value) > 0:
			parts = append(parts, string(a.Value))
		default:
			parts = append(parts, string(a.Type))
		}
	}
	return strings.Join(parts, " ")
}

func (b *browser) problems() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.bad...)
}

// checkConsole fails the test on any console error, JS exception or CSP
// report seen so far, and logs the other messages.
func (b *browser) checkConsole(t *testing.T) {
	t.Helper()
	// A round trip to the tab: events sent before its reply have been seen.
	if _, err := chromedp.Run(b.ctx, chromedp.Evaluate[int](`1`)); err != nil {
		t.Fatal(err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, m := range b.messages {
		t.Logf("browser: %s", m)
	}
	for _, m := range b.bad {
		t.Errorf("browser reported a problem: %s", m)
	}
}

func (b *browser) do(t *testing.T, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(b.ctx, steps...); err != nil {
		t.Fatalf("%s: %v (console problems: %q)", what, err, b.problems())
	}
}

func (b *browser) screenshot(t *testing.T, what string, shot chromedp.Action[[]byte]) []byte {
	t.Helper()
	buf, err := chromedp.Run(b.ctx, shot)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return buf
}

// run chooses count requests, presses Send, waits for the run to finish and
// returns what the page shows.
func (b *browser) run(t *testing.T, count int) pageState {
	t.Helper()
	sel := fmt.Sprintf("count-%d", count)
	b.do(t, "choose "+strconv.Itoa(count)+" requests",
		chromedp.Click(chromedp.CSS(`label[for="`+sel+`"]`)),
	)
	before := b.read(t)
	if before.Checked != sel {
		t.Fatalf("after clicking the %d label the checked radio is %q", count, before.Checked)
	}
	if before.State != "idle" {
		t.Fatalf("#state = %q before Send, want idle", before.State)
	}

	start := time.Now()
	b.do(t, "press Send", chromedp.Click(chromedp.ID("send")))
	wctx, cancel := context.WithTimeout(b.ctx, runTimeout)
	defer cancel()
	if err := chromedp.Do(wctx, chromedp.WaitVisible(chromedp.CSS(`#state.state-done`))); err != nil {
		p := b.read(t)
		t.Fatalf("run of %d did not finish within %v: %v; page: %+v; console problems: %q",
			count, runTimeout, err, p, b.problems())
	}
	t.Logf("run of %d finished in %v", count, time.Since(start).Round(time.Millisecond))
	return b.read(t)
}

// pageState is what the page shows, read through the DOM hooks.
type pageState struct {
	State     string   `json:"state"`
	Checked   string   `json:"checked"`
	Allowed   string   `json:"allowed"`
	Blocked   string   `json:"blocked"`
	Other     string   `json:"other"`
	Limit     string   `json:"limit"`
	Remaining string   `json:"remaining"`
	Reset     string   `json:"reset"`
	Slots     int      `json:"slots"`
	Rows      []result `json:"rows"`
}

type result struct {
	Status string `json:"status"`
	Class  string `json:"class"`
	Label  string `json:"label"`
}

const readPage = `(() => {
	const text = (id) => document.getElementById(id).textContent.trim();
	const checked = document.querySelector('input[name="count"]:checked');
	return {
		state: text('state'),
		checked: checked ? checked.id : '',
		allowed: text('allowed-count'),
		blocked: text('blocked-count'),
		other: text('other-count'),
		limit: text('limit'),
		remaining: text('remaining'),
		reset: text('reset'),
		slots: document.querySelectorAll('#results > li').length,
		rows: Array.from(document.querySelectorAll('#results .result'), (li) => ({
			status: li.dataset.status || '',
			class: li.className,
			label: li.querySelector('.slot-label').textContent,
		})),
	};
})()`

func (b *browser) read(t *testing.T) pageState {
	t.Helper()
	p, err := chromedp.Run(b.ctx, chromedp.Evaluate[pageState](readPage))
	if err != nil {
		t.Fatalf("read the page: %v", err)
	}
	return p
}

// check checks a finished run of count requests: the tallies, one landed row
// per request with the right status and class, and the limit panel. Each
// allowed row shows its own remaining count (limit-1 down to limit-allowed, in
// whatever order they landed: Redis counts atomically), each blocked row 0.
func (p pageState) check(t *testing.T, count, allowed, blocked int) {
	t.Helper()
	t.Logf("rows in send order:%s", p.rows())
	if p.State != "done" {
		t.Errorf("#state = %q, want done", p.State)
	}
	if p.Allowed != strconv.Itoa(allowed) || p.Blocked != strconv.Itoa(blocked) || p.Other != "0" {
		t.Errorf("tallies: %s allowed, %s blocked, %s other; want %d, %d, 0",
			p.Allowed, p.Blocked, p.Other, allowed, blocked)
	}
	if p.Slots != count || len(p.Rows) != count {
		t.Errorf("%d slots, %d landed .result rows; want %d of each", p.Slots, len(p.Rows), count)
	}
	const limit = 10
	left := map[int]bool{} // the remaining counts the allowed rows show
	var ok, limited int
	for i, r := range p.Rows {
		classes := strings.Fields(r.Class)
		var n int
		err := fmt.Errorf("no remaining count in label %q", r.Label)
		if m := leftRE.FindStringSubmatch(r.Label); m != nil {
			n, err = strconv.Atoi(m[1])
		}
		switch {
		case err != nil:
			t.Errorf("row #%d: %v", i+1, err)
		case r.Status == "200" && slices.Contains(classes, "allowed") && !slices.Contains(classes, "blocked"):
			ok++
			if left[n] {
				t.Errorf("row #%d: %d left, as another allowed row: two requests got the same count", i+1, n)
			}
			left[n] = true
			if n < limit-allowed || n > limit-1 {
				t.Errorf("row #%d: allowed with %d left, want %d..%d", i+1, n, limit-allowed, limit-1)
			}
		case r.Status == "429" && slices.Contains(classes, "blocked") && !slices.Contains(classes, "allowed"):
			limited++
			if n != 0 {
				t.Errorf("row #%d: blocked with %d left, want 0", i+1, n)
			}
		default:
			t.Errorf("row #%d: data-status %q, class %q; want 200 allowed or 429 blocked", i+1, r.Status, r.Class)
		}
	}
	if ok != allowed || limited != blocked {
		t.Errorf("rows: %d with 200/allowed, %d with 429/blocked; want %d and %d", ok, limited, allowed, blocked)
	}
	if p.Limit != strconv.Itoa(limit) {
		t.Errorf("#limit = %q, want %d", p.Limit, limit)
	}
	if n, err := strconv.Atoi(p.Reset); err != nil || n < 1 || n > 10 {
		t.Errorf("#reset = %q, want whole seconds in 1..10", p.Reset)
	}
}

// leftRE finds the remaining count in a row's label, "allowed · 9 left".
var leftRE = regexp.MustCompile(`(\d+) left$`)

func (p pageState) rows() string {
	var b strings.Builder
	for i, r := range p.Rows {
		fmt.Fprintf(&b, "\n\t#%d %s %s", i+1, r.Status, r.Label)
	}
	return b.String()
}

// stillPage makes the page's look deterministic for a screenshot: the light
// scheme, no animations (the page honours prefers-reduced-motion), the mouse
// off the Send button it just pressed, and a rendered frame.
func stillPage() chromedp.Action[chromedp.Void] {
	media := chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := cdp.Call(ctx, t, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
			Features: []*emulation.MediaFeature{
				{Name: "prefers-color-scheme", Value: "light"},
				{Name: "prefers-reduced-motion", Value: "reduce"},
			},
		})
		return err
	})
	return chromedp.Steps(media, chromedp.MouseEvent(input.DispatchMouseEventTypeMouseMoved, 0, 0), settle())
}

// settle waits for two animation frames, so that layout and paint have caught
// up with the last change.
func settle() chromedp.Action[chromedp.Void] {
	return chromedp.Evaluate[chromedp.Void](
		`new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(() => r())))`,
		chromedp.EvalAwaitPromise)
}

// screenshotDir is docs/ when UPDATE_SCREENSHOT=1, else a temporary directory:
// a normal test run never rewrites the committed screenshots.
func screenshotDir(t *testing.T) string {
	t.Helper()
	if os.Getenv("UPDATE_SCREENSHOT") != "1" {
		return t.TempDir()
	}
	dir := filepath.Join("..", "docs")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// savePNG checks that buf is a PNG of the expected width and writes it.
func savePNG(t *testing.T, path string, buf []byte, width int) {
	t.Helper()
	cfg, err := png.DecodeConfig(bytes.NewReader(buf))
	if err != nil {
		t.Fatalf("%s: not a PNG: %v", path, err)
	}
	if cfg.Width != width {
		t.Errorf("%s: %dx%d, want width %d", path, cfg.Width, cfg.Height, width)
	}
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs(path)
	t.Logf("screenshot %dx%d, %d KB: %s", cfg.Width, cfg.Height, len(buf)/1024, abs)
}
