package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/chromedp"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/ferry-matrix/ferry/internal/testrig/testenv"
	"github.com/ferry-matrix/ferry/store"
)

// The web dashboard in a real headless Chromium (Debian's), against `bot
// run` on a real Dendrite: the sign-in link from !dashboard, clicked on
// another site, works once and then answers 410; a long export's
// progress bar advances without a reload; the links minted on click
// download an archive that verifies with the admin's key; verify, cancel
// and delete (which asks first) work; a second admin's history shows the
// first admin's actions; a user sees only their own personal exports and
// gets 403 elsewhere; a POST without the CSRF token is 403; an expired
// session goes back to the sign-in page. With $FERRY_SCREENSHOTS set, it
// saves PNGs of the exports list, an export's page and the history there.
func TestDashboardBrowser(t *testing.T) {
	chromium := testenv.Chromium(t)
	env := startBotEnv(t, onDendrite, "1h", "limits: {commands_per_minute: 6000}\n")
	env.inviteBot(t)
	b := newBrowser(t, chromium)
	ctx := context.Background()

	// The admin's link, clicked on another site (localhost is another
	// site than 127.0.0.1, where Ferry listens).
	link := env.dashboardLink(t, env.admin, env.adminRoom)
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprintf(w, `<!doctype html><title>chat</title><a id="go" href="%s">your sign-in link</a>`, r.URL.Query().Get("to"))
	}))
	t.Cleanup(other.Close)
	elsewhere := strings.Replace(other.URL, "127.0.0.1", "localhost", 1) + "/?to=" + link
	admin := b.tab(t, "admin")
	admin.nav(t, elsewhere, 200)
	if status := admin.clickNav(t, "#go"); status != 200 || !strings.Contains(admin.text(t, "main"), "Sign in to Ferry's dashboard as @admin:bot.test") {
		t.Fatalf("the link's page: %d %q", status, admin.text(t, "main"))
	}
	if status := admin.clickNav(t, "#signin"); status != 200 || !strings.HasSuffix(admin.location(t), "/ui/exports") {
		t.Fatalf("sign-in: %d at %s", status, admin.location(t))
	}
	admin.nav(t, elsewhere, 200)
	if status := admin.clickNav(t, "#go"); status != http.StatusGone || !strings.Contains(admin.text(t, "main"), "already used") {
		t.Fatalf("the used link: %d %q", status, admin.text(t, "main"))
	}
	if resp, err := http.Get(link); err != nil || resp.StatusCode != http.StatusGone {
		t.Fatalf("GET of the used link: %v %v", resp, err)
	}

	// A long export (its media stream held by FIFOs that a writer feeds
	// one at a time): its bar advances on the page without a reload.
	feed := env.slowMedia(t, 4, 6*time.Second, 2*time.Second)
	cmd, _ := env.admin.send(t, env.adminRoom, "!export full")
	exportID := regexp.MustCompile("Export `([0-9a-f]+)`").FindStringSubmatch(body(env.replyTo(t, env.admin, cmd)))[1]
	admin.nav(t, env.ferryURL+"/ui/exports/"+exportID, 200)
	admin.eval(t, `[(window.ferryMarker = "not reloaded")]`)
	var bars []float64
	var counts []string
	for deadline := time.Now().Add(120 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		v := admin.eval(t, `(() => { const el = document.querySelector('[data-job="`+exportID+`"]');
			return [String(el.querySelector('progress').value), el.querySelector('[data-field="status"]').textContent,
			        el.querySelector('[data-field="bytes"]').textContent + " " + el.querySelector('[data-field="counts"]').textContent] })()`)
		bar := 0.0
		fmt.Sscan(v[0], &bar)
		if len(bars) == 0 || bars[len(bars)-1] != bar {
			bars = append(bars, bar)
		}
		if len(counts) == 0 || counts[len(counts)-1] != v[2] {
			counts = append(counts, v[2])
		}
		if v[1] == "completed" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the export did not complete on the page: %v", v)
		}
	}
	feed()
	t.Logf("the progress bar showed %v; the counts %q", bars, counts)
	if admin.eval(t, `[String(window.ferryMarker)]`)[0] != "not reloaded" {
		t.Fatal("the page was reloaded")
	}
	if len(bars) < 2 || bars[len(bars)-1] != 100 || bars[0] >= 100 || len(counts) < 2 {
		t.Fatalf("the bar did not advance on the page: %v, counts %q", bars, counts)
	}

	// Links minted on click, with their expiry; the archive verifies.
	admin.nav(t, env.ferryURL+"/ui/exports/"+exportID, 200)
	if status := admin.clickNav(t, "#links"); status != 200 || !strings.Contains(admin.text(t, ".links"), "These links expire at") {
		t.Fatalf("links: %d %q", status, admin.text(t, "main"))
	}
	archiveURL, keyURL := admin.attr(t, "#archive-link", "href"), admin.attr(t, "#key-link", "href")
	dir := t.TempDir()
	archiveFile, keyFile := filepath.Join(dir, "a.ferry"), filepath.Join(dir, "a.ferry.key.age")
	download(t, archiveURL, archiveFile, http.StatusOK)
	download(t, keyURL, keyFile, http.StatusOK)
	if err := run(ctx, []string{"archive", "verify", "--identity", env.identityFile, "--key-file", keyFile, archiveFile}); err != nil {
		t.Fatalf("the archive downloaded through the dashboard does not verify: %v", err)
	}
	admin.screenshot(t, "dashboard-export.png")
	// Verify: a verify job, which Ferry's identity checks through.
	admin.clickNav(t, "#verify")
	if !strings.Contains(admin.location(t), "/ui/exports/ver-") {
		t.Fatalf("verify went to %s", admin.location(t))
	}
	admin.waitText(t, `.live [data-field="status"]`, "completed", 60*time.Second)

	// A POST without the CSRF token is refused (403), from the page itself.
	if got := admin.evalInt(t, `fetch("/ui/exports/`+exportID+`/verify", {method: "POST"}).then(r => r.status)`); got != http.StatusForbidden {
		t.Errorf("POST without the CSRF token: %d", got)
	}

	// Delete asks first, on a page of its own; then the archive is gone.
	admin.nav(t, env.ferryURL+"/ui/exports/"+exportID, 200)
	admin.clickNav(t, "#delete")
	if !strings.HasSuffix(admin.location(t), "/ui/exports/"+exportID+"/delete") || !strings.Contains(admin.text(t, "main"), "cannot be undone") {
		t.Fatalf("delete did not ask first: %s %q", admin.location(t), admin.text(t, "main"))
	}
	download(t, archiveURL, filepath.Join(dir, "again"), http.StatusOK) // not deleted yet
	admin.clickNav(t, "#confirm-delete")
	if got := admin.text(t, `.live [data-field="status"]`); got != "deleted" {
		t.Fatalf("after delete: %q", got)
	}
	if resp, err := http.Get(archiveURL); err != nil || resp.StatusCode == http.StatusOK {
		t.Fatalf("the deleted archive still downloads: %v", err)
	}

	// Cancel: an export held in its media stream for good.
	release := env.slowMedia(t, 1, time.Hour, 0)
	cmd, _ = env.admin.send(t, env.adminRoom, "!export full")
	held := regexp.MustCompile("Export `([0-9a-f]+)`").FindStringSubmatch(body(env.replyTo(t, env.admin, cmd)))[1]
	admin.nav(t, env.ferryURL+"/ui/exports/"+held, 200)
	admin.waitText(t, `.live [data-field="status"]`, "processing", 60*time.Second)
	admin.nav(t, env.ferryURL+"/ui/exports", 200)
	admin.waitText(t, `[data-job="`+held+`"] [data-field="status"]`, "processing", 10*time.Second)
	admin.screenshot(t, "dashboard-exports.png")
	admin.nav(t, env.ferryURL+"/ui/exports/"+held, 200)
	admin.clickNav(t, "#cancel")
	admin.waitText(t, `.live [data-field="status"]`, "cancelled", 30*time.Second) // the worker stops a moment later
	release()

	// A second admin sees the first admin's actions in the history.
	admin2 := newWatcher(t, env.hs, "admin2", true)
	if _, err := env.admin.cli.InviteUser(ctx, env.adminRoom, &mautrix.ReqInviteUser{UserID: admin2.cli.UserID}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin2.cli.JoinRoomByID(ctx, env.adminRoom); err != nil {
		t.Fatal(err)
	}
	second := b.tab(t, "second admin")
	second.signIn(t, env.dashboardLink(t, admin2, env.adminRoom))
	second.nav(t, env.ferryURL+"/ui/history?actor="+"%40admin%3Abot.test", 200)
	history := second.text(t, "main")
	for _, want := range []string{"link.create", ".delete", "export.cancel", "dashboard.login", "export.verify"} {
		if !strings.Contains(history, want) {
			t.Errorf("the second admin's history lacks %s:\n%s", want, history)
		}
	}
	second.nav(t, env.ferryURL+"/ui/history", 200)
	second.screenshot(t, "dashboard-history.png")

	// A user sees only their own personal exports, and 403 elsewhere.
	bobW := newWatcher(t, env.hs, "bob", false)
	dm, err := bobW.cli.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "trusted_private_chat", IsDirect: true, Invite: []id.UserID{env.botID}})
	if err != nil {
		t.Fatal(err)
	}
	env.waitBotJoined(t, bobW, dm.RoomID, "bob's direct chat")
	bobW.send(t, dm.RoomID, "!mydata")
	user := b.tab(t, "bob")
	user.signIn(t, env.dashboardLink(t, bobW, dm.RoomID))
	if !strings.HasSuffix(user.location(t), "/ui/me") {
		t.Fatalf("bob signed in to %s", user.location(t))
	}
	user.waitText(t, "main", "mydata-bob-", 30*time.Second)
	if page := user.text(t, "main"); strings.Contains(page, exportID) || strings.Contains(page, "full-") {
		t.Errorf("bob sees an admin's export:\n%s", page)
	}
	for _, path := range []string{"/ui/exports", "/ui/exports/" + held, "/ui/history", "/ui/schedules"} {
		if got := user.evalInt(t, `fetch("`+path+`").then(r => r.status)`); got != http.StatusForbidden {
			t.Errorf("bob GET %s: %d", path, got)
		}
	}
	user.nav(t, env.ferryURL+"/ui/exports", http.StatusForbidden)

	// An expired session goes back to the sign-in page.
	st, err := store.Open(ctx, "sqlite://"+filepath.Join(filepath.Dir(env.cfgPath), "ferry.db"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.DB.ExecContext(ctx, `UPDATE ferry_dashboard_sessions SET expires_at = 1 WHERE user_id = '@admin2:bot.test'`); err != nil {
		t.Fatal(err)
	}
	st.Close()
	second.nav(t, env.ferryURL+"/ui/exports", 200)
	if !strings.HasSuffix(second.location(t), "/ui/login?expired=1") || !strings.Contains(second.text(t, "main"), "Your session has ended") {
		t.Fatalf("an expired session: %s %q", second.location(t), second.text(t, "main"))
	}
	env.noSecretInRooms(t)
}

var loginLinkRe = regexp.MustCompile(`https?://\S+/ui/login/[A-Za-z0-9_-]+`)

// dashboardLink sends !dashboard as w in room and returns the sign-in
// link the bot sends: in its reply in a direct chat, or in the direct
// chat it opens (w joins it).
func (env *botEnv) dashboardLink(t *testing.T, w *watcher, room id.RoomID) string {
	t.Helper()
	from := w.count()
	cmd, _ := w.send(t, room, "!dashboard")
	if link := loginLinkRe.FindString(body(env.replyTo(t, w, cmd))); link != "" {
		return link
	}
	joined := map[id.RoomID]bool{}
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		w.mu.Lock()
		invites := append([]id.RoomID(nil), w.invite...)
		w.mu.Unlock()
		for _, r := range invites {
			if !joined[r] {
				joined[r] = true
				w.cli.JoinRoomByID(context.Background(), r)
			}
		}
		for _, s := range w.all()[from:] {
			if s.evt.Sender == env.botID && s.evt.Type == event.EventMessage {
				if link := loginLinkRe.FindString(body(s)); link != "" {
					return link
				}
			}
		}
	}
	t.Fatal("no sign-in link in a direct chat")
	return ""
}

