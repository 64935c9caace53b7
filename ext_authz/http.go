package ext_authz

import (
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/guestgate/guestgate/config"
)

// The HTTP check: the same check as the gRPC server, for proxies that ask
// over plain HTTP. A request to the check is turned into the CheckRequest
// Envoy would have sent and decided by the same code; only the wire
// differs. The form (Envoy's HTTP ext_authz, nginx auth_request, Traefik
// forwardAuth) is the config's, never guessed from the request.

// Reasons only the HTTP check gives.
const (
	// ReasonUntrustedProxy: the check was called from an address that is
	// not a trusted proxy, so its headers cannot say what the original
	// request was.
	ReasonUntrustedProxy = "untrusted_proxy"
	// ReasonUnsupportedByWire: the decision needs query parameters changed
	// on the way upstream (the policy's, or the credential's removal), which
	// no HTTP form can tell its proxy.
	ReasonUnsupportedByWire = "unsupported_by_wire"
)

// Response headers the HTTP check writes besides the decision's.
const (
	// headerReason carries the coarse reason of a denial, for proxies that
	// drop the body (nginx auth_request).
	headerReason = identityPrefix + "reason"
	// envoyHeadersToRemove is Envoy HTTP ext_authz's list of request
	// headers to remove before the request goes upstream.
	envoyHeadersToRemove = "x-envoy-auth-headers-to-remove"
)

// transportHeaders are the headers each form uses to describe the original
// request. They are the proxy's, not the client's: the policy does not see
// them among the request's headers.
var transportHeaders = map[string][]string{
	config.HTTPCheckNginx:   {"x-original-uri", "x-original-method", "x-original-content-length", "x-original-transfer-encoding"},
	config.HTTPCheckTraefik: {"x-forwarded-method", "x-forwarded-uri", "x-forwarded-host", "x-forwarded-proto"},
}

// HTTP serves the HTTP check under the configured path prefix and hands
// every other request to next. The form, prefix and trusted proxies are
// read from the current settings on each request, so a config reload
// changes them.
func (c *Checker) HTTP(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cs := c.compiled.Load()
		if !cs.http.Enabled() || !strings.HasPrefix(r.URL.Path, cs.http.PathPrefix) {
			next.ServeHTTP(w, r)
			return
		}
		c.serveHTTPCheck(w, r, cs)
	})
}

func (c *Checker) serveHTTPCheck(w http.ResponseWriter, r *http.Request, cs *compiled) {
	start := time.Now()
	var d *Decision
	defer func() {
		// decide recovers its own panics; this is for the wire's part.
		if p := recover(); p != nil {
			c.logger.Error("HTTP check panicked; denied", "panic", fmt.Sprint(p))
			writeHTTPDecision(w, c.refuse(cs, start, http.StatusForbidden, ReasonInternal, r.Method, r.URL.Path), cs.http.Form)
		}
	}()
	cr, status, reason := httpCheckRequest(r, cs)
	if reason != "" {
		d = c.refuse(cs, start, status, reason, r.Method, r.URL.Path)
	} else {
		d = c.decide(r.Context(), cr, cs.http.Form != config.HTTPCheckEnvoy)
		if d.Allowed && !wireCarries(d, cs.http.Form) {
			// Letting it through would send upstream a request the policy
			// (or the credential's removal) said to change.
			d = c.refuse(cs, start, http.StatusForbidden, ReasonUnsupportedByWire, d.Method, d.Path)
		}
	}
	writeHTTPDecision(w, d, cs.http.Form)
}

// proxyClearedHeaders are the request headers a proxy in the nginx or
// Traefik form sets or clears itself on every allowed request (the tested
// nginx configuration does; README: Running behind nginx): the identity
// headers, copied from guestgate's answer or emptied, and the
// Authorization credential.
var proxyClearedHeaders = map[string]bool{
	"authorization": true, headerReason: true,
	identityPrefix + "subject": true, identityPrefix + "kind": true, identityPrefix + "issuer": true,
	identityPrefix + "name": true, identityPrefix + "widget": true, identityPrefix + "channel": true,
	identityPrefix + "scope": true, identityPrefix + "request-id": true,
}

// wireCarries says whether the form can tell its proxy every change an
// allow makes to the request on its way upstream. No HTTP form changes the
// query; Envoy's removes any header guestgate names; nginx and Traefik copy
// identity headers from the answer and clear only proxyClearedHeaders, so a
// credential cookie, a forged x-guestgate-* header of another name or a
// policy's other header changes would reach the upstream unchanged.
func wireCarries(d *Decision, form string) bool {
	if len(d.SetQuery) > 0 || len(d.RemoveQuery) > 0 {
		return false
	}
	if form == config.HTTPCheckEnvoy {
		return true
	}
	for _, h := range d.UpstreamHeaders {
		if !strings.HasPrefix(h.Name, identityPrefix) {
			return false
		}
	}
	for _, name := range d.RemoveHeaders {
		if !proxyClearedHeaders[name] {
			return false
		}
	}
	return true
}

