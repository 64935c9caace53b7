package ext_authz

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/genproto/googleapis/rpc/code"

	"github.com/guestgate/guestgate/config"
	"github.com/guestgate/guestgate/internal/testsupport"
)

// decideClient bounds every request these tests send.
var decideClient = &http.Client{Timeout: 10 * time.Second}

// decideEndpoint serves h's checker's decision endpoint on loopback.
func decideEndpoint(t *testing.T, h *harness) string {
	t.Helper()
	srv := httptest.NewServer(h.checker.DecideHandler())
	t.Cleanup(srv.Close)
	return srv.URL
}

func postDecide(t *testing.T, url, contentType, body string) (int, map[string]any) {
	t.Helper()
	resp, err := decideClient.Post(url, contentType, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("answer %q is not JSON: %v", b, err)
	}
	return resp.StatusCode, out
}

func decide(t *testing.T, url string, req DecideRequest) DecideResponse {
	t.Helper()
	b, _ := json.Marshal(req)
	status, raw := postDecide(t, url, "application/json", string(b))
	if status != http.StatusOK {
		t.Fatalf("decision endpoint answered %d: %v", status, raw)
	}
	var out DecideResponse
	rb, _ := json.Marshal(raw)
	if err := json.Unmarshal(rb, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func headerValue(hs []NameValue, name string) (string, bool) {
	for _, h := range hs {
		if h.Name == name {
			return h.Value, true
		}
	}
	return "", false
}

func TestDecideEndpointAnswersAsTheGRPCCheckDoes(t *testing.T) {
	h := startHarness(t, testPolicy, true)
	url := decideEndpoint(t, h)
	cases := []struct {
		name    string
		req     DecideRequest
		allowed bool
		status  int
		reason  string
	}{
		{"allow with policy headers", DecideRequest{Method: "GET", Path: "/allow?name=Zo%C3%AB"}, true, 200, ReasonAllowed},
		{"policy deny with its reason", DecideRequest{Method: "POST", Path: "/deny"}, false, 403, "command_not_allowed"},
		{"policy 401", DecideRequest{Method: "GET", Path: "/login"}, false, 401, "missing_token"},
		{"body read as the check reads it", DecideRequest{Method: "POST", Path: "/body", Headers: map[string]string{"Content-Type": "application/json"}, Body: `{"name":"ada"}`}, true, 200, ReasonAllowed},
		{"bad JSON body", DecideRequest{Method: "POST", Path: "/body", Headers: map[string]string{"content-type": "application/json"}, Body: `{"name":`}, false, 400, ReasonBadBody},
		{"bad path", DecideRequest{Method: "GET", Path: "/a/../allow"}, false, 400, ReasonBadPath},
		{"undefined decision", DecideRequest{Method: "GET", Path: "/nothing"}, false, 403, ReasonUndefined},
		{"wrong shape", DecideRequest{Method: "GET", Path: "/wrong-type"}, false, 403, ReasonInvalid},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := decide(t, url, c.req)
			if got.Allowed != c.allowed || got.Status != c.status || got.Reason != c.reason {
				t.Fatalf("decided allowed=%v status=%d reason=%q, want %v %d %q", got.Allowed, got.Status, got.Reason, c.allowed, c.status, c.reason)
			}
			if got.RequestID == "" {
				t.Error("no request id")
			}
			if c.status != http.StatusBadRequest && got.PolicyRevision != h.eng.Revision() { // a 400 is decided before the policy runs
				t.Errorf("policy revision %q, want %q", got.PolicyRevision, h.eng.Revision())
			}
			// The same request through the gRPC Check decides the same.
			cr, err := h.checker.checkRequestFor(&c.req)
			if err != nil {
				t.Fatal(err)
			}
			resp := h.check(t, cr)
			if (resp.GetStatus().GetCode() == int32(code.Code_OK)) != got.Allowed {
				t.Fatalf("gRPC Check allowed=%v, endpoint %v", !got.Allowed, got.Allowed)
			}
			if !got.Allowed && int(resp.GetDeniedResponse().GetStatus().GetCode()) != got.Status {
				t.Fatalf("gRPC status %d, endpoint %d", resp.GetDeniedResponse().GetStatus().GetCode(), got.Status)
			}
			if got.Allowed {
				want := headerMap(resp.GetOkResponse().GetHeaders())
				for _, hd := range got.HeadersAdded {
					if hd.Name != "x-guestgate-request-id" && want[hd.Name] != hd.Value {
						t.Errorf("header %s = %q, gRPC answered %q", hd.Name, hd.Value, want[hd.Name])
					}
				}
				if len(got.HeadersAdded) != len(want) {
					t.Errorf("headers added %v, gRPC answered %v", got.HeadersAdded, want)
				}
			}
		})
	}
}