// slowMedia uploads n media files and puts FIFOs in their place in the
// homeserver's media store: an export's media stream waits in opening
// each until a writer opens it, the first after lead and each next one
// step later (then every later reader goes through at once). It returns a function that lets every waiting reader
// through and puts the files back (also run when the test ends).
func (env *botEnv) slowMedia(t *testing.T, n int, lead, step time.Duration) func() {
	t.Helper()
	type fifo struct {
		path string
		data []byte
	}
	var fifos []fifo
	for i := range n {
		data := []byte(fmt.Sprintf("media file %d of a slow export, %s", i, time.Now()))
		if _, err := env.admin.cli.UploadBytes(context.Background(), data, "text/plain"); err != nil {
			t.Fatal(err)
		}
		path := storedMedia(t, env.hs, data)
		os.Remove(path)
		if err := syscall.Mkfifo(path, 0o600); err != nil {
			t.Fatal(err)
		}
		fifos = append(fifos, fifo{path, data})
	}
	done := make(chan struct{})
	for i, f := range fifos {
		go func() {
			select {
			case <-time.After(lead + time.Duration(i)*step):
			case <-done:
				return
			}
			// Let every reader through from now on (a size estimate may
			// open the file before the media stream does).
			for {
				if w, err := os.OpenFile(f.path, os.O_WRONLY, 0); err == nil { // until a reader opens it
					w.Close()
				}
				select {
				case <-done:
					return
				default:
				}
			}
		}()
	}
	var once sync.Once
	restore := func() {
		once.Do(func() {
			close(done)
			for _, f := range fifos {
				// Let a reader waiting in open through (it reads nothing),
				// and a writer waiting for a reader, then put the file back.
				if w, err := os.OpenFile(f.path, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
					w.Close()
				}
				if r, err := os.OpenFile(f.path, os.O_RDONLY|syscall.O_NONBLOCK, 0); err == nil {
					r.Close()
				}
				os.Remove(f.path)
				os.WriteFile(f.path, f.data, 0o600)
			}
		})
	}
	t.Cleanup(restore)
	return restore
}

