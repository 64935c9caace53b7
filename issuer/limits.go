package issuer

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// clientAddr is the address the request came from: the peer's, or, when the
// peer is a trusted proxy, the right-most address of X-Forwarded-For that is
// not a trusted proxy (entries left of it were written by the client and
// prove nothing).
func (st *settings) clientAddr(r *http.Request) netip.Addr {
	peer := peerAddr(r.RemoteAddr)
	if !st.trusted(peer) {
		return peer
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			// A hop a trusted proxy would not write: the chain is not
			// trustworthy past this point, so the proxy itself is the client.
			return peer
		}
		a = a.Unmap().WithZone("")
		if !st.trusted(a) {
			return a
		}
	}
	return peer
}

func (st *settings) trusted(a netip.Addr) bool {
	for _, p := range st.proxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func peerAddr(remote string) netip.Addr {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	return a.Unmap().WithZone("")
}

// addressKey names an address's bucket: an IPv4 address alone, an IPv6
// address by its /64, which one subscriber usually holds whole.
func addressKey(a netip.Addr) string {
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}