func TestDecideEndpointShowsTheHeadersThatGoUpstream(t *testing.T) {
	h := startHarness(t, testPolicy, true)
	url := decideEndpoint(t, h)
	got := decide(t, url, DecideRequest{
		Method:  "GET",
		Path:    "/allow?name=ada",
		Headers: map[string]string{"X-Guestgate-Subject": "forged", "X-Guestgate-Kind": "forged", "Accept": "text/plain"},
		Token:   "not-a-token",
	})
	if !got.Allowed {
		t.Fatalf("not allowed: %+v", got)
	}
	if got.TokenError != "untrusted_issuer" {
		t.Errorf("token_error = %q: the token was not read where the check looks", got.TokenError)
	}
	for _, removed := range []string{"authorization", "x-guestgate-kind"} {
		if !slices.Contains(got.HeadersRemoved, removed) {
			t.Errorf("%s not in headers_removed %v", removed, got.HeadersRemoved)
		}
		if _, ok := headerValue(got.UpstreamHeaders, removed); ok {
			t.Errorf("%s still goes upstream: %v", removed, got.UpstreamHeaders)
		}
	}
	if v, _ := headerValue(got.UpstreamHeaders, "x-guestgate-subject"); v != "tester" {
		t.Errorf("upstream x-guestgate-subject = %q, want the policy's value", v)
	}
	if v, _ := headerValue(got.UpstreamHeaders, "accept"); v != "text/plain" {
		t.Errorf("a client header that is kept is missing upstream: %v", got.UpstreamHeaders)
	}
	if v, _ := headerValue(got.UpstreamHeaders, "x-guestgate-request-id"); v != got.RequestID {
		t.Errorf("upstream request id %q, decision %q", v, got.RequestID)
	}
}

// tokenErrorPolicy allows everything and echoes what the check found.
const tokenErrorPolicy = `package guestgate.authz

decision := {"allowed": true, "headers": {"x-guestgate-token-error": input.token_error}}
`

func TestDecideEndpointPutsTheTokenWhereThisPathsCredentialIsRead(t *testing.T) {
	h := startHarness(t, tokenErrorPolicy, true)
	cfg, err := config.Parse([]byte(`check:
  credentials:
    - {path_prefix: /c/, cookie: session}
    - {path_prefix: /q/, query: access_token}
    - {path_prefix: /raw/, header: x-token, scheme: "-"}
    - {header: authorization}
`), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	h.checker.Update(Settings{Check: cfg.Check, DecisionLog: cfg.DecisionLog})
	url := decideEndpoint(t, h)
	cases := []struct {
		name, path   string
		headers      map[string]string
		removed      string // header removed upstream
		queryRemoved string
		cookieKept   string
	}{
		{"authorization header", "/a", nil, "authorization", "", ""},
		{"raw header", "/raw/x", nil, "x-token", "", ""},
		{"cookie beside others", "/c/x", map[string]string{"cookie": "theme=dark"}, "", "", "theme=dark"},
		{"query parameter", "/q/x?page=2", nil, "", "access_token", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := decide(t, url, DecideRequest{Method: "GET", Path: c.path, Headers: c.headers, Token: "abc.def.ghi"})
			if v, _ := headerValue(got.HeadersAdded, "x-guestgate-token-error"); v != "untrusted_issuer" {
				t.Fatalf("token_error seen by the policy = %q, want untrusted_issuer (token read)", v)
			}
			if c.removed != "" && !slices.Contains(got.HeadersRemoved, c.removed) {
				t.Errorf("headers_removed %v lacks %s", got.HeadersRemoved, c.removed)
			}
			if c.queryRemoved != "" && !slices.Contains(got.QueryRemoved, c.queryRemoved) {
				t.Errorf("query_parameters_removed %v lacks %s", got.QueryRemoved, c.queryRemoved)
			}
			if c.cookieKept != "" {
				if v, _ := headerValue(got.UpstreamHeaders, "cookie"); v != c.cookieKept {
					t.Errorf("upstream cookie = %q, want %q", v, c.cookieKept)
				}
			}
		})
	}
	got := decide(t, url, DecideRequest{Method: "GET", Path: "/a"})
	if v, _ := headerValue(got.HeadersAdded, "x-guestgate-token-error"); v != "missing" {
		t.Fatalf("without a token the policy saw token_error %q, want missing", v)
	}
}

