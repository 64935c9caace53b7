package config

import (
	"fmt"
	"net"
	"strings"
)

// Playground is the admin listener's web page for trying guestgate out:
// mint test tokens through the issuer routes and see the live policy's
// decision for a request. It holds no secret: the page signs in the browser.
type Playground struct {
	// Enabled serves the page at /playground/ and the decision endpoint
	// (POST /v1/decide) on the admin listener. Empty (false): neither is
	// served. On in the development setup.
	Enabled bool `yaml:"enabled"`
	// AdminHosts are the Host header values, besides the admin listener's
	// own address (and localhost on a loopback listener), that every admin
	// route answers to: a name a reverse proxy or a port forward uses.
	// A request for any other host is refused, so a page on another
	// origin cannot reach the admin listener by DNS rebinding. Each entry
	// is "name" (any port) or "name:port". Empty: none.
	AdminHosts []string `yaml:"admin_hosts"`
}

// validate adds every problem of the playground section.
func (p *Playground) validate(add func(key, format string, args ...any)) {
	for i, h := range p.AdminHosts {
		if why := checkHostEntry(h); why != "" {
			add(fmt.Sprintf("playground.admin_hosts[%d]", i), "%q %s", h, why)
		}
	}
}

// checkHostEntry accepts a host name or address, with an optional port, and
// nothing else: no scheme, path, user or wildcard.
func checkHostEntry(h string) string {
	if h == "" {
		return "is empty"
	}
	host := h
	if hp, port, err := net.SplitHostPort(h); err == nil {
		if port == "" || strings.Trim(port, "0123456789") != "" {
			return "has a port that is not a number"
		}
		host = hp
	} else if strings.Contains(h, ":") && net.ParseIP(h) == nil {
		return "is not a host or host:port"
	}
	if net.ParseIP(host) != nil {
		return ""
	}
	if len(host) > 253 {
		return "is longer than a host name can be"
	}
	for _, label := range strings.Split(host, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return "is not a host name (write the name, with an optional :port, and nothing else)"
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
				return "is not a host name (write the name, with an optional :port, and nothing else)"
			}
		}
	}
	return ""
}
