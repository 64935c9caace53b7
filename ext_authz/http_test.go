package ext_authz

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/guestgate/guestgate/config"
	"github.com/guestgate/guestgate/internal/testsupport"
)

// httpHarness is the HTTP check on a real loopback server, in one form.
type httpHarness struct {
	url     string
	form    string
	checker *Checker
	logs    *testsupport.LogBuffer
}

func startHTTPHarness(t *testing.T, form string, extra string, ready bool) *httpHarness {
	t.Helper()
	eng, dir := policyEngine(t, testPolicy)
	cfg, err := config.Parse([]byte("decision_log:\n  full: true\nhttp_check:\n  form: "+form+"\n"+extra), dir)
	if err != nil {
		t.Fatal(err)
	}
	logs := &testsupport.LogBuffer{}
	c := New(Settings{Check: cfg.Check, DecisionLog: cfg.DecisionLog, HTTPCheck: cfg.HTTPCheck},
		Options{Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	if ready {
		c.SetEngine(eng)
	}
	srv := httptest.NewServer(c.HTTP(http.NotFoundHandler()))
	t.Cleanup(srv.Close)
	return &httpHarness{url: srv.URL, form: form, checker: c, logs: logs}
}

// call asks the check about an original request the way the harness's
// proxy would describe it.
func (h *httpHarness) call(t *testing.T, method, uri string, headers map[string]string, body string) *http.Response {
	t.Helper()
	checkMethod, checkURL := http.MethodGet, h.url+config.DefaultHTTPCheckPrefix
	req, err := http.NewRequest(checkMethod, checkURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	switch h.form {
	case config.HTTPCheckEnvoy:
		req, err = http.NewRequest(method, h.url+strings.TrimSuffix(config.DefaultHTTPCheckPrefix, "/")+uri, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
	case config.HTTPCheckNginx:
		req.Header.Set("X-Original-Method", method)
		req.Header.Set("X-Original-URI", uri)
	case config.HTTPCheckTraefik:
		req.Header.Set("X-Forwarded-Method", method)
		req.Header.Set("X-Forwarded-Uri", uri)
		req.Header.Set("X-Forwarded-Host", "chat.example")
		req.Header.Set("X-Forwarded-Proto", "https")
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

var forms = []string{config.HTTPCheckEnvoy, config.HTTPCheckNginx, config.HTTPCheckTraefik}

func TestHTTPCheckAllowCarriesIdentityHeadersForTheProxy(t *testing.T) {
	for _, form := range forms {
		t.Run(form, func(t *testing.T) {
			h := startHTTPHarness(t, form, "", true)
			resp := h.call(t, "GET", "/allow-plain", map[string]string{"X-Request-Id": "abc-123"}, "")
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status = %d", resp.StatusCode)
			}
			if got := resp.Header.Get("X-Guestgate-Subject"); got != "tester" {
				t.Errorf("x-guestgate-subject = %q", got)
			}
			if got := resp.Header.Get("X-Guestgate-Request-Id"); got != "abc-123" {
				t.Errorf("x-guestgate-request-id = %q, want the proxy's request id", got)
			}
			if resp.Header.Get("X-Guestgate-Reason") != "" {
				t.Error("an allow carries a denial reason")
			}
		})
	}
}

func TestHTTPCheckDenialsCarryStatusCoarseReasonAndRequestID(t *testing.T) {
	cases := []struct {
		name, method, uri string
		status            map[string]int // by form
		coarse            string
		reason            string
	}{
		{"no credential", "GET", "/login", map[string]int{"envoy": 401, "nginx": 401, "traefik": 401}, "unauthorized", "missing_token"},
		{"forbidden", "POST", "/deny", map[string]int{"envoy": 403, "nginx": 403, "traefik": 403}, "forbidden", "command_not_allowed"},
		{"undefined decision", "GET", "/nowhere", map[string]int{"envoy": 403, "nginx": 403, "traefik": 403}, "forbidden", ReasonUndefined},
		// nginx auth_request turns any other status into a 500: the form
		// answers 403 and keeps the coarse reason in the header.
		{"bad path", "GET", "/allow%2Fx", map[string]int{"envoy": 400, "nginx": 403, "traefik": 400}, "bad_request", ReasonBadPath},
	}
	for _, form := range forms {
		h := startHTTPHarness(t, form, "", true)
		for _, tc := range cases {
			t.Run(form+"/"+tc.name, func(t *testing.T) {
				resp := h.call(t, tc.method, tc.uri, nil, "")
				if resp.StatusCode != tc.status[form] {
					t.Fatalf("status = %d, want %d", resp.StatusCode, tc.status[form])
				}
				if got := resp.Header.Get("X-Guestgate-Reason"); got != tc.coarse {
					t.Errorf("x-guestgate-reason = %q, want %q", got, tc.coarse)
				}
				id := resp.Header.Get("X-Guestgate-Request-Id")
				if id == "" {
					t.Error("no request id")
				}
				var body map[string]string
				if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || body["error"] != tc.coarse || body["request_id"] != id {
					t.Errorf("body = %v (%v)", body, err)
				}
				if body["reason"] != "" {
					t.Error("precise reason sent to the client outside the development setup")
				}
				if resp.StatusCode == 401 && resp.Header.Get("WWW-Authenticate") != "Bearer" {
					t.Errorf("401 without WWW-Authenticate: %v", resp.Header)
				}
				if resp.Header.Get("X-Guestgate-Subject") != "" {
					t.Error("a denial carries identity headers")
				}
				if !strings.Contains(h.logs.String(), `"request_id":"`+id+`"`) || !strings.Contains(h.logs.String(), `"reason":"`+tc.reason+`"`) {
					t.Errorf("decision log lacks %s for %s: %s", tc.reason, id, h.logs)
				}
			})
		}
	}
}

func TestHTTPCheckFromAnUntrustedAddressIsDenied(t *testing.T) {
	for _, form := range forms {
		t.Run(form, func(t *testing.T) {
			h := startHTTPHarness(t, form, "  trusted_proxies: [10.0.0.0/8, 192.0.2.7]\n", true)
			resp := h.call(t, "GET", "/allow-plain", nil, "")
			if resp.StatusCode != http.StatusForbidden || resp.Header.Get("X-Guestgate-Subject") != "" {
				t.Fatalf("a check from loopback, not a trusted proxy: %d %v", resp.StatusCode, resp.Header)
			}
			if !strings.Contains(h.logs.String(), `"reason":"untrusted_proxy"`) {
				t.Fatalf("decision log: %s", h.logs)
			}
		})
	}
}

func TestHTTPCheckWithoutTheOriginalRequestIsDenied(t *testing.T) {
	for _, form := range []string{config.HTTPCheckNginx, config.HTTPCheckTraefik} {
		t.Run(form, func(t *testing.T) {
			h := startHTTPHarness(t, form, "", true)
			resp, err := http.Get(h.url + config.DefaultHTTPCheckPrefix + "allow-plain")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode/100 == 2 {
				t.Fatalf("a check without %s's headers was allowed", form)
			}
			// The path after the prefix means nothing in these forms.
			resp = h.call(t, "not a method", "/allow-plain", nil, "")
			if resp.StatusCode/100 == 2 {
				t.Fatal("a bad original method was allowed")
			}
		})
	}
}

func TestHTTPCheckBodyDependentRulesDenyWhereNoBodyIsForwarded(t *testing.T) {
	for _, form := range []string{config.HTTPCheckNginx, config.HTTPCheckTraefik} {
		t.Run(form, func(t *testing.T) {
			h := startHTTPHarness(t, form, "", true)
			if resp := h.call(t, "POST", "/needs-body", nil, ""); resp.StatusCode != http.StatusForbidden {
				t.Fatalf("POST without a forwarded body: status %d, want 403", resp.StatusCode)
			}
			if resp := h.call(t, "GET", "/needs-body", nil, ""); resp.StatusCode != http.StatusOK {
				t.Fatalf("GET (no body to miss): status %d, want 200", resp.StatusCode)
			}
		})
	}
	t.Run("nginx: a GET whose original request had a body", func(t *testing.T) {
		h := startHTTPHarness(t, config.HTTPCheckNginx, "", true)
		for _, announced := range []map[string]string{{"X-Original-Content-Length": "17"}, {"X-Original-Transfer-Encoding": "chunked"}} {
			if resp := h.call(t, "GET", "/needs-body", announced, ""); resp.StatusCode != http.StatusForbidden {
				t.Fatalf("GET with a body nginx did not forward (%v): status %d, want 403", announced, resp.StatusCode)
			}
		}
	})
	t.Run("envoy forwards the body", func(t *testing.T) {
		h := startHTTPHarness(t, config.HTTPCheckEnvoy, "", true)
		resp := h.call(t, "POST", "/body", map[string]string{"Content-Type": "application/json"}, `{"name":"ok"}`)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Guestgate-Echo") != "ok" {
			t.Fatalf("parsed body not seen by the policy: %d %v", resp.StatusCode, resp.Header)
		}
		partial := map[string]string{"Content-Type": "application/json", "X-Envoy-Auth-Partial-Body": "true"}
		if resp := h.call(t, "POST", "/needs-body", partial, `{"a":`); resp.StatusCode != http.StatusForbidden {
			t.Fatalf("a partial body was not shown as truncated: %d", resp.StatusCode)
		}
	})
}

func TestHTTPCheckDeniesWhatItCannotTellTheProxy(t *testing.T) {
	for _, form := range forms {
		t.Run(form, func(t *testing.T) {
			h := startHTTPHarness(t, form, "", true)
			if resp := h.call(t, "GET", "/strip-query?debug=1", nil, ""); resp.StatusCode != http.StatusForbidden {
				t.Fatalf("a decision that changes the query was let through: %d", resp.StatusCode)
			}
			if !strings.Contains(h.logs.String(), `"reason":"`+ReasonUnsupportedByWire+`"`) {
				t.Fatalf("decision log: %s", h.logs)
			}
		})
	}
}

// TestHTTPCheckDeniesHeaderChangesTheProxyCannotMake: nginx and Traefik
// clear only Authorization and the identity headers, so an allow that must
// also strip a credential cookie, a forged x-guestgate-* header of another
// name, or set a header outside the family is refused there; Envoy's form
// names them and allows.
func TestHTTPCheckDeniesHeaderChangesTheProxyCannotMake(t *testing.T) {
	cookieCredential := "check:\n  credentials:\n    - cookie: gg\n"
	for _, tc := range []struct {
		name, extra, path string
		headers           map[string]string
	}{
		{"credential cookie", cookieCredential, "/allow-plain", map[string]string{"Cookie": "gg=tok.en.x; theme=dark"}},
		{"forged identity header of another name", "", "/allow-plain", map[string]string{"X-Guestgate-Role": "admin"}},
	} {
		for _, form := range forms {
			t.Run(tc.name+"/"+form, func(t *testing.T) {
				h := startHTTPHarness(t, form, tc.extra, true)
				resp := h.call(t, "GET", tc.path, tc.headers, "")
				if form == config.HTTPCheckEnvoy {
					if resp.StatusCode != http.StatusOK {
						t.Fatalf("envoy form: %d, want an allow it can carry out", resp.StatusCode)
					}
					return
				}
				if resp.StatusCode != http.StatusForbidden || !strings.Contains(h.logs.String(), `"reason":"`+ReasonUnsupportedByWire+`"`) {
					t.Fatalf("%s form let through a change it cannot make: %d %s", form, resp.StatusCode, h.logs)
				}
			})
		}
	}
	// What the proxy does clear still passes: a forged identity header it
	// overwrites, and the Authorization credential.
	for _, form := range forms[1:] {
		h := startHTTPHarness(t, form, "", true)
		if resp := h.call(t, "GET", "/allow-plain", map[string]string{"X-Guestgate-Kind": "regular", "Authorization": "Bearer a.b.c"}, ""); resp.StatusCode != http.StatusOK {
			t.Fatalf("%s form: %d", form, resp.StatusCode)
		}
	}
}

func TestHTTPCheckInEnvoyFormAsksEnvoyToRemoveForgedIdentityHeaders(t *testing.T) {
	h := startHTTPHarness(t, config.HTTPCheckEnvoy, "", true)
	resp := h.call(t, "GET", "/allow-plain", map[string]string{"X-Guestgate-Kind": "regular", "X-Guestgate-Subject": "admin"}, "")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Guestgate-Subject") != "tester" {
		t.Fatalf("%d %v", resp.StatusCode, resp.Header)
	}
	if got := resp.Header.Get("X-Envoy-Auth-Headers-To-Remove"); got != "x-guestgate-kind" {
		t.Fatalf("x-envoy-auth-headers-to-remove = %q", got)
	}
}

func TestHTTPCheckNotReadyDeniesInEveryForm(t *testing.T) {
	want := map[string]int{"envoy": 503, "nginx": 403, "traefik": 503}
	for _, form := range forms {
		t.Run(form, func(t *testing.T) {
			h := startHTTPHarness(t, form, "", false)
			if resp := h.call(t, "GET", "/allow-plain", nil, ""); resp.StatusCode != want[form] {
				t.Fatalf("status = %d, want %d", resp.StatusCode, want[form])
			}
		})
	}
}

func TestHTTPCheckServesOnlyItsPrefixAndOnlyWhenConfigured(t *testing.T) {
	h := startHTTPHarness(t, config.HTTPCheckEnvoy, "", true)
	resp, err := http.Get(h.url + "/allow-plain")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("outside the prefix: %d, want the next handler's 404", resp.StatusCode)
	}
	off := startHTTPHarness(t, "''", "", true)
	resp, err = http.Get(off.url + config.DefaultHTTPCheckPrefix + "allow-plain")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("HTTP check off but served: %d", resp.StatusCode)
	}
}

// BenchmarkHTTPCheck is one nginx-form check through the handler, without
// the network: compare with BenchmarkCheck (the gRPC form's Decide).
func BenchmarkHTTPCheck(b *testing.B) {
	eng, dir := policyEngine(b, testPolicy)
	cfg, err := config.Parse([]byte("http_check:\n  form: nginx\n"), dir)
	if err != nil {
		b.Fatal(err)
	}
	c := New(Settings{Check: cfg.Check, DecisionLog: cfg.DecisionLog, HTTPCheck: cfg.HTTPCheck},
		Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	c.SetEngine(eng)
	h := c.HTTP(http.NotFoundHandler())
	req := httptest.NewRequest("GET", config.DefaultHTTPCheckPrefix, nil)
	req.RemoteAddr = "127.0.0.1:40000"
	req.Header.Set("X-Original-Method", "GET")
	req.Header.Set("X-Original-URI", "/allow?name=bench")
	req.Header.Set("X-Request-Id", "abc")
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatalf("status %d", w.Code)
		}
	}
}