// TestDecideEndpointDecidesTheMethodAsCheckDoes: the endpoint hands the
// method to the check as it is given, so that for every spelling it
// decides what the gRPC Check decides for the request Envoy would send:
// "post" and "POST " are not POST (the guest route is denied, and a
// method that is not a token is bad_request), where the endpoint once
// upper-cased and trimmed them into an allow.
func TestDecideEndpointDecidesTheMethodAsCheckDoes(t *testing.T) {
	c, ws := shippedChecker(t, 0, 0)
	decided := make(chan *Decision, 1)
	c.observer = observerFunc(func(d *Decision) { decided <- d })
	client := authv3.NewAuthorizationClient(loopback(t, c.Register))
	srv := httptest.NewServer(c.DecideHandler())
	t.Cleanup(srv.Close)
	toks, err := ws.Mint(1)
	if err != nil {
		t.Fatal(err)
	}
	const path, body = "/v1/messages", `{"toPersonId":"regular-person-1","text":"hi"}`
	for _, method := range []string{"POST", "post", "Post", "POST ", " POST", "PO ST", "POST\t", "GET", "get", "DELETE", "PATCH", "PÓST"} {
		req := testsupport.CheckRequest(method, path, toks.Access, body)
		resp, err := client.Check(context.Background(), req)
		if err != nil {
			t.Fatalf("%q: %v", method, err)
		}
		want := <-decided
		got := decide(t, srv.URL, DecideRequest{Method: method, Path: path, Headers: map[string]string{"content-type": "application/json"}, Body: body, Token: toks.Access})
		<-decided
		if got.Allowed != want.Allowed || got.Status != want.Status || got.Reason != want.Reason {
			t.Errorf("%q: the endpoint decided %v %d %s, Check %v %d %s", method, got.Allowed, got.Status, got.Reason, want.Allowed, want.Status, want.Reason)
		}
		if (resp.GetOkResponse() != nil) != want.Allowed {
			t.Errorf("%q: Check answered %v for %v", method, resp.GetStatus(), want.Allowed)
		}
		if method != "POST" && strings.EqualFold(strings.TrimSpace(method), "POST") && want.Allowed {
			t.Errorf("%q: allowed as if it were POST", method)
		}
	}
	if d := decide(t, srv.URL, DecideRequest{Method: "POST", Path: path, Headers: map[string]string{"content-type": "application/json"}, Body: body, Token: toks.Access}); !d.Allowed {
		t.Fatalf("POST denied %s: the comparison above compares denials only", d.Reason)
	}
}

