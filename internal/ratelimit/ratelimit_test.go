package ratelimit

import (
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

func TestClientAddr(t *testing.T) {
	proxies, err := ParsePrefixes([]string{"127.0.0.1", "10.0.0.0/8", "::1"})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name     string
		trusted  bool
		peer     string
		xff      []string
		want     string
		wantNoPx string // without trusted proxies
	}{
		{"direct", true, "203.0.113.9:4000", nil, "203.0.113.9", "203.0.113.9"},
		{"untrusted peer's header is ignored", true, "203.0.113.9:4000", []string{"1.2.3.4"}, "203.0.113.9", "203.0.113.9"},
		{"through the proxy", true, "127.0.0.1:5000", []string{"198.51.100.7"}, "198.51.100.7", "127.0.0.1"},
		{"client-made entries left of the real one", true, "127.0.0.1:5000", []string{"1.1.1.1, 2.2.2.2", "198.51.100.7"}, "198.51.100.7", "127.0.0.1"},
		{"two proxies", true, "127.0.0.1:5000", []string{"198.51.100.7, 10.1.2.3"}, "198.51.100.7", "127.0.0.1"},
		{"garbage", true, "127.0.0.1:5000", []string{"nonsense, 10.1.2.3"}, "10.1.2.3", "127.0.0.1"},
		{"all trusted", true, "127.0.0.1:5000", []string{"10.0.0.1"}, "10.0.0.1", "127.0.0.1"},
		{"ipv6 proxy", true, "[::1]:5000", []string{"2001:db8::5"}, "2001:db8::5", "::1"},
	} {
		r := httptest.NewRequest("GET", "/download/x", nil)
		r.RemoteAddr = c.peer
		for _, v := range c.xff {
			r.Header.Add("X-Forwarded-For", v)
		}
		if got := (Clients{Trusted: proxies}).Addr(r); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
		if got := (Clients{}).Addr(r); got != c.wantNoPx {
			t.Errorf("%s without trusted proxies: %q, want %q", c.name, got, c.wantNoPx)
		}
	}
	if _, err := ParsePrefixes([]string{"localhost"}); err == nil {
		t.Error("a host name accepted as a proxy address")
	}
	if Key("2001:db8:1:2:3:4:5:6") != Key("2001:db8:1:2:ffff::1") || Key("192.0.2.1") == Key("192.0.2.2") {
		t.Error("IPv6 clients are keyed by /64, IPv4 by address")
	}
}

func TestTake(t *testing.T) {
	l := New(2, 3)
	for i := 0; i < 3; i++ {
		if ok, _ := l.Take("a"); !ok {
			t.Fatal("burst refused")
		}
	}
	ok, wait := l.Take("a")
	if ok || wait <= 0 || wait > 500*time.Millisecond {
		t.Fatalf("after the burst: %v %v", ok, wait)
	}
	if !l.Allow("b") {
		t.Fatal("another key limited")
	}
}

func TestTallyReportsOncePerWindow(t *testing.T) {
	var mu sync.Mutex
	got := map[string]int{}
	reports := 0
	tl := &Tally{Window: time.Hour, Report: func(key string, n int, _, _ time.Time) {
		mu.Lock()
		got[key] += n
		reports++
		mu.Unlock()
	}}
	for i := 0; i < 2000; i++ {
		tl.Add("a")
	}
	tl.Add("b")
	tl.Flush()
	if reports != 2 || got["a"] != 2000 || got["b"] != 1 {
		t.Fatalf("%d reports: %v", reports, got)
	}
	tl.Window = 20 * time.Millisecond
	tl.Add("c")
	time.Sleep(200 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if got["c"] != 1 {
		t.Fatalf("the window did not close by itself: %v", got)
	}
}
