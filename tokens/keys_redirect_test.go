package tokens

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// TestKeySetDoesNotFollowAnHTTPSRedirectDownToPlainHTTP: plain http is
// taken for a loopback JWKS URL configured so (tests, a local issuer),
// never reached by a redirect from an https one. Otherwise whoever
// controls a redirect on the issuer's host (or a path on it) could send
// the fetch to a loopback service, unencrypted, and have its answer taken
// as the issuer's keys.
func TestKeySetDoesNotFollowAnHTTPSRedirectDownToPlainHTTP(t *testing.T) {
	a := ksECKey(t)
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(ksJWKS(t, ksJWK(t, &a.PublicKey, "a", "ES256"))))
	}))
	defer plain.Close()
	tls := httptest.NewTLSServer(http.RedirectHandler(plain.URL+"/jwks.json", http.StatusFound))
	defer tls.Close()
	ks, err := NewKeySet(context.Background(), KeySource{URL: tls.URL + "/jwks.json"}, tls.Client(), KeyHooks{})
	if err != nil {
		t.Fatal(err)
	}
	defer ks.Close()
	if st := ks.Status(); st.Ready || !strings.Contains(st.LastError, "https") {
		t.Fatalf("keys taken through a redirect from https to http: %+v", st)
	}
}

func TestKeyRedirectsStayOnHTTPSAndOffLoopback(t *testing.T) {
	cases := []struct {
		from, to string
		ok       bool
	}{
		{"https://idp.example/jwks.json", "https://cdn.example/jwks.json", true},
		{"https://idp.example/jwks.json", "http://127.0.0.1:8282/x", false},
		{"https://idp.example/jwks.json", "https://127.0.0.1:8282/x", false},
		{"https://idp.example/jwks.json", "https://localhost/x", false},
		{"https://idp.example/jwks.json", "https://[::1]/x", false},
		{"http://127.0.0.1:9000/jwks.json", "http://127.0.0.1:9001/jwks.json", true},
		{"https://127.0.0.1:9000/jwks.json", "https://127.0.0.1:9001/jwks.json", true},
		{"https://127.0.0.1:9000/jwks.json", "http://127.0.0.1:9001/jwks.json", false},
	}
	for _, c := range cases {
		from, _ := url.Parse(c.from)
		to, _ := url.Parse(c.to)
		if err := checkKeyRedirect(from, to); (err == nil) != c.ok {
			t.Errorf("redirect %s -> %s: %v, want ok=%v", c.from, c.to, err, c.ok)
		}
	}
}
