package ratelimit

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// Clients finds the client address of a request. The peer address is the
// client unless it is a trusted proxy: then the X-Forwarded-For entries are
// read from the right (the nearest hop first), past every trusted proxy, and
// the first address that is not one is the client. Without trusted proxies
// X-Forwarded-For is ignored, so a client can't choose its own address.
type Clients struct {
	Trusted []netip.Prefix
}

// ParsePrefixes reads proxy addresses: CIDR prefixes ("10.0.0.0/8") or
// single addresses ("127.0.0.1", "::1").
func ParsePrefixes(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		s = strings.TrimSpace(s)
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("%q is neither an IP address nor a CIDR prefix (10.0.0.0/8, ::1)", s)
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}

func (c Clients) trusted(a netip.Addr) bool {
	for _, p := range c.Trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Addr is the client address of r (as text; r.RemoteAddr itself when it is
// not an IP address, as in some tests).
func (c Clients) Addr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	peer, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	peer = peer.Unmap()
	if !c.trusted(peer) {
		return peer.String()
	}
	var hops []string
	for _, v := range r.Header.Values("X-Forwarded-For") {
		hops = append(hops, strings.Split(v, ",")...)
	}
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			break // garbage left of a trusted hop: the last good hop is the client
		}
		peer = a.Unmap()
		if !c.trusted(peer) {
			break
		}
	}
	return peer.String()
}

// Key is the rate-limit key of a client address: the address itself for
// IPv4, its /64 network for IPv6 (one host usually holds a whole /64).
func Key(addr string) string {
	a, err := netip.ParseAddr(addr)
	if err != nil || !a.Is6() {
		return addr
	}
	p, _ := a.Prefix(64)
	return p.String()
}
