package bot

// The command handlers (package commands) driven through the bot: a
// message in, authorisation, the verb called on a fake service, the
// replies the bot sends to a stub homeserver.

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ferry-matrix/ferry/app"
	"github.com/ferry-matrix/ferry/commands"
	"github.com/ferry-matrix/ferry/exporter"
	"github.com/ferry-matrix/ferry/source"
)

// `!export partial --since` on a Dendrite is refused when it is sent,
// with the message the API and the CLI give, and nothing is queued (it
// used to be accepted, then fail at run time and be retried).
func TestExportRefusesUnsupportedSelection(t *testing.T) {
	r := newRig(t, newFake())
	r.send(testAdmin, testAdminRoom, "!export partial --rooms !a:bot.test --since 2026-01-01")
	want := exporter.Selection{Type: exporter.TypePartial, Rooms: []string{"!a:bot.test"}, Since: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}.Check(r.svc.caps)
	if !errors.Is(want, source.ErrUnsupported) {
		t.Fatalf("Dendrite takes a time range? %v", want)
	}
	if got := r.waitFor(t, "cannot export"); got != "✗ "+want.Error() {
		t.Errorf("reply %q, want %q", got, "✗ "+want.Error())
	}
	if len(r.svc.submits) != 0 {
		t.Errorf("submitted %+v", r.svc.submits)
	}
	if a := r.svc.audit; len(a) != 1 || a[0].Outcome != "failed" || a[0].Action != "command !export partial" {
		t.Errorf("audit %+v", a)
	}
}

// `!export full`: the verb gets the admin's selection, key and identity,
// the job's ID comes from the command's event (a redelivery finds the same
// job), and the bot follows the job to its outcome with links.
func TestExportFullSubmitsAndFollows(t *testing.T) {
	r := newRig(t, newFake())
	cmd := r.send(testAdmin, testAdminRoom, "!export full --media none")
	r.waitFor(t, "queued, waiting for a worker")
	if len(r.svc.submits) != 1 {
		t.Fatalf("submits %+v", r.svc.submits)
	}
	s := r.svc.submits[0]
	if s.ID != commands.JobID(string(cmd)) || s.Selection.Type != exporter.TypeFull || s.Selection.Media != source.MediaNone ||
		len(s.Recipients) != 1 || s.Recipients[0] != testAgeKey || s.By != (app.Actor{Name: testAdmin, Via: "room " + testAdminRoom}) {
		t.Errorf("submitted %+v", s)
	}
	r.svc.mu.Lock()
	r.svc.jobs[s.ID].Status, r.svc.jobs[s.ID].Name, r.svc.jobs[s.ID].Size = app.StatusCompleted, "full-1", 2048
	r.svc.mu.Unlock()
	done := r.waitFor(t, "is ready")
	if !strings.Contains(done, "https://ferry.test/download/a") || !strings.Contains(done, "full-1.ferry") {
		t.Errorf("outcome %q", done)
	}
}

// Commands are authorised before any verb runs.
func TestCommandsAreAuthorised(t *testing.T) {
	r := newRig(t, newFake())
	r.send(testUser, testAdminRoom, "!export full")
	r.waitFor(t, "Only Ferry's admins")
	r.send(testAdmin, "!elsewhere:bot.test", "!export full")
	r.waitFor(t, "works only in an admin room")
	r.send("@mallory:evil.test", testAdminRoom, "!help")
	r.waitFor(t, "users of bot.test only")
	if c := r.svc.called(); c != "" {
		t.Errorf("verbs called: %s", c)
	}
}

