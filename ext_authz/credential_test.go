package ext_authz

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"

	"github.com/guestgate/guestgate/config"
	"github.com/guestgate/guestgate/internal/testsupport"
	"github.com/guestgate/guestgate/tokens"
)

// echoPolicy allows every request and hands what it was shown of the
// request back as dynamic metadata, so a test sees exactly what a policy
// (and whatever it logs or forwards) can see.
const echoPolicy = `package guestgate.authz

decision := {"allowed": true, "dynamic_metadata": {"seen": json.marshal([input.attributes, input.parsed_query])}}
`

// TestCredentialIsHiddenAndRemovedEvenWhenNoTokenIsTakenFromIt: a request
// can carry the credential in a shape guestgate takes no token from (the
// query parameter or the cookie twice, the scheme followed by a tab). The
// value is still a token: the policy must not see it and, on an allow, it
// must not go upstream.
func TestCredentialIsHiddenAndRemovedEvenWhenNoTokenIsTakenFromIt(t *testing.T) {
	cases := []struct {
		name, credentials, path string
		headers                 map[string]string
		leak                    string // must not appear in the input
		upstream                func(d *Decision) bool
	}{
		{
			name: "query parameter twice", credentials: "- query: token",
			path: "/x?token=tokpartA&token=tokpartB", leak: "tokpart",
			upstream: func(d *Decision) bool { return slices.Contains(d.RemoveQuery, "token") },
		},
		{
			// Envoy removes a query parameter by its name as written.
			name: "query parameter name percent-encoded", credentials: "- query: token",
			path: "/x?a=1&to%6Ben=tokpartA", leak: "tokpart",
			upstream: func(d *Decision) bool { return slices.Contains(d.RemoveQuery, "to%6Ben") },
		},
		{
			name: "query parameter in two spellings", credentials: "- query: token",
			path: "/x?token=tokpartA&%74oken=tokpartB", leak: "tokpart",
			upstream: func(d *Decision) bool {
				return slices.Contains(d.RemoveQuery, "token") && slices.Contains(d.RemoveQuery, "%74oken")
			},
		},
		{
			name: "cookie twice", credentials: "- cookie: gg",
			path: "/x", headers: map[string]string{"cookie": "gg=tokpartA; a=1; gg=tokpartB"}, leak: "tokpart",
			upstream: func(d *Decision) bool { return cookieGone(d, "gg") },
		},
		{
			name: "second cookie of the same name", credentials: "- cookie: gg",
			path: "/x", headers: map[string]string{"cookie": "gg=tokpartA; gg=tokpartB"}, leak: "tokpartB",
			upstream: func(d *Decision) bool { return cookieGone(d, "gg") },
		},
		{
			name: "cookie after one whose name ends like it", credentials: "- cookie: gg",
			path: "/x", headers: map[string]string{"cookie": "xgg=tokpartAzz; gg=tokpartA"}, leak: "; gg=tokpartA",
			upstream: func(d *Decision) bool { return cookieGone(d, "gg") },
		},
		{
			// Any cookie parser trims the name: "\vgg " is gg to one.
			name: "cookie name with white space about it", credentials: "- cookie: gg",
			path: "/x", headers: map[string]string{"cookie": "a=1; \vgg =tokpartA"}, leak: "tokpart",
			upstream: func(d *Decision) bool { return cookieGone(d, "gg") },
		},
		{
			name: "scheme followed by a tab", credentials: "- header: authorization",
			path: "/x", headers: map[string]string{"authorization": "Bearer\ttokpartA"}, leak: "tokpart",
			upstream: func(d *Decision) bool { return slices.Contains(d.RemoveHeaders, "authorization") },
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			eng, dir := policyEngine(t, echoPolicy)
			cfg, err := config.Parse([]byte("check:\n  credentials:\n    "+tc.credentials+"\n"), dir)
			if err != nil {
				t.Fatal(err)
			}
			c := New(Settings{Check: cfg.Check, DecisionLog: cfg.DecisionLog}, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			c.SetEngine(eng)
			headers := map[string]string{":path": tc.path}
			for k, v := range tc.headers {
				headers[k] = v
			}
			d := c.Decide(context.Background(), checkRequest("GET", tc.path, headers, ""))
			if !d.Allowed {
				t.Fatalf("denied (%s); the policy allows everything", d.Reason)
			}
			seen := d.DynamicMetadata.GetFields()["seen"].GetStringValue()
			if seen == "" {
				t.Fatal("the policy's echo is missing")
			}
			if strings.Contains(seen, tc.leak) {
				t.Errorf("the policy sees the credential: %s", seen)
			}
			if !tc.upstream(d) {
				t.Errorf("the credential goes upstream: set %v, removed headers %v, removed query %v", d.UpstreamHeaders, d.RemoveHeaders, d.RemoveQuery)
			}
		})
	}
}

