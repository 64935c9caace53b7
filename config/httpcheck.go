package config

import (
	"fmt"
	"net/netip"
	"strings"
)

// HTTPCheck is the HTTP form of the check, served on the public listener
// under its own path prefix for proxies that do not speak ext_authz gRPC.
// The form is chosen here, never guessed from a request's headers.
type HTTPCheck struct {
	// Form is the proxy's protocol:
	//   envoy    Envoy's HTTP ext_authz service: the original method, the
	//            original path after PathPrefix, the original headers, and
	//            the body when Envoy is told to send it;
	//   nginx    nginx auth_request: X-Original-Method and X-Original-URI,
	//            no body; answers only 2xx, 401 and 403;
	//   traefik  Traefik forwardAuth: X-Forwarded-Method, X-Forwarded-Uri
	//            and X-Forwarded-Host, no body.
	// Empty: the HTTP check is off (its prefix is not served).
	Form string `yaml:"form"`
	// PathPrefix is where the check is served on the public listener; it
	// starts and ends with "/". Empty: DefaultHTTPCheckPrefix.
	PathPrefix string `yaml:"path_prefix"`
	// TrustedProxies are the addresses (CIDRs or single IPs) the HTTP check
	// answers: the original request's method, path and host are taken from
	// the proxy's headers, so a request from anywhere else is denied.
	// Empty: loopback only (127.0.0.0/8 and ::1), a proxy on the same host.
	TrustedProxies []string `yaml:"trusted_proxies"`
}

// HTTP check forms.
const (
	HTTPCheckEnvoy   = "envoy"
	HTTPCheckNginx   = "nginx"
	HTTPCheckTraefik = "traefik"
)

// DefaultHTTPCheckPrefix is where the HTTP check is served by default.
const DefaultHTTPCheckPrefix = "/ext_authz/"

// defaultTrustedProxies are loopback: a proxy on the same host.
var defaultTrustedProxies = []string{"127.0.0.0/8", "::1/128"}

// Enabled says whether the HTTP check is served.
func (h HTTPCheck) Enabled() bool { return h.Form != "" }

// Proxies parses TrustedProxies (validated at load, so an error here means
// the struct was built in code with a bad entry).
func (h HTTPCheck) Proxies() ([]netip.Prefix, error) {
	list := h.TrustedProxies
	if len(list) == 0 {
		list = defaultTrustedProxies
	}
	out := make([]netip.Prefix, 0, len(list))
	for i, s := range list {
		p, err := ParseProxy(s)
		if err != nil {
			return nil, fieldErr(fmt.Sprintf("http_check.trusted_proxies[%d]", i), "%v", err)
		}
		out = append(out, p)
	}
	return out, nil
}

func (h *HTTPCheck) applyDefaults() {
	if h.PathPrefix == "" {
		h.PathPrefix = DefaultHTTPCheckPrefix
	}
}

// reservedPrefixes are public routes the HTTP check must not shadow.
var reservedPrefixes = []string{"/v1/", "/.well-known/"}

// validate adds every problem of the http_check section.
func (h *HTTPCheck) validate(add func(key, format string, args ...any)) {
	switch h.Form {
	case "", HTTPCheckEnvoy, HTTPCheckNginx, HTTPCheckTraefik:
	default:
		add("http_check.form", "%q is not one of envoy, nginx, traefik (or empty: off)", h.Form)
	}
	p := h.PathPrefix
	switch {
	case len(p) < 3 || !strings.HasPrefix(p, "/") || !strings.HasSuffix(p, "/"):
		add("http_check.path_prefix", "%q must start and end with / and name a path, such as %q", p, DefaultHTTPCheckPrefix)
	case strings.Contains(p, "//") || strings.ContainsAny(p, "%?#\\ ") || strings.Contains(p, "/./") || strings.Contains(p, "/../"):
		add("http_check.path_prefix", "%q must be a plain path", p)
	default:
		for _, r := range reservedPrefixes {
			if strings.HasPrefix(p, r) || strings.HasPrefix(r, p) {
				add("http_check.path_prefix", "%q overlaps the public routes under %s", p, r)
			}
		}
	}
	for i, s := range h.TrustedProxies {
		if _, err := ParseProxy(s); err != nil {
			add(fmt.Sprintf("http_check.trusted_proxies[%d]", i), "%v", err)
		}
	}
}
