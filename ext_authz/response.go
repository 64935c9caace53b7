package ext_authz

import (
	"encoding/json"
	"net/http"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/genproto/googleapis/rpc/code"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
)

// identityPrefix is the header family guestgate owns: a client can never
// send one upstream, only guestgate (through the policy) writes them.
const identityPrefix = "x-guestgate-"

// upstream completes an allow: the request id goes upstream, every
// client-sent x-guestgate-* header that the policy does not set is removed,
// and the credential is removed unless configured to be forwarded.
func (d *Decision) upstream(r *request, cs *compiled) {
	if !headerSet(d.UpstreamHeaders).has(identityPrefix + "request-id") {
		d.UpstreamHeaders = append(d.UpstreamHeaders, Header{identityPrefix + "request-id", d.RequestID})
	}
	set := headerSet(d.UpstreamHeaders) // the headers set so far
	// Setting a header overwrites the client's value; the rest are removed.
	// A header is never both set and removed, whatever order a proxy
	// applies the two lists in.
	for name := range r.headers {
		if strings.HasPrefix(name, identityPrefix) && !set.has(name) {
			d.RemoveHeaders = append(d.RemoveHeaders, name)
		}
	}
	if r.credential.present && !cs.check.ForwardCredential {
		switch {
		case r.credential.header != "" && !set.has(r.credential.header):
			d.RemoveHeaders = append(d.RemoveHeaders, r.credential.header)
		case r.credential.cookie != "" && !set.has("cookie"):
			if rest := withoutCookie(r.headers["cookie"], r.credential.cookie); rest == "" {
				d.RemoveHeaders = append(d.RemoveHeaders, "cookie")
			} else {
				d.UpstreamHeaders = append(d.UpstreamHeaders, Header{"cookie", encodeHeaderValue(rest)})
			}
		case r.credential.query != "":
			d.RemoveQuery = append(d.RemoveQuery, querySpellings(r.query, r.credential.query)...)
		}
	}
	kept := d.RemoveHeaders[:0]
	for _, name := range d.RemoveHeaders {
		if !set.has(name) {
			kept = append(kept, name)
		}
	}
	d.RemoveHeaders = kept
}

// headerSet looks up header names in a list: policies set a handful, so a
// scan costs less than building a map on every check.
type headerSet []Header

func (hs headerSet) has(name string) bool {
	for _, h := range hs {
		if h.Name == name {
			return true
		}
	}
	return false
}

// finish completes a deny: the client gets a coarse reason and the request
// id (the precise reason only where configured), and a 401 always says how
// to authenticate.
func (cs *compiled) finish(d *Decision) {
	if d.Allowed {
		return
	}
	has := func(name string) bool { return headerSet(d.DenyHeaders).has(name) }
	if d.Status == http.StatusUnauthorized && !has("www-authenticate") {
		v := "Bearer"
		if d.TokenError != "" && d.TokenError != "missing" {
			v = `Bearer error="invalid_token"`
		}
		d.DenyHeaders = append(d.DenyHeaders, Header{"www-authenticate", v})
	}
	if !has(identityPrefix + "request-id") {
		d.DenyHeaders = append(d.DenyHeaders, Header{identityPrefix + "request-id", d.RequestID})
	}
	if d.DenyBody == "" {
		body := denyBody{Error: CoarseReason(d.Status), RequestID: d.RequestID}
		if cs.preciseReasons {
			body.Reason = d.Reason
		}
		b, _ := json.Marshal(&body)
		d.DenyBody = string(b)
		if !has("content-type") {
			d.DenyHeaders = append(d.DenyHeaders, Header{"content-type", "application/json"})
		}
	} else if !has("content-type") {
		// The policy's own body may hold text from the request: without a
		// type it would be sniffed (as HTML, script on the protected
		// origin) by whatever serves it.
		d.DenyHeaders = append(d.DenyHeaders, Header{"content-type", "text/plain; charset=utf-8"})
	}
}

// denyBody is the JSON body of a denial whose policy gave none.
type denyBody struct {
	Error     string `json:"error"`
	Reason    string `json:"reason,omitempty"` // only with precise reasons on
	RequestID string `json:"request_id"`
}

// CoarseReason is what a client learns of a denial: the status's name, so
// that denials do not map private channels or the policy's structure.
func CoarseReason(status int) string {
	switch status {
	case http.StatusUnauthorized:
		return "unauthorized"
	case http.StatusForbidden:
		return "forbidden"
	case http.StatusBadRequest:
		return "bad_request"
	}
	if t := http.StatusText(status); t != "" {
		return strings.ReplaceAll(strings.ToLower(t), " ", "_")
	}
	return "denied"
}

// CheckResponse is the decision as Envoy's gRPC ext_authz answer.
func (d *Decision) CheckResponse() *authv3.CheckResponse {
	if d.Allowed {
		return &authv3.CheckResponse{
			Status: &rpcstatus.Status{Code: int32(code.Code_OK)},
			HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
				Headers:                 sharedHeaderOptions(d.upstreamOpts, d.UpstreamHeaders),
				HeadersToRemove:         d.RemoveHeaders,
				ResponseHeadersToAdd:    headerOptions(d.ResponseHeaders),
				QueryParametersToSet:    queryParams(d.SetQuery),
				QueryParametersToRemove: d.RemoveQuery,
			}},
			DynamicMetadata: d.DynamicMetadata,
		}
	}
	c := code.Code_PERMISSION_DENIED
	if d.Status == http.StatusUnauthorized {
		c = code.Code_UNAUTHENTICATED
	}
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(c)},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode(d.Status)},
			Headers: sharedHeaderOptions(d.denyOpts, d.DenyHeaders),
			Body:    d.DenyBody,
		}},
		DynamicMetadata: d.DynamicMetadata,
	}
}

// sharedHeaderOptions is headerOptions(hs) reusing the built options of
// shared for the leading headers they match exactly.
func sharedHeaderOptions(shared []*corev3.HeaderValueOption, hs []Header) []*corev3.HeaderValueOption {
	n := 0
	for n < len(shared) && n < len(hs) && shared[n].GetHeader().GetKey() == hs[n].Name && shared[n].GetHeader().GetValue() == hs[n].Value {
		n++
	}
	if n == 0 {
		return headerOptions(hs)
	}
	out := make([]*corev3.HeaderValueOption, 0, len(hs))
	out = append(out, shared[:n]...)
	return append(out, headerOptions(hs[n:])...)
}

func headerOptions(hs []Header) []*corev3.HeaderValueOption {
	if len(hs) == 0 {
		return nil
	}
	// Three allocations for the whole list rather than two per header.
	out := make([]*corev3.HeaderValueOption, len(hs))
	opts := make([]corev3.HeaderValueOption, len(hs))
	vals := make([]corev3.HeaderValue, len(hs))
	for i, h := range hs {
		vals[i].Key, vals[i].Value = h.Name, h.Value
		opts[i].Header = &vals[i]
		opts[i].AppendAction = corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
		out[i] = &opts[i]
	}
	return out
}

func queryParams(qs []Header) []*corev3.QueryParameter {
	if len(qs) == 0 {
		return nil
	}
	out := make([]*corev3.QueryParameter, len(qs))
	for i, q := range qs {
		out[i] = &corev3.QueryParameter{Key: q.Name, Value: q.Value}
	}
	return out
}