// cookieGone says whether the named cookie is kept from upstream: the
// cookie header removed, or replaced by one without it.
func cookieGone(d *Decision, name string) bool {
	if slices.Contains(d.RemoveHeaders, "cookie") {
		return true
	}
	for _, h := range d.UpstreamHeaders {
		if h.Name == "cookie" {
			for _, part := range strings.Split(h.Value, ";") {
				if k, _, _ := strings.Cut(part, "="); strings.TrimSpace(k) == name {
					return false
				}
			}
			return true
		}
	}
	return false
}

// TestCredentialWithWhiteSpaceOtherThanSpacesAndTabsIsMalformed: a proxy
// may leave spaces and tabs around a header value (RFC 9110 §5.6.3), which
// are trimmed; any other white space or control character before or after
// the token (CR, LF, NUL, vertical tab, form feed, NEL, no-break and other
// Unicode spaces) is part of the value, which then is no token: malformed,
// in every place a token is taken from and through the decision endpoint,
// where "Bearer <token>\r\n" was trimmed and verified.
func TestCredentialWithWhiteSpaceOtherThanSpacesAndTabsIsMalformed(t *testing.T) {
	ws, err := testsupport.LoadDevelopment(devConfig)
	if err != nil {
		t.Fatal(err)
	}
	v, err := ws.Verifier(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	toks, err := ws.Mint(1)
	if err != nil {
		t.Fatal(err)
	}
	eng, dir := policyEngine(t, allowAll)
	cfg, err := config.Parse([]byte(`check:
  credentials:
    - {path_prefix: /raw/, header: x-token, scheme: "-"}
    - {path_prefix: /cookie/, cookie: gg}
    - {header: authorization}
`), dir)
	if err != nil {
		t.Fatal(err)
	}
	c := New(Settings{Verifier: v, Check: cfg.Check, DecisionLog: cfg.DecisionLog}, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	c.SetEngine(eng)
	srv := httptest.NewServer(c.DecideHandler())
	t.Cleanup(srv.Close)

	tok := toks.Access
	places := []struct {
		name, path string
		headers    func(value string) map[string]string
	}{
		{"Authorization: Bearer", "/x", func(v string) map[string]string { return map[string]string{"authorization": "Bearer " + v} }},
		{"a raw header", "/raw/x", func(v string) map[string]string { return map[string]string{"x-token": v} }},
		{"a cookie", "/cookie/x", func(v string) map[string]string { return map[string]string{"cookie": "a=1; gg=" + v + "; b=2"} }},
	}
	ows := []string{" ", "\t", " \t "}
	notOWS := []string{"\r", "\n", "\r\n", "\x00", "\v", "\f", "\x1b", "\u0085", "\u00a0", "\u2028", "\u3000", "\ufeff"}
	for _, p := range places {
		t.Run(p.name, func(t *testing.T) {
			for _, w := range append(ows, notOWS...) {
				want := ""
				if !slices.Contains(ows, w) {
					want = tokens.CodeMalformed
				}
				for _, value := range []string{tok + w, w + tok} {
					if strings.HasPrefix(value, " ") && p.name == "Authorization: Bearer" {
						continue // "Bearer  <token>": the scheme's one space, then OWS
					}
					d := c.Decide(context.Background(), checkRequest("GET", p.path, p.headers(value), ""))
					if d.TokenError != want {
						t.Errorf("token with %q (before: %v): token_error %q, want %q", w, strings.HasSuffix(value, tok), d.TokenError, want)
					}
				}
			}
		})
	}
	t.Run("decision endpoint", func(t *testing.T) {
		for _, w := range notOWS {
			for _, value := range []string{tok + w, w + tok} {
				// Refused as a request, or decided as the check decides it.
				body, _ := json.Marshal(DecideRequest{Method: "GET", Path: "/x", Token: value})
				status, answer := postDecide(t, srv.URL, "application/json", string(body))
				refused := status == http.StatusBadRequest && strings.Contains(fmt.Sprint(answer["error"]), "token")
				if !refused && (status != http.StatusOK || answer["token_error"] != tokens.CodeMalformed) {
					t.Errorf("token with %q: answered %d, token_error %v; want 400 about the token, or malformed", w, status, answer["token_error"])
				}
			}
		}
		for _, w := range ows {
			if d := decide(t, srv.URL, DecideRequest{Method: "GET", Path: "/x", Token: w + tok + w}); d.TokenError != "" || d.Kind != "access" {
				t.Errorf("%q around the token: token_error %q, kind %q", w, d.TokenError, d.Kind)
			}
		}
	})
}

// TestQueryParametersThePolicySetsCannotAddOthers: Envoy writes a
// query_parameters_to_set entry into the path as name=value, unencoded,
// so a value the policy takes from the request ("x&role=admin") would add
// a parameter of the client's choosing, or cut the query with "#". Every
// byte but the unreserved ones is percent-encoded.
func TestQueryParametersThePolicySetsCannotAddOthers(t *testing.T) {
	eng, _ := policyEngine(t, `package guestgate.authz

decision := {"allowed": true, "query_parameters_to_set": {"user": input.parsed_query.name[0], "plain": "a-b_c.d~e"}}
`)
	c := New(Settings{}, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	c.SetEngine(eng)
	path := "/x?name=x%26role%3Dadmin%23%20%2B%25"
	d := c.Decide(context.Background(), checkRequest("GET", path, map[string]string{":path": path}, ""))
	if !d.Allowed {
		t.Fatalf("denied (%s)", d.Reason)
	}
	want := map[string]string{"user": "x%26role%3Dadmin%23+%2B%25", "plain": "a-b_c.d~e"}
	for _, q := range d.SetQuery {
		if q.Value != want[q.Name] {
			t.Errorf("query parameter %s = %q, want %q", q.Name, q.Value, want[q.Name])
		}
		delete(want, q.Name)
	}
	if len(want) > 0 {
		t.Errorf("parameters not set: %v", want)
	}
}

// TestCookieCredentialInASecondCookieHeaderIsFound: a client may split its
// cookies over several Cookie headers (HTTP/2 does so routinely). They
// are one list joined by "; " (RFC 9113 §8.2.3), not ",": joined by ","
// the credential cookie was neither found nor hidden from the policy.
func TestCookieCredentialInASecondCookieHeaderIsFound(t *testing.T) {
	eng, dir := policyEngine(t, echoPolicy)
	cfg, err := config.Parse([]byte("http_check:\n  form: envoy\ncheck:\n  credentials:\n    - cookie: gg\n"), dir)
	if err != nil {
		t.Fatal(err)
	}
	var seen []string
	c := New(Settings{Check: cfg.Check, DecisionLog: cfg.DecisionLog, HTTPCheck: cfg.HTTPCheck},
		Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Observer: observerFunc(func(d *Decision) {
			seen = append(seen, d.DynamicMetadata.GetFields()["seen"].GetStringValue()+" token_error="+d.TokenError)
		})})
	c.SetEngine(eng)
	srv := httptest.NewServer(c.HTTP(http.NotFoundHandler()))
	defer srv.Close()
	req, err := http.NewRequest("GET", srv.URL+strings.TrimSuffix(config.DefaultHTTPCheckPrefix, "/")+"/x", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Add("Cookie", "a=1")
	req.Header.Add("Cookie", "gg=tokpartA")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if len(seen) != 1 {
		t.Fatalf("decisions seen: %d", len(seen))
	}
	if strings.Contains(seen[0], "tokpart") || strings.Contains(seen[0], "token_error=missing") {
		t.Fatalf("the cookie credential was not taken and hidden: %s", seen[0])
	}
	// The other cookies go upstream without the credential.
	if got := resp.Header.Get("Cookie"); got != "a=1" {
		t.Fatalf("upstream cookie header %q, want %q", got, "a=1")
	}
}

type observerFunc func(*Decision)

func (f observerFunc) Decided(d *Decision) { f(d) }

// TestHeaderMapJoinsCookiesAsOneList: Envoy's header_map form sends every
// header line apart; cookies are joined as the cookie list they are.
func TestHeaderMapJoinsCookiesAsOneList(t *testing.T) {
	m := joinHeaderMap([]*corev3.HeaderValue{
		{Key: "Cookie", Value: "a=1"}, {Key: "cookie", Value: "gg=x"},
		{Key: "Accept", Value: "text/html"}, {Key: "accept", Value: "*/*"},
	})
	if m["cookie"] != "a=1; gg=x" || m["accept"] != "text/html,*/*" {
		t.Fatalf("joined %q", m)
	}
	if v, _ := cookieValue(m["cookie"], "gg"); v != "x" {
		t.Fatalf("the second Cookie line's cookie is lost: %q", m["cookie"])
	}
}