func TestDecideEndpointRefusesBadRequestsNamingTheProblem(t *testing.T) {
	h := startHarness(t, testPolicy, true)
	url := decideEndpoint(t, h)
	cases := []struct {
		name, contentType, body string
		status                  int
		mention                 string
	}{
		{"not JSON content type", "text/plain", `{"method":"GET","path":"/allow"}`, 415, "Content-Type"},
		{"not JSON", "application/json", `method=GET`, 400, "not valid JSON"},
		{"duplicate key", "application/json", `{"method":"GET","path":"/allow","path":"/deny"}`, 400, "duplicate"},
		{"duplicate nested key", "application/json", `{"method":"GET","path":"/allow","headers":{"a":"1","a":"2"}}`, 400, "duplicate"},
		{"unknown field", "application/json", `{"method":"GET","path":"/allow","verb":"GET"}`, 400, "verb"},
		{"trailing data", "application/json", `{"method":"GET","path":"/allow"} {}`, 400, "trailing"},
		{"no method", "application/json", `{"path":"/allow"}`, 400, "method"},
		{"no path", "application/json", `{"method":"GET"}`, 400, "path"},
		{"CRLF in path", "application/json", `{"method":"GET","path":"/allow\r\nX: 1"}`, 400, "path"},
		{"bad header name", "application/json", `{"method":"GET","path":"/allow","headers":{"a b":"1"}}`, 400, "header name"},
		{"CRLF in header", "application/json", `{"method":"GET","path":"/allow","headers":{"x-a":"1\r\nx-b: 2"}}`, 400, "headers.x-a"},
		{"header twice by case", "application/json", `{"method":"GET","path":"/allow","headers":{"X-A":"1","x-a":"2"}}`, 400, "twice"},
		{"token and authorization header", "application/json", `{"method":"GET","path":"/allow","headers":{"Authorization":"Bearer x"},"token":"y"}`, 400, "authorization"},
		{"token with a scheme", "application/json", `{"method":"GET","path":"/allow","token":"Bearer y"}`, 400, "token"},
		{"wrong type", "application/json", `{"method":"GET","path":"/allow","headers":["a"]}`, 400, "headers"},
		{"oversize", "application/json", `{"method":"GET","path":"/allow","body":"` + strings.Repeat("x", MaxDecideRequestBytes) + `"}`, 413, "larger than"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, out := postDecide(t, url, c.contentType, c.body)
			msg, _ := out["error"].(string)
			if status != c.status || !strings.Contains(msg, c.mention) {
				t.Fatalf("answered %d %q, want %d mentioning %q", status, msg, c.status, c.mention)
			}
		})
	}
	resp, err := decideClient.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("GET answered %d, want 405", resp.StatusCode)
	}
}

func TestDecideEndpointShowsTheShadowsAnswerAndExplains(t *testing.T) {
	c, rec, _ := shadowChecker(t, candidate(), 8)
	url := decideEndpoint(t, &harness{checker: c})
	cases := []struct {
		name     string
		req      DecideRequest
		agrees   bool
		shadow   string
		explains bool
	}{
		{"answers differ", DecideRequest{Method: "GET", Path: "/allow-plain"}, false, "channel_not_bound", false},
		{"answers agree, explained", DecideRequest{Method: "GET", Path: "/login", Explain: true}, true, "missing_token", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := decide(t, url, tc.req)
			if got.Shadow == nil || got.Agrees == nil || *got.Agrees != tc.agrees || got.Shadow.Reason != tc.shadow || got.Shadow.PolicyRevision == got.PolicyRevision {
				t.Fatalf("shadow %+v agrees %v", got.Shadow, got.Agrees)
			}
			if (got.Explanation != nil) != tc.explains || (got.ShadowExplanation != nil) != tc.explains || (got.Input != nil) != tc.explains {
				t.Fatalf("explanation %v, shadow's %v, input %v: want them exactly when asked", got.Explanation, got.ShadowExplanation, got.Input)
			}
			if tc.explains && (len(got.Explanation.Steps) == 0 || got.Explanation.Steps[0].Line == 0 || got.Explanation.Steps[0].File != "authz.rego") {
				t.Fatalf("explanation %+v", got.Explanation)
			}
		})
	}
	if pairs, _ := rec.counts(); pairs[[2]string{ReasonAllowed, "channel_not_bound"}] != 1 || pairs[[2]string{"missing_token", "missing_token"}] != 1 {
		t.Fatalf("the endpoint's shadowed decisions were not counted: %v", pairs)
	}
}