// headless is a Chromium for the test.
type headless struct{ root context.Context }

// newBrowser starts Chromium (as root it needs --no-sandbox; the
// container's /dev/shm is small) and logs its version.
func newBrowser(t *testing.T, path string) *headless {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox,
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.WindowSize(1400, 1000))
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	root, cancel := chromedp.NewContext(alloc)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(root); err != nil {
		t.Fatalf("start Chromium %s: %v", path, err)
	}
	v, err := cdp.Call(root, chromedp.FromContext(root).Browser, browser.GetVersion, cdp.Empty{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("browser: %s (protocol %s, %s)", v.Product, v.ProtocolVersion, path)
	return &headless{root: root}
}

// tab is one person's browser: a tab in a browser context of its own
// (cookies apart).
type tab struct {
	ctx  context.Context
	name string
}

func (b *headless) tab(t *testing.T, name string) *tab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(b.root, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatal(err)
	}
	return &tab{ctx: ctx, name: name}
}

// within runs one step with a timeout.
func within[T any](t *testing.T, tb *tab, what string, a chromedp.Action[T]) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 60*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("%s: %s: %v", tb.name, what, err)
	}
	return v
}

// nav opens url and checks the answer's status.
func (tb *tab) nav(t *testing.T, url string, want int) {
	t.Helper()
	resp := within(t, tb, "open "+url, chromedp.NavigateResponse(url))
	if int(resp.Status) != want {
		t.Fatalf("%s: GET %s: %d, want %d", tb.name, url, resp.Status, want)
	}
}

