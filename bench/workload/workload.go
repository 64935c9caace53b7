// Package workload is the request mix guestgate's benchmarks send: one
// request per kind of traffic, each carrying the answer the shipped policy
// must give it. The development setup and its tokens the mix is built on
// are internal/testsupport's, shared with the tests.
//
// It is benchmark support only: nothing in the product imports it.
package workload

import (
	"fmt"
	"net/http"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/proto"

	"github.com/guestgate/guestgate/internal/testsupport"
)

// Case is one request and the answer it must get.
type Case struct {
	Name    string // stable label: the same for every visitor
	Request *authv3.CheckRequest
	Allowed bool
	Status  int // the HTTP status of a denial (0 on an allow)
}

// Check says whether resp is the answer c must get, and if not, why.
func (c Case) Check(resp *authv3.CheckResponse) error {
	if resp == nil {
		return fmt.Errorf("%s: no response", c.Name)
	}
	if c.Allowed {
		if resp.GetOkResponse() == nil {
			return fmt.Errorf("%s: denied (%d), want allowed", c.Name, resp.GetDeniedResponse().GetStatus().GetCode())
		}
		return nil
	}
	d := resp.GetDeniedResponse()
	if d == nil {
		return fmt.Errorf("%s: allowed, want denied %d", c.Name, c.Status)
	}
	if int(d.GetStatus().GetCode()) != c.Status {
		return fmt.Errorf("%s: denied %d, want %d", c.Name, d.GetStatus().GetCode(), c.Status)
	}
	return nil
}

// Cases are the requests of visitor n, holding t, one per kind of traffic:
// what the benchmarks measure one by one and the load test mixes.
func Cases(t testsupport.Tokens, n int) []Case {
	req := testsupport.CheckRequest
	kite := "/conversations/channels/" + testsupport.KiteChannel(n) + "/"
	return []Case{
		{Name: "xbs_kite_command", Request: req("POST", kite+"MarkReadCommand", t.Kite, `{"messageId":"m-1"}`), Allowed: true},
		{Name: "xbs_kite_get_token", Request: req("POST", "/conversations/GetTokenCommand", t.Kite, ""), Allowed: true},
		{Name: "xbs_link_command", Request: req("POST", "/conversations/channels/public-lobby/JoinChannelCommand", t.Link, ""), Allowed: true},
		{Name: "guest_login", Request: req("POST", "/v1/jwt/login", t.Guest, ""), Allowed: true},
		{Name: "access_messages", Request: req("GET", "/v1/messages?personId=regular-person-1", t.Access, ""), Allowed: true},
		{Name: "access_post_message", Request: req("POST", "/v1/messages", t.Access, `{"toPersonId":"regular-person-2","text":"hi"}`), Allowed: true},
		{Name: "sat_launchpad", Request: req("GET", "/v1/launchpads/"+testsupport.Launchpad(n)+"/apps", t.SAT, ""), Allowed: true},
		{Name: "deny_xbs_command", Request: req("POST", "/conversations/ListChannelsCommand", t.Kite, ""), Status: http.StatusForbidden},
		{Name: "deny_xbs_other_channel", Request: req("POST", "/conversations/channels/support-1/MarkReadCommand", t.Kite, ""), Status: http.StatusForbidden},
		{Name: "deny_guest_to_guest", Request: req("POST", "/v1/messages", t.Access, `{"toPersonId":"guest-aaaaaaaaaaaaaaaaaaaaaaaaaa"}`), Status: http.StatusForbidden},
		{Name: "deny_sat_other_launchpad", Request: req("GET", "/v1/launchpads/lp-other/apps", t.SAT, ""), Status: http.StatusForbidden},
		{Name: "deny_missing_token", Request: req("POST", "/conversations/GetTokenCommand", "", ""), Status: http.StatusUnauthorized},
		{Name: "deny_bad_signature", Request: req("POST", "/conversations/GetTokenCommand", tamper(t.Kite), ""), Status: http.StatusUnauthorized},
	}
}

// WithBody returns c with its JSON body replaced (and the headers that
// describe it): the same request with other content, such as another
// message id.
func (c Case) WithBody(body string) Case {
	req := proto.Clone(c.Request).(*authv3.CheckRequest)
	h := req.GetAttributes().GetRequest().GetHttp()
	h.Body, h.Size = body, int64(len(body))
	h.Headers["content-type"] = "application/json"
	h.Headers["content-length"] = fmt.Sprint(len(body))
	c.Request = req
	return c
}

// tamper changes the last character of the signature: a token that parses
// but does not verify.
func tamper(tok string) string {
	if tok == "" {
		return ""
	}
	b := []byte(tok)
	if b[len(b)-1] == 'A' {
		b[len(b)-1] = 'B'
	} else {
		b[len(b)-1] = 'A'
	}
	return string(b)
}
