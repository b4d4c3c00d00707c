package bot

import (
	"strings"
	"testing"
	"time"
)

// linksIn are the sign-in links the bot sent to room.
func (r *botRig) linksIn(room string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, m := range r.sent {
		if m.room == room && strings.Contains(m.body, "/ui/login/") {
			n++
		}
	}
	return n
}

// An admin room that holds only the admin and the bot is still no direct
// chat: the admin's sign-in link goes to a direct chat the bot opens,
// and !mydata there is sent to a direct chat too.
func TestDashboardLinkTwoMemberAdminRoom(t *testing.T) {
	r := newRig(t, newFake())
	r.members = map[string]map[string]string{testAdminRoom: {testAdmin: "join", "@ferry:bot.test": "join"}}
	r.send(testAdmin, testAdminRoom, "!dashboard")
	r.waitFor(t, "I've sent you a sign-in link")
	if n := r.linksIn(testAdminRoom); n != 0 {
		t.Fatalf("%d sign-in links in the admin room", n)
	}
	if n := r.linksIn("!newdm1:bot.test"); n != 1 {
		t.Fatalf("%d sign-in links in the new direct chat", n)
	}
	r.send(testAdmin, testAdminRoom, "!mydata")
	r.waitFor(t, "I've invited you")
	if c := r.svc.called(); strings.Contains(c, "personal") {
		t.Errorf("!mydata in the admin room ran: %s", c)
	}
}

// A cached direct chat that someone else was invited to (or joined) is
// not used again: the bot opens a new one.
func TestDirectChatCheckedBeforeUse(t *testing.T) {
	r := newRig(t, newFake())
	r.send(testAdmin, testAdminRoom, "!dashboard")
	r.waitFor(t, "I've sent you a sign-in link")
	r.mu.Lock()
	r.members["!newdm1:bot.test"][testAdmin] = "join"
	r.members["!newdm1:bot.test"]["@eve:bot.test"] = "invite"
	r.mu.Unlock()
	r.send(testAdmin, testAdminRoom, "!dashboard")
	for deadline := time.Now().Add(5 * time.Second); r.linksIn("!newdm2:bot.test") == 0 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	if a, b := r.linksIn("!newdm1:bot.test"), r.linksIn("!newdm2:bot.test"); a != 1 || b != 1 {
		t.Fatalf("links: %d in the shared chat, %d in the new one", a, b)
	}
	// Still only the two of them: used again.
	r.send(testAdmin, testAdminRoom, "!dashboard")
	for deadline := time.Now().Add(5 * time.Second); r.linksIn("!newdm2:bot.test") < 2 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	if r.dms != 2 {
		t.Errorf("%d direct chats opened, want 2", r.dms)
	}
}

// When the link can't be sent, the bot says so instead of claiming it
// sent one.
func TestDashboardLinkSendFails(t *testing.T) {
	r := newRig(t, newFake())
	r.failSend = map[string]bool{"!newdm1:bot.test": true}
	r.send(testAdmin, testAdminRoom, "!dashboard")
	r.waitFor(t, "could not send to our direct chat")
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range r.sent {
		if strings.Contains(m.body, "I've sent you") {
			t.Errorf("the bot claimed it sent the link: %q", m.body)
		}
	}
}