// refuse denies before or instead of the policy, with everything a
// decision gets: the coarse answer, the request id, metrics and the log.
func (c *Checker) refuse(cs *compiled, start time.Time, status int, reason, method, path string) *Decision {
	d := &Decision{RequestID: newRequestID(), Method: method, Path: path}
	d.deny(status, reason)
	d.Latency = time.Since(start)
	cs.finish(d)
	c.observe(cs, d)
	return d
}

// httpCheckRequest builds the CheckRequest Envoy would have sent for the
// original request the proxy describes. It returns a deny status and
// reason instead when the call cannot be trusted or read.
func httpCheckRequest(r *http.Request, cs *compiled) (*authv3.CheckRequest, int, string) {
	peer, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil || !trusted(peer.Addr(), cs.proxies) {
		return nil, http.StatusForbidden, ReasonUntrustedProxy
	}
	headers := make(map[string]string, len(r.Header)+3)
	for name, vs := range r.Header {
		headers[strings.ToLower(name)] = strings.Join(vs, headerJoiner(name))
	}
	form := cs.http.Form
	method, uri, host, scheme := r.Method, "", r.Host, "http"
	if r.TLS != nil {
		scheme = "https"
	}
	var body []byte
	switch form {
	case config.HTTPCheckEnvoy:
		// Envoy calls prefix + original path with the original method.
		rest, ok := strings.CutPrefix(r.RequestURI, cs.http.PathPrefix)
		if !ok {
			return nil, http.StatusBadRequest, ReasonBadPath
		}
		uri = "/" + rest
		max := cs.check.MaxBodyBytes
		body, err = io.ReadAll(io.LimitReader(r.Body, int64(max)+1))
		if err != nil {
			return nil, http.StatusBadRequest, ReasonBadBody
		}
	case config.HTTPCheckNginx:
		method, uri = headers["x-original-method"], headers["x-original-uri"]
		// The subrequest carries no body and clears its own length; whether
		// the original request had a body comes in these two, so a GET with
		// a body is not taken for one without.
		delete(headers, "content-length")
		delete(headers, "transfer-encoding")
		for from, to := range map[string]string{"x-original-content-length": "content-length", "x-original-transfer-encoding": "transfer-encoding"} {
			if v := headers[from]; v != "" {
				headers[to] = v
			}
		}
	case config.HTTPCheckTraefik:
		method, uri = headers["x-forwarded-method"], headers["x-forwarded-uri"]
		if h := headers["x-forwarded-host"]; h != "" {
			host = h
		}
		if p := headers["x-forwarded-proto"]; p == "http" || p == "https" {
			scheme = p
		}
	}
	if !validHeaderName(method) || !strings.HasPrefix(uri, "/") {
		return nil, http.StatusBadRequest, ReasonBadRequest
	}
	for _, name := range transportHeaders[form] {
		delete(headers, name)
	}
	headers[":authority"], headers[":method"], headers[":path"] = host, method, uri
	h := &authv3.AttributeContext_HttpRequest{
		Method:   method,
		Path:     uri,
		Host:     host,
		Scheme:   scheme,
		Protocol: r.Proto,
		Headers:  headers,
		RawBody:  body,
	}
	if len(body) > 0 {
		h.Size = int64(len(body))
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{
				Address:       peer.Addr().Unmap().String(),
				PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(peer.Port())},
			}}}},
		Request: &authv3.AttributeContext_Request{Http: h},
	}}, 0, ""
}

func trusted(a netip.Addr, proxies []netip.Prefix) bool {
	a = a.Unmap()
	for _, p := range proxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// writeHTTPDecision answers the proxy. An allow is a 2xx whose headers the
// proxy copies upstream (the identity headers, the request id); a denial
// carries its status, the coarse reason and request id in headers, and
// WWW-Authenticate on a 401. nginx auth_request understands only 2xx, 401
// and 403, so in that form every other denial is a 403.
func writeHTTPDecision(w http.ResponseWriter, d *Decision, form string) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	if d.Allowed {
		for _, x := range d.UpstreamHeaders {
			h.Add(x.Name, x.Value)
		}
		for _, x := range d.ResponseHeaders {
			h.Add(x.Name, x.Value)
		}
		if form == config.HTTPCheckEnvoy && len(d.RemoveHeaders) > 0 {
			h.Set(envoyHeadersToRemove, strings.Join(d.RemoveHeaders, ","))
		}
		h.Set("Content-Length", "0")
		w.WriteHeader(d.Status)
		return
	}
	status := d.Status
	if form == config.HTTPCheckNginx && status != http.StatusUnauthorized && status != http.StatusForbidden {
		status = http.StatusForbidden
	}
	if status < 300 {
		// A proxy takes a 2xx for an allow: a denial answered 200 (the
		// opa-envoy format lets a policy's) is a 403 on this wire.
		status = http.StatusForbidden
	}
	for _, x := range d.DenyHeaders {
		h.Add(x.Name, x.Value)
	}
	h.Set(headerReason, CoarseReason(d.Status))
	h.Set("Content-Length", strconv.Itoa(len(d.DenyBody)))
	w.WriteHeader(status)
	_, _ = io.WriteString(w, d.DenyBody)
}