// clickNav clicks what navigates, and returns the new page's status.
func (tb *tab) clickNav(t *testing.T, sel string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 60*time.Second)
	defer cancel()
	resp, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(sel)))
	if err != nil {
		t.Fatalf("%s: click %s: %v", tb.name, sel, err)
	}
	return int(resp.Status)
}

func (tb *tab) text(t *testing.T, sel string) string {
	t.Helper()
	return within(t, tb, "text of "+sel, chromedp.Text(chromedp.CSS(sel)))
}

func (tb *tab) attr(t *testing.T, sel, name string) string {
	t.Helper()
	return within(t, tb, name+" of "+sel, chromedp.Evaluate[string](`document.querySelector(`+fmt.Sprintf("%q", sel)+`).getAttribute("`+name+`")`))
}

func (tb *tab) location(t *testing.T) string {
	t.Helper()
	return within(t, tb, "location", chromedp.Location())
}

func (tb *tab) eval(t *testing.T, js string) []string {
	t.Helper()
	v := within(t, tb, "evaluate", chromedp.Evaluate[*[]string](js))
	if v == nil {
		return nil
	}
	return *v
}

func (tb *tab) evalInt(t *testing.T, js string) int {
	t.Helper()
	return within(t, tb, "evaluate", chromedp.Evaluate[int](js, chromedp.EvalAwaitPromise))
}

// waitText waits until sel's text contains want (the page updates it).
func (tb *tab) waitText(t *testing.T, sel, want string, timeout time.Duration) {
	t.Helper()
	var got string
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if got = tb.text(t, sel); strings.Contains(got, want) {
			return
		}
	}
	t.Fatalf("%s: %s never showed %q (last %q)", tb.name, sel, want, got)
}

// signIn follows a sign-in link and presses the button.
func (tb *tab) signIn(t *testing.T, link string) {
	t.Helper()
	tb.nav(t, link, 200)
	if status := tb.clickNav(t, "#signin"); status != 200 {
		t.Fatalf("%s: sign-in: %d", tb.name, status)
	}
}

// screenshot saves the page as a PNG into $FERRY_SCREENSHOTS, if set.
func (tb *tab) screenshot(t *testing.T, name string) {
	t.Helper()
	dir := os.Getenv("FERRY_SCREENSHOTS")
	if dir == "" {
		return
	}
	png := within(t, tb, "screenshot", chromedp.FullScreenshot(100))
	if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
		t.Fatal(err)
	}
}
