package ext_authz

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/open-policy-agent/opa/v1/ast"
	"google.golang.org/genproto/googleapis/rpc/code"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/guestgate/guestgate/engine"
	"github.com/guestgate/guestgate/internal/memo"
)

// respond shapes the policy's answer into d: the decision read (or, for
// one the decision cache answered, taken as read before), then an allow
// completed on its way upstream. A decision of the wrong shape makes d a
// denial (decision_invalid); the error says why, for the log.
func (d *Decision) respond(res engine.Result, r *request, cs *compiled) error {
	if cs.format.opaEnvoy {
		return d.respondOPAEnvoy(res, r, cs)
	}
	if tpl, ok := memo.Load[*Decision](res.Memo()); ok {
		// A cached decision, read already.
		d.answer(tpl)
	} else if err := d.apply(res.Value); err == nil {
		if res.Cached() {
			tpl := &Decision{}
			tpl.answer(d)
			tpl.upstreamOpts = headerOptions(tpl.UpstreamHeaders)
			tpl.denyOpts = headerOptions(tpl.DenyHeaders)
			memo.Store(res.Memo(), tpl)
		}
	} else {
		*d = Decision{RequestID: d.RequestID, Revision: d.Revision, Kind: d.Kind, Issuer: d.Issuer, Subject: d.Subject,
			TokenError: d.TokenError, Method: d.Method, Path: d.Path}
		d.deny(http.StatusForbidden, ReasonInvalid)
		return err
	}
	if d.Allowed {
		d.upstream(r, cs)
	}
	return nil
}

// answer copies the policy's answer from src: what apply sets, with the
// lists copied, since the request's own entries are appended to them.
func (d *Decision) answer(src *Decision) {
	d.Allowed, d.Status, d.Reason, d.DenyBody = src.Allowed, src.Status, src.Reason, src.DenyBody
	// Room for what upstream and finish append (request id, cookie,
	// www-authenticate, content-type): one allocation, not two.
	d.UpstreamHeaders = cloneWithRoom(src.UpstreamHeaders, 2)
	d.DenyHeaders = cloneWithRoom(src.DenyHeaders, 3)
	d.ResponseHeaders = slices.Clone(src.ResponseHeaders)
	d.RemoveHeaders = slices.Clone(src.RemoveHeaders)
	d.SetQuery = slices.Clone(src.SetQuery)
	d.RemoveQuery = slices.Clone(src.RemoveQuery)
	d.DynamicMetadata = src.DynamicMetadata // read only: marshalled, never changed
	d.Ownership = src.Ownership             // read only: the effect, applied per request
	d.upstreamOpts, d.denyOpts = src.upstreamOpts, src.denyOpts
	d.opaEnvoy = src.opaEnvoy // read only: respondOPAEnvoy copies it
}

func cloneWithRoom(hs []Header, room int) []Header {
	if hs == nil {
		return nil
	}
	return append(make([]Header, 0, len(hs)+room), hs...)
}

// apply reads the policy's decision: a boolean, or an object as
// opa-envoy-plugin's. Anything of the wrong type is an error, never a guess.
func (d *Decision) apply(v ast.Value) error {
	switch x := v.(type) {
	case ast.Boolean:
		d.Allowed = bool(x)
		if d.Allowed {
			d.Status, d.Reason = http.StatusOK, ReasonAllowed
		} else {
			d.Status, d.Reason = http.StatusForbidden, ReasonDeniedPolicy
		}
		return nil
	case ast.Object:
		return d.applyObject(x)
	}
	return fmt.Errorf("decision is a %s, want a boolean or an object", ast.ValueName(v))
}

var decisionKeys = map[string]bool{
	"allowed": true, "http_status": true, "reason": true, "headers": true, "response_headers_to_add": true,
	"request_headers_to_remove": true, "query_parameters_to_set": true, "query_parameters_to_remove": true,
	"body": true, "dynamic_metadata": true, "token_error": true, "ownership": true,
}

// decisionKeyTerms are the terms of decisionKeys, made once.
var decisionKeyTerms = func() map[string]*ast.Term {
	m := make(map[string]*ast.Term, len(decisionKeys))
	for k := range decisionKeys {
		m[k] = ast.StringTerm(k)
	}
	return m
}()