// Cancel, delete (after !confirm) and verify call their verbs with the
// admin as the actor; a damaged archive is reported, not an error.
func TestExportVerbs(t *testing.T) {
	f := newFake()
	f.add(&app.View{ID: "done1", Kind: app.KindExport, Status: app.StatusCompleted, Name: "full-x", Size: 10})
	f.add(&app.View{ID: "run1", Kind: app.KindExport, Status: app.StatusProcessing})
	f.add(&app.View{ID: "imp1", Kind: app.KindImport, Status: app.StatusCompleted})
	r := newRig(t, f)
	r.send(testAdmin, testAdminRoom, "!export cancel run1")
	r.waitFor(t, "Export `run1` is cancelled")
	r.send(testAdmin, testAdminRoom, "!export cancel done1")
	r.waitFor(t, "has already ended")
	r.send(testAdmin, testAdminRoom, "!export status imp1")
	r.waitFor(t, `there is no export "imp1"`)
	r.send(testAdmin, testAdminRoom, "!export verify done1")
	r.waitFor(t, "is intact: 1.2 KiB")
	f.damaged = true
	r.send(testAdmin, testAdminRoom, "!export verify done1")
	r.waitFor(t, "❌ archives/done1.ferry is damaged")
	r.send(testAdmin, testAdminRoom, "!export delete done1")
	ask := r.waitFor(t, "!confirm ")
	code := strings.Fields(ask[strings.Index(ask, "!confirm ")+len("!confirm "):])[0]
	r.send(testAdmin, testAdminRoom, "!confirm "+strings.Trim(code, "`"))
	r.waitFor(t, "Deleted `full-x.ferry`")
	if c := f.called(); c != "cancel run1 by "+testAdmin+",check done1,check done1,delete done1 by "+testAdmin {
		t.Errorf("verbs called: %s", c)
	}
}

// !mydata in a direct chat: the personal export verb, followed with the
// one-time reveal link; a redelivered command is not answered twice.
func TestMydata(t *testing.T) {
	r := newRig(t, newFake())
	r.send(testUser, "!dm:bot.test", "!mydata")
	r.waitFor(t, "(your data): queued")
	if c := r.svc.called(); c != "personal "+testUser {
		t.Errorf("verbs called: %s", c)
	}
}

// !dashboard: an admin in an admin room gets an admin's sign-in link in
// a direct chat, never in the room; a user in a direct chat gets a link
// to their own page there.
func TestDashboardLink(t *testing.T) {
	r := newRig(t, newFake())
	r.send(testAdmin, testAdminRoom, "!dashboard")
	r.waitFor(t, "I've sent you a sign-in link")
	r.waitFor(t, "https://ferry.test/ui/login/TOKEN-admin")
	r.send(testUser, "!dm:bot.test", "!dashboard")
	r.waitFor(t, "(your own exports): https://ferry.test/ui/login/TOKEN-user")
	r.mu.Lock()
	for _, m := range r.sent {
		if strings.Contains(m.body, "/ui/login/") && m.room == testAdminRoom {
			t.Errorf("a sign-in link in the admin room: %q", m.body)
		}
	}
	r.mu.Unlock()
	if c := r.svc.called(); c != "login "+testAdmin+" admin by "+testAdmin+",login "+testUser+" user by "+testUser {
		t.Errorf("verbs called: %s", c)
	}
}

// !import of an encrypted archive answers with a one-time form for the
// key (never in chat); a readable one with the preview.
func TestImportPreview(t *testing.T) {
	f := newFake()
	f.add(&app.View{ID: "done1", Kind: app.KindExport, Status: app.StatusCompleted, Name: "full-x"})
	f.preview = func(r app.PreviewRequest) (*app.Preview, error) {
		return &app.Preview{Label: "full-x.ferry"}, app.ErrNeedKey
	}
	r := newRig(t, f)
	r.send(testAdmin, testAdminRoom, "!import done1")
	got := r.waitFor(t, "is encrypted")
	if !strings.Contains(got, UnlockPath) || !strings.Contains(got, "--dry-run full-x.ferry") {
		t.Errorf("reply %q", got)
	}
	r.send(testAdmin, testAdminRoom, "!import nope")
	r.waitFor(t, `there is no export "nope"`)
	if c := f.called(); c != "preview done1" {
		t.Errorf("verbs called: %s", c)
	}
}
