package tokens

// Where a key set may be fetched from: https, plain http to a loopback host
// someone configured, and redirects held to the same rule and more.

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// maxKeyRedirects bounds the redirects a JWKS fetch follows.
const maxKeyRedirects = 3

// checkKeyURL takes https URLs, and http to a loopback host for tests.
func checkKeyURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return errors.New("JWKS URL: not a URL")
	}
	if u.Host == "" || u.Opaque != "" {
		return errors.New("JWKS URL: not an absolute URL with a host")
	}
	if u.User != nil {
		return errors.New("JWKS URL: must not hold credentials")
	}
	if u.Fragment != "" {
		return errors.New("JWKS URL: must not have a fragment")
	}
	switch {
	case u.Scheme == "https":
		return nil
	case u.Scheme == "http" && isLoopbackHost(u.Hostname()):
		return nil
	}
	return fmt.Errorf("JWKS URL %s: must be https (plain http only to a loopback host)", raw)
}

func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// keyClient returns the client fetches use: a copy of client (or a default
// one) whose redirects are bounded and held to the same URL rule.
func keyClient(client *http.Client) *http.Client {
	var c http.Client
	if client != nil {
		c = *client
	} else {
		c.Timeout = keyFetchTimeout
	}
	inner := c.CheckRedirect
	c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if len(via) >= maxKeyRedirects {
			return errors.New("too many redirects")
		}
		if err := checkKeyURL(req.URL.String()); err != nil {
			return err
		}
		if err := checkKeyRedirect(via[0].URL, req.URL); err != nil {
			return err
		}
		if inner != nil {
			return inner(req, via)
		}
		return nil
	}
	return &c
}

// checkKeyRedirect holds a redirect of a JWKS fetch to more than the URL
// rule: plain http is taken for a loopback URL someone configured, never
// reached from https by a redirect (which keeps plain-http services such
// as a cloud metadata service out of reach), and a fetch that started off
// this machine is not redirected to a host that names it (a loopback,
// link-local or unspecified address, or a localhost name), whatever a
// redirect on the issuer's host says. The host is judged as written: a
// DNS name that resolves to this machine is not caught here.
func checkKeyRedirect(from, to *url.URL) error {
	if from.Scheme == "https" && to.Scheme != "https" {
		return errors.New("redirect from https to plain http refused")
	}
	if !isLocalHost(from.Hostname()) && isLocalHost(to.Hostname()) {
		return fmt.Errorf("redirect to %s refused: the JWKS URL is not on this machine", to.Hostname())
	}
	return nil
}

// isLocalHost says whether host names this machine or its link: a
// loopback, link-local or unspecified address, or localhost.
func isLocalHost(host string) bool {
	if isLoopbackHost(host) || strings.EqualFold(host, "localhost") || strings.HasSuffix(strings.ToLower(host), ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && (ip.IsLinkLocalUnicast() || ip.IsUnspecified())
}