func (d *Decision) applyObject(o ast.Object) error {
	var err error
	ok := false
	o.Foreach(func(k, _ *ast.Term) {
		if s, ok := k.Value.(ast.String); !ok || !decisionKeys[string(s)] {
			err = errors.Join(err, fmt.Errorf("unknown decision key %v", k))
		}
	})
	if err != nil {
		return err
	}
	var allowed ast.Boolean
	if t := o.Get(decisionKeyTerms["allowed"]); t != nil {
		allowed, ok = t.Value.(ast.Boolean)
	}
	if !ok {
		return errors.New("decision.allowed must be a boolean")
	}
	d.Allowed = bool(allowed)
	d.Status, d.Reason = http.StatusOK, ReasonAllowed
	if !d.Allowed {
		d.Status, d.Reason = http.StatusForbidden, ReasonDeniedPolicy
	}
	if t := o.Get(decisionKeyTerms["http_status"]); t != nil {
		n, _ := t.Value.(ast.Number)
		s, isInt := n.Int()
		if !isInt || s < 200 || s > 599 {
			return errors.New("decision.http_status must be a whole number from 200 to 599")
		}
		if d.Allowed && s >= 300 || !d.Allowed && s < 300 {
			return fmt.Errorf("decision.http_status %d contradicts allowed=%v", s, d.Allowed)
		}
		d.Status = s
	}
	if t := o.Get(decisionKeyTerms["reason"]); t != nil {
		s, ok := t.Value.(ast.String)
		if !ok || !validReason(string(s)) {
			return errors.New("decision.reason must be a short code of letters, digits, _ . -")
		}
		d.Reason = string(s)
	}
	if t := o.Get(decisionKeyTerms["body"]); t != nil {
		s, ok := t.Value.(ast.String)
		if !ok {
			return errors.New("decision.body must be a string")
		}
		d.DenyBody = string(s)
	}
	headers, err := headerList(o, "headers")
	if err != nil {
		return err
	}
	if d.Ownership, err = readOwnership(o, d.Allowed); err != nil {
		return err
	}
	if d.Allowed {
		d.UpstreamHeaders = headers
	} else {
		d.DenyHeaders = headers
	}
	if d.ResponseHeaders, err = headerList(o, "response_headers_to_add"); err != nil {
		return err
	}
	if d.RemoveHeaders, err = stringList(o, "request_headers_to_remove", true); err != nil {
		return err
	}
	if d.SetQuery, err = nameValues(o, "query_parameters_to_set", false); err != nil {
		return err
	}
	if d.RemoveQuery, err = stringList(o, "query_parameters_to_remove", false); err != nil {
		return err
	}
	if t := o.Get(decisionKeyTerms["dynamic_metadata"]); t != nil {
		x, err := ast.JSON(t.Value)
		m, ok := x.(map[string]any)
		if err != nil || !ok {
			return errors.New("decision.dynamic_metadata must be an object")
		}
		if d.DynamicMetadata, err = structpb.NewStruct(m); err != nil {
			return fmt.Errorf("decision.dynamic_metadata: %w", err)
		}
	}
	return nil
}

func validReason(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(isUnreserved(c)) {
			return false
		}
	}
	return true
}

// headerList reads an object of name → string (or array of strings).
func headerList(o ast.Object, key string) ([]Header, error) {
	return nameValues(o, key, true)
}

// nameValues reads an object of name → string (or array of strings);
// header names are folded to lower case, query parameter names are not.
func nameValues(o ast.Object, key string, isHeader bool) ([]Header, error) {
	t := o.Get(decisionKeyTerms[key])
	if t == nil {
		return nil, nil
	}
	obj, ok := t.Value.(ast.Object)
	if !ok {
		return nil, fmt.Errorf("decision.%s must be an object", key)
	}
	var out []Header
	var err error
	obj.Foreach(func(k, v *ast.Term) {
		name, ok := k.Value.(ast.String)
		if !ok || !validHeaderName(string(name)) {
			err = fmt.Errorf("decision.%s: %v is not a valid name", key, k)
			return
		}
		n := string(name)
		encode := encodeHeaderValue
		if isHeader {
			n = strings.ToLower(n)
		} else {
			// Envoy writes a parameter into the path as name=value as
			// given: "&", "=" or "#" in either would add or cut parameters.
			n, encode = url.QueryEscape(n), url.QueryEscape
		}
		switch x := v.Value.(type) {
		case ast.String:
			out = append(out, Header{n, encode(string(x))})
		case *ast.Array:
			x.Foreach(func(e *ast.Term) {
				s, ok := e.Value.(ast.String)
				if !ok {
					err = fmt.Errorf("decision.%s.%s: values must be strings", key, n)
					return
				}
				out = append(out, Header{n, encode(string(s))})
			})
		default:
			err = fmt.Errorf("decision.%s.%s: value must be a string or an array of strings", key, n)
		}
	})
	return out, err
}

func stringList(o ast.Object, key string, isHeader bool) ([]string, error) {
	t := o.Get(decisionKeyTerms[key])
	if t == nil {
		return nil, nil
	}
	arr, ok := t.Value.(*ast.Array)
	if !ok {
		return nil, fmt.Errorf("decision.%s must be an array of strings", key)
	}
	var out []string
	var err error
	arr.Foreach(func(e *ast.Term) {
		s, ok := e.Value.(ast.String)
		if !ok {
			err = fmt.Errorf("decision.%s must be an array of strings", key)
			return
		}
		if isHeader {
			s = ast.String(strings.ToLower(string(s)))
		}
		out = append(out, string(s))
	})
	return out, err
}

// validHeaderName accepts an RFC 9110 token.
func validHeaderName(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(isUnreserved(c) || strings.IndexByte("!#$%&'*+^`|", c) >= 0) {
			return false
		}
	}
	return true
}

// encodeHeaderValue percent-encodes every byte that could end a header
// line or is not visible ASCII (and '%' itself), so no value guestgate
// writes can split a header or smuggle another.
func encodeHeaderValue(s string) string {
	clean := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '%' {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	const hexdigits = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= 0x7f || c == '%' {
			b.WriteByte('%')
			b.WriteByte(hexdigits[c>>4])
			b.WriteByte(hexdigits[c&15])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

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

// withoutCookie returns the cookie header without the named cookie.
func withoutCookie(header, name string) string {
	var kept []string
	for _, part := range strings.Split(header, ";") {
		p := strings.TrimSpace(part)
		if k, _, _ := cookiePart(p); k == name || p == "" {
			continue
		}
		kept = append(kept, p)
	}
	return strings.Join(kept, "; ")
}

// querySpellings returns every spelling of the parameter name in the
// query q as written (always name itself): Envoy removes a parameter by
// the name as written, so "to%6Ben" must be named to remove the token.
func querySpellings(q, name string) []string {
	out := []string{name}
	for _, part := range strings.Split(q, "&") {
		k, _, _ := strings.Cut(part, "=")
		if dk, err := url.QueryUnescape(k); err == nil && dk == name && !slices.Contains(out, k) {
			out = append(out, k)
		}
	}
	return out
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
	if cs.format.opaEnvoy {
		finishOPAEnvoy(d)
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
	if d.opaEnvoy != nil {
		return d.opaEnvoyCheckResponse()
	}
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
