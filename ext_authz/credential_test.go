package ext_authz

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"

	"github.com/guestgate/guestgate/config"
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
				if k, _, _ := strings.Cut(strings.TrimSpace(part), "="); k == name {
					return false
				}
			}
			return true
		}
	}
	return false
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
