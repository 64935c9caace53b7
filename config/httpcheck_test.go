package config

import (
	"net/netip"
	"strings"
	"testing"
)

func TestHTTPCheckIsOffByDefaultWithLoopbackProxies(t *testing.T) {
	c, err := parse(t, "")
	if err != nil {
		t.Fatal(err)
	}
	if c.HTTPCheck.Enabled() || c.HTTPCheck.PathPrefix != DefaultHTTPCheckPrefix {
		t.Fatalf("http_check = %+v", c.HTTPCheck)
	}
	ps, err := c.HTTPCheck.Proxies()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		addr string
		want bool
	}{{"127.0.0.1", true}, {"127.9.9.9", true}, {"::1", true}, {"10.0.0.1", false}, {"::2", false}} {
		got := false
		for _, p := range ps {
			got = got || p.Contains(netip.MustParseAddr(tc.addr))
		}
		if got != tc.want {
			t.Errorf("%s trusted = %v, want %v", tc.addr, got, tc.want)
		}
	}
}

func TestHTTPCheckAcceptsEachFormAndProxyLists(t *testing.T) {
	for _, form := range []string{"envoy", "nginx", "traefik"} {
		c, err := parse(t, "http_check:\n  form: "+form+"\n  path_prefix: /authz/\n  trusted_proxies: [10.0.0.0/8, 192.0.2.7, '2001:db8::/32']\n")
		if err != nil {
			t.Fatalf("%s: %v", form, err)
		}
		ps, err := c.HTTPCheck.Proxies()
		if err != nil || len(ps) != 3 || ps[1].Bits() != 32 {
			t.Fatalf("%s: proxies %v %v", form, ps, err)
		}
	}
}

func TestBadHTTPCheckErrorsNameTheKey(t *testing.T) {
	cases := []struct{ name, doc, key string }{
		{"unknown form", "http_check:\n  form: haproxy\n", "http_check.form"},
		{"guessing is not a form", "http_check:\n  form: auto\n", "http_check.form"},
		{"prefix without slash", "http_check:\n  form: nginx\n  path_prefix: /authz\n", "http_check.path_prefix"},
		{"root prefix", "http_check:\n  form: nginx\n  path_prefix: /\n", "http_check.path_prefix"},
		{"prefix over issuer routes", "http_check:\n  form: nginx\n  path_prefix: /v1/check/\n", "http_check.path_prefix"},
		{"prefix with dots", "http_check:\n  form: nginx\n  path_prefix: /a/../b/\n", "http_check.path_prefix"},
		{"bad CIDR", "http_check:\n  form: nginx\n  trusted_proxies: [10.0.0.0/8, 10.0.0.0/99]\n", "http_check.trusted_proxies[1]"},
		{"hostname", "http_check:\n  form: nginx\n  trusted_proxies: [proxy.local]\n", "http_check.trusted_proxies[0]"},
		{"unknown key", "http_check:\n  from: nginx\n", "from"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parse(t, tc.doc)
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tc.key) {
				t.Fatalf("error %q does not name %s", err, tc.key)
			}
		})
	}
}
