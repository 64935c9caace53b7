package main

import (
	"fmt"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"github.com/guestgate/guestgate/playground"
)

// DecidePath is the admin decision endpoint (ext_authz's DecideHandler).
const DecidePath = "/v1/decide"

// mountPlayground puts the playground page and the decision endpoint on the
// admin mux when the config turns them on.
func (s *sidecar) mountPlayground(mux *http.ServeMux) {
	if !s.cfg.Load().Playground.Enabled {
		return
	}
	mux.Handle(playground.Prefix, playground.Handler(playground.Options{
		Catalog: s.playgroundCatalog,
		BaseURL: s.publicBaseURL,
	}))
	mux.Handle("POST "+DecidePath, s.checker.DecideHandler())
}

// publicBaseURL is where the playground's copyable examples call the issuer
// routes: the public listener, by the name the page was opened with when the
// listener listens on every address.
func (s *sidecar) publicBaseURL(r *http.Request) string {
	tcp, ok := s.httpLis.Addr().(*net.TCPAddr)
	if !ok {
		return ""
	}
	host := tcp.IP.String()
	if tcp.IP.IsUnspecified() {
		h, _, err := net.SplitHostPort(r.Host)
		if err != nil {
			h = r.Host
		}
		host = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	}
	return "http://" + net.JoinHostPort(host, strconv.Itoa(tcp.Port))
}

// playgroundCatalog is what the page offers: no secret, read from the live
// config and policy data on every request.
func (s *sidecar) playgroundCatalog() playground.Catalog {
	cfg := s.cfg.Load()
	c := playground.Catalog{PolicyRevision: s.engine.Revision(), MintingEnabled: cfg.Issuer.Enabled}
	for _, p := range cfg.Issuer.Providers {
		c.Providers = append(c.Providers, playground.Provider{ID: p.ID, Account: p.Account, Description: p.Description,
			Duration: p.Duration.D().String(), Role: p.Role, Scope: p.Scope})
	}
	for _, ti := range cfg.Tokens.Issuers {
		if ti.Kind == "guest" {
			c.GuestIssuers = append(c.GuestIssuers, ti.Issuer)
		}
	}
	c.Widgets = registryNames(s.engine, "widgets", "anonymous_sessions")
	c.PublicChannels = registryNames(s.engine, "channels", "public")
	return c
}

// registryNames lists the entries of data.registry.<table> whose flag is
// true, sorted.
func registryNames(e interface{ Data(...string) (any, bool) }, table, flag string) []string {
	v, ok := e.Data("registry", table)
	if !ok {
		return nil
	}
	m, _ := v.(map[string]any)
	var out []string
	for name, entry := range m {
		if fields, ok := entry.(map[string]any); ok && fields[flag] == true {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// adminGuard protects every admin route. A request must name this listener
// in Host (its own address, localhost on a loopback listener, or a
// configured playground.admin_hosts entry), so a page on another origin
// cannot reach it by DNS rebinding; and a state-changing request from a
// browser must come from the same origin (Sec-Fetch-Site, else Origin
// against Host), so no other site can post to it.
func (s *sidecar) adminGuard(next http.Handler) http.Handler {
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "cross-origin request refused: the admin listener answers state-changing requests from its own origin only", http.StatusForbidden)
	}))
	protected := cop.Handler(next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !adminHostAllowed(r.Host, s.adminLis.Addr(), s.cfg.Load().Playground.AdminHosts) {
			http.Error(w, fmt.Sprintf("host %q is not this admin listener's (add it to playground.admin_hosts)", r.Host), http.StatusMisdirectedRequest)
			return
		}
		protected.ServeHTTP(w, r)
	})
}

// adminHostAllowed says whether a Host header names the admin listener at
// addr. DNS rebinding always arrives with the attacker's name in Host, so
// an address literal is safe where the listener listens on it, and a name
// only where configured (or localhost, which no one else can point here).
func adminHostAllowed(host string, addr net.Addr, extra []string) bool {
	host = strings.ToLower(host)
	h, port, err := net.SplitHostPort(host)
	if err != nil {
		h, port = host, ""
	}
	h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	for _, e := range extra {
		e = strings.ToLower(e)
		if e == host {
			return true // "name:port", or "name" sent without a port
		}
		if _, _, err := net.SplitHostPort(e); err != nil && strings.TrimSuffix(strings.TrimPrefix(e, "["), "]") == h {
			return true // "name": any port
		}
	}
	tcp, ok := addr.(*net.TCPAddr)
	if !ok || port != fmt.Sprint(tcp.Port) {
		return false
	}
	ip := net.ParseIP(h)
	switch {
	case h == "localhost":
		return tcp.IP.IsLoopback()
	case ip == nil:
		return false
	case tcp.IP.IsUnspecified():
		return true // listening on every address: any address literal names it
	default:
		return ip.Equal(tcp.IP)
	}
}