// FuzzHTTPCheck sends hostile descriptions of the original request to the
// HTTP check in each form: it always answers with a status its proxy acts
// on, never panics, and never allows a path the policy does not.
func FuzzHTTPCheck(f *testing.F) {
	f.Add(uint8(0), "GET", "/allow-plain", "Bearer x", "")
	f.Add(uint8(1), "POST", "/needs-body?x=1", "", `{"a":1}`)
	f.Add(uint8(2), "GET", "/allow/../admin", "", "")
	f.Add(uint8(1), "G\x00T", "/%2e%2e/allow-plain", "\r\nX: y", "")
	f.Add(uint8(0), "POST", "/body", "", `{"name":"a","name":"b"}`)
	eng, dir := policyEngine(f, testPolicy)
	handlers := make([]http.Handler, len(forms))
	logs := &testsupport.LogBuffer{}
	for i, form := range forms {
		cfg, err := config.Parse([]byte("http_check:\n  form: "+form+"\n"), dir)
		if err != nil {
			f.Fatal(err)
		}
		c := New(Settings{Check: cfg.Check, DecisionLog: cfg.DecisionLog, HTTPCheck: cfg.HTTPCheck},
			Options{Logger: slog.New(slog.NewJSONHandler(logs, nil))})
		c.SetEngine(eng)
		handlers[i] = c.HTTP(http.NotFoundHandler())
	}
	allowedPaths := map[string]bool{"/allow-plain": true, "/allow": true, "/bool-allow": true, "/body": true, "/needs-body": true, "/strip-query": true}
	f.Fuzz(func(t *testing.T, which uint8, method, uri, auth, body string) {
		form := forms[int(which)%len(forms)]
		req := httptest.NewRequest("GET", config.DefaultHTTPCheckPrefix, strings.NewReader(body))
		req.RemoteAddr = "127.0.0.1:40000"
		req.Header["Authorization"] = []string{auth}
		req.Header["Content-Type"] = []string{"application/json"}
		switch form {
		case config.HTTPCheckEnvoy:
			req.Method = method
			req.RequestURI = strings.TrimSuffix(config.DefaultHTTPCheckPrefix, "/") + uri
		case config.HTTPCheckNginx:
			req.Header["X-Original-Method"] = []string{method}
			req.Header["X-Original-Uri"] = []string{uri}
		case config.HTTPCheckTraefik:
			req.Header["X-Forwarded-Method"] = []string{method}
			req.Header["X-Forwarded-Uri"] = []string{uri}
		}
		w := httptest.NewRecorder()
		handlers[int(which)%len(forms)].ServeHTTP(w, req)
		switch code := w.Code; {
		case form == config.HTTPCheckNginx && code != 200 && code != 401 && code != 403:
			t.Fatalf("nginx form answered %d", code)
		case code == 200:
			path, _, _ := strings.Cut(uri, "?")
			if !allowedPaths[path] {
				t.Fatalf("%s: allowed %q %q", form, method, uri)
			}
		case code != 400 && code != 401 && code != 403:
			t.Fatalf("%s answered %d", form, code)
		}
		if strings.Contains(logs.String(), "panicked") {
			t.Fatalf("panic: %s", logs)
		}
	})
}
