package issuer

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/time/rate"

	"github.com/guestgate/guestgate/config"
)

// limiter is a token bucket per key, for at most a bounded number of keys:
// the least recently seen key is forgotten first, so a flood of new
// addresses costs bounded memory.
type limiter struct {
	rate  config.Rate
	cache *lru.Cache[string, *rate.Limiter]
}

func newLimiter(r config.Rate, maxKeys int) (*limiter, error) {
	c, err := lru.New[string, *rate.Limiter](maxKeys)
	if err != nil {
		return nil, err
	}
	return &limiter{rate: r, cache: c}, nil
}

// reuseLimiter keeps the previous generation's limiter when its bounds did
// not change, so a config reload does not refill every bucket.
func reuseLimiter(prev *state, get func(*state) *limiter, r config.Rate, maxKeys int) (*limiter, error) {
	if prev != nil {
		if l := get(prev); l != nil && l.rate == r && prev.cfg.RateLimits.MaxTracked == maxKeys {
			return l, nil
		}
	}
	return newLimiter(r, maxKeys)
}

// take spends one token of key's bucket at now. When the bucket is empty it
// spends nothing and returns how long until a token is there.
func (l *limiter) take(key string, now time.Time) (time.Duration, bool) {
	lim, ok := l.cache.Get(key)
	if !ok {
		fresh := rate.NewLimiter(rate.Limit(l.rate.PerSecond), l.rate.Burst)
		if prev, found, _ := l.cache.PeekOrAdd(key, fresh); found {
			lim = prev
		} else {
			lim = fresh
		}
	}
	res := lim.ReserveN(now, 1)
	if !res.OK() {
		return time.Hour, false
	}
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return d, false
	}
	return 0, true
}

// clientAddr is the address the request came from: the peer's, or, when the
// peer is a trusted proxy, the right-most address of X-Forwarded-For that is
// not a trusted proxy (entries left of it were written by the client and
// prove nothing).
func (st *state) clientAddr(r *http.Request) netip.Addr {
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

func (st *state) trusted(a netip.Addr) bool {
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
