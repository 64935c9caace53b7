package ext_authz

import (
	"encoding/json"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/open-policy-agent/opa/v1/ast"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/guestgate/guestgate/config"
)

// redacted replaces the credential's value in input.attributes.
const redacted = "<redacted>"

// request is what guestgate reads of a CheckRequest before asking the
// policy: the path checked and split, the credential found, the body parsed.
type request struct {
	attrs   *authv3.AttributeContext
	http    *authv3.AttributeContext_HttpRequest
	method  string
	path    string // without the query
	query   string
	headers map[string]string // lower-case names, duplicates joined by ","

	segments []string   // parsed_path
	params   url.Values // parsed_query

	credential      credential // where the token was looked for
	rawToken        string     // "" when none was found
	body            ast.Value  // parsed_body, nil when none
	truncated       bool
	problem, detail string // a deny reason found before the policy runs
}

// credential is where a token was looked for, so it can be redacted from
// the input and removed from what goes upstream.
type credential struct {
	header, scheme, cookie, query string
	// present says the request carries something in that place, whether
	// or not a token could be taken from it (a query parameter or cookie
	// sent twice, a scheme not followed by a space): it is hidden and
	// removed all the same, since its value is a token nonetheless.
	present bool
}

// Reasons guestgate itself gives, before or instead of the policy.
const (
	ReasonBadPath      = "bad_path"
	ReasonBadQuery     = "bad_query"
	ReasonBadBody      = "bad_body"
	ReasonBadRequest   = "bad_request"
	ReasonUndefined    = "decision_undefined"
	ReasonInvalid      = "decision_invalid"
	ReasonPolicyError  = "policy_error"
	ReasonInternal     = "internal_error"
	ReasonNotReady     = "not_ready"
	ReasonAllowed      = "allowed"
	ReasonDeniedPolicy = "denied"
)

// readRequest checks and takes apart a CheckRequest. It never fails: a
// problem is recorded as the deny reason the check answers with.
func readRequest(cr *authv3.CheckRequest, chk *config.Check, bodyAbsent bool) *request {
	r := &request{attrs: cr.GetAttributes()}
	r.http = r.attrs.GetRequest().GetHttp()
	if r.http == nil {
		r.problem, r.detail = ReasonBadRequest, "no HTTP request attributes"
		return r
	}
	r.method = r.http.GetMethod()
	r.headers = r.http.GetHeaders()
	if len(r.headers) == 0 && r.http.GetHeaderMap() != nil {
		r.headers = joinHeaderMap(r.http.GetHeaderMap().GetHeaders())
	}
	full := r.http.GetPath()
	r.path, r.query, _ = strings.Cut(full, "?")
	// Envoy sends the request target as the path attribute and as the
	// :path header, one value; a policy may read either, so they must agree.
	if hp, ok := r.headers[":path"]; ok && hp != full {
		r.problem, r.detail = ReasonBadPath, "the :path header and the path attribute differ"
		return r
	}
	if why := checkPath(r.path); why != "" {
		r.problem, r.detail = ReasonBadPath, why
		return r
	}
	r.segments = splitPath(r.path)
	if r.query != "" {
		params, err := url.ParseQuery(r.query)
		if err != nil {
			r.problem, r.detail = ReasonBadQuery, "query string does not parse"
			return r
		}
		r.params = params
	}
	r.findCredential(chk)
	if bodyAbsent {
		r.truncated = mayHaveBody(r.method, r.headers)
		return r
	}
	r.readBody(chk.MaxBodyBytes)
	return r
}

// mayHaveBody says whether a request whose body the proxy did not forward
// may have had one: any method but those without body semantics, or a
// request that announced a body.
func mayHaveBody(method string, headers map[string]string) bool {
	switch method {
	case "GET", "HEAD", "OPTIONS", "TRACE":
		cl := headers["content-length"]
		return cl != "" && cl != "0" || headers["transfer-encoding"] != ""
	}
	return true
}

func joinHeaderMap(hs []*corev3.HeaderValue) map[string]string {
	m := make(map[string]string, len(hs))
	for _, h := range hs {
		k := strings.ToLower(h.GetKey())
		v := h.GetValue()
		if v == "" && len(h.GetRawValue()) > 0 {
			v = string(h.GetRawValue())
		}
		if old, ok := m[k]; ok {
			v = old + headerJoiner(k) + v
		}
		m[k] = v
	}
	return m
}

// headerJoiner is what joins the values of a header sent more than once:
// "; " for Cookie, whose values are one list of cookies (RFC 9113 §8.2.3,
// RFC 6265 §5.4), "," for every other (RFC 9110 §5.3).
func headerJoiner(name string) string {
	if strings.EqualFold(name, "cookie") {
		return "; "
	}
	return ","
}

// checkPath refuses every path whose meaning a proxy and an upstream could
// read differently: dot segments, empty segments, backslashes, encoded
// slashes and backslashes, escapes that are not canonical (lower-case
// hex, encoded unreserved characters, control characters, malformed),
// path parameters (";": Tomcat, Jetty and Spring drop ";param" from each
// segment before resolving dot segments, so "/a/..;/b" is "/b" to them and
// "a", "..;", "b" to the policy) and bytes that are not UTF-8 once decoded
// (an overlong %C0%AE is "." to some decoders), and escapes of escapes
// (%252E). A literal ";" is sent as %3B, which every server reads as data.
// Envoy normalises paths before the check; this is the second lock.
func checkPath(p string) string {
	if !strings.HasPrefix(p, "/") {
		return "path does not start with /"
	}
	if strings.Contains(p, "//") {
		return "empty path segment (//)"
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '\\':
			return "backslash in path"
		case c < 0x21 || c == 0x7f || c == '#':
			return "control character, space or # in path"
		case c == ';':
			return "path parameter (;) in path"
		case c == '%':
			if i+2 >= len(p) || !isUpperHex(p[i+1]) || !isUpperHex(p[i+2]) {
				return "malformed or lower-case percent escape"
			}
			b := unhex(p[i+1])<<4 | unhex(p[i+2])
			switch {
			case b == '/' || b == '\\':
				return "encoded slash or backslash"
			case isUnreserved(b):
				return "percent escape of an unreserved character"
			case b < 0x20 || b == 0x7f:
				return "encoded control character"
			case b == '%' && i+4 < len(p) && isHex(p[i+3]) && isHex(p[i+4]):
				// %252E is "." to a server that decodes twice (a proxy
				// that decodes before passing on, then the application).
				return "double percent-encoding"
			}
			i += 2
		}
	}
	for rest, more := p[1:], true; more; {
		var seg string
		seg, rest, more = strings.Cut(rest, "/")
		if seg == "." || seg == ".." {
			return "dot segment in path"
		}
	}
	if d, err := url.PathUnescape(p); err != nil || !utf8.ValidString(d) {
		return "path is not UTF-8 once decoded (overlong or invalid escape)"
	}
	return ""
}

func isHex(c byte) bool { return isUpperHex(c) || 'a' <= c && c <= 'f' }

func isUpperHex(c byte) bool { return '0' <= c && c <= '9' || 'A' <= c && c <= 'F' }

func unhex(c byte) byte {
	if c <= '9' {
		return c - '0'
	}
	return c - 'A' + 10
}

func isUnreserved(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

// splitPath gives parsed_path: the segments of a checked path, decoded.
func splitPath(p string) []string {
	p = strings.TrimPrefix(p, "/")
	if p == "" {
		return []string{}
	}
	segs := strings.Split(p, "/")
	for i, s := range segs {
		if strings.IndexByte(s, '%') >= 0 {
			if d, err := url.PathUnescape(s); err == nil {
				segs[i] = d
			}
		}
	}
	return segs
}

// credentialFor is the first credential entry whose path prefix matches
// path, or nil: the one place a token is looked for on that path.
func credentialFor(creds []config.Credential, path string) *config.Credential {
	for i := range creds {
		c := &creds[i]
		if c.PathPrefix == "" || c.PathPrefix == "/" || strings.HasPrefix(path, c.PathPrefix) {
			return c
		}
	}
	return nil
}

// findCredential looks for the token where the first matching credential
// entry says, and nowhere else.
func (r *request) findCredential(chk *config.Check) {
	c := credentialFor(chk.Credentials, r.path)
	if c == nil {
		return
	}
	r.credential = credential{header: c.Header, scheme: c.Scheme, cookie: c.Cookie, query: c.Query}
	switch {
	case c.Header != "":
		v, ok := r.headers[c.Header]
		r.rawToken = tokenFromHeader(v, c.Scheme)
		r.credential.present = ok && (c.Scheme == "" || c.Scheme == "-" ||
			len(v) >= len(c.Scheme) && strings.EqualFold(v[:len(c.Scheme)], c.Scheme))
	case c.Cookie != "":
		r.rawToken, r.credential.present = cookieValue(r.headers["cookie"], c.Cookie)
	case c.Query != "":
		vs, ok := r.params[c.Query]
		if len(vs) == 1 {
			r.rawToken = vs[0]
		}
		r.credential.present = ok
	}
	r.credential.present = r.credential.present || r.rawToken != ""
}

func tokenFromHeader(v, scheme string) string {
	if scheme == "" || scheme == "-" {
		return strings.TrimSpace(v)
	}
	if len(v) <= len(scheme) || !strings.EqualFold(v[:len(scheme)], scheme) || v[len(scheme)] != ' ' {
		return ""
	}
	return strings.TrimSpace(v[len(scheme)+1:])
}

// cookieValue returns the value of the first cookie named name=, and
// whether the header holds a cookie named name at all (with or without a
// value), in one pass over the header.
func cookieValue(header, name string) (value string, present bool) {
	found := false
	for rest, more := header, true; more; {
		var part string
		part, rest, more = strings.Cut(rest, ";")
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if k != name {
			continue
		}
		present = true
		if ok && !found {
			value, found = v, true
		}
	}
	return value, present
}

// redactCookie replaces the value of every cookie named name with
// <redacted>, leaving the rest of the header as it was written. It works
// on whole cookies: another cookie whose name or value merely contains
// "name=<token>" is not the credential.
func redactCookie(header, name string) string {
	parts := strings.Split(header, ";")
	for i, part := range parts {
		p := strings.TrimLeft(part, " \t")
		if k, _, _ := strings.Cut(strings.TrimSpace(p), "="); k == name {
			parts[i] = part[:len(part)-len(p)] + name + "=" + redacted
		}
	}
	return strings.Join(parts, ";")
}

// withoutCookie returns the cookie header without the named cookie.
func withoutCookie(header, name string) string {
	var kept []string
	for _, part := range strings.Split(header, ";") {
		p := strings.TrimSpace(part)
		if k, _, _ := strings.Cut(p, "="); k == name || p == "" {
			continue
		}
		kept = append(kept, p)
	}
	return strings.Join(kept, "; ")
}

// readBody parses a JSON or form body into parsed_body. A body Envoy cut
// short, one over the bound, or one with a Content-Encoding is not
// parsed: the policy sees
// truncated_body and decides (the shipped policy denies body-dependent
// routes then).
func (r *request) readBody(max int) {
	body := r.http.GetRawBody()
	if len(body) == 0 {
		body = []byte(r.http.GetBody())
	}
	// Parsed only when sent: ParseInt("") allocates its error on every
	// check without the header.
	if v := r.headers["content-length"]; v != "" {
		if cl, err := strconv.ParseInt(v, 10, 64); err == nil && cl > int64(len(body)) {
			r.truncated = true
		}
	}
	if r.headers["x-envoy-auth-partial-body"] == "true" {
		r.truncated = true
	}
	// A compressed body is not the text the upstream reads once it inflates
	// it: parsed as it stands it would show the policy noise. The policy
	// cannot see this body, as if it were cut short.
	if ce := strings.TrimSpace(r.headers["content-encoding"]); ce != "" && !strings.EqualFold(ce, "identity") {
		r.truncated = true
	}
	if len(body) > max {
		r.truncated = true
	}
	if r.truncated || len(body) == 0 {
		return
	}
	ct, _, _ := strings.Cut(r.headers["content-type"], ";")
	ct = strings.ToLower(strings.TrimSpace(ct))
	switch {
	case ct == "application/json" || strings.HasSuffix(ct, "+json"):
		v, err := parseJSONValue(body)
		if err != nil {
			r.problem, r.detail = ReasonBadBody, "JSON body: "+err.Error()
			return
		}
		r.body = v
	case ct == "application/x-www-form-urlencoded":
		vs, err := url.ParseQuery(string(body))
		if err != nil {
			r.problem, r.detail = ReasonBadBody, "form body does not parse"
			return
		}
		r.body = valuesToAST(vs)
	}
}

func valuesToAST(vs url.Values) ast.Value {
	obj := ast.NewObject()
	for k, list := range vs {
		terms := make([]*ast.Term, len(list))
		for i, v := range list {
			terms[i] = ast.StringTerm(v)
		}
		obj.Insert(ast.StringTerm(k), ast.ArrayTerm(terms...))
	}
	return obj
}

// keyTerms are the object keys of input.attributes, made once and shared
// by every request's input (terms are never modified once built): the last
// names of attributePaths and the keys of a peer.
var keyTerms = func() map[string]*ast.Term {
	m := map[string]*ast.Term{}
	for _, p := range attributePaths {
		k := p[strings.LastIndexByte(p, '.')+1:]
		m[k] = ast.StringTerm(k)
	}
	for _, k := range []string{"address", "socketAddress", "portValue", "service", "principal", "certificate", "labels"} {
		m[k] = ast.StringTerm(k)
	}
	return m
}()

func keyTerm(k string) *ast.Term {
	if t, ok := keyTerms[k]; ok {
		return t
	}
	return ast.StringTerm(k)
}

// attributesValue builds input.attributes directly as an ast.Value with
// protojson's field names, as opa-envoy-plugin's policies expect, with the
// credential's value redacted unless showCredential. Parts the policy
// cannot read (need) are left out.
func (r *request) attributesValue(showCredential bool, need *inputPlan) ast.Value {
	a := r.attrs
	obj := ast.NewObjectWithCapacity(need.count("attributes."))
	if need.has("attributes.source") {
		if p := peerValue(a.GetSource()); p != nil {
			obj.Insert(keyTerm("source"), ast.NewTerm(p))
		}
	}
	if need.has("attributes.destination") {
		if p := peerValue(a.GetDestination()); p != nil {
			obj.Insert(keyTerm("destination"), ast.NewTerm(p))
		}
	}
	if need.has("attributes.request") {
		req := ast.NewObjectWithCapacity(need.count("attributes.request."))
		if t := a.GetRequest().GetTime(); t != nil && need.has("attributes.request.time") {
			req.Insert(keyTerm("time"), ast.StringTerm(t.AsTime().UTC().Format("2006-01-02T15:04:05.999999999Z")))
		}
		if need.has("attributes.request.http") {
			req.Insert(keyTerm("http"), ast.NewTerm(r.httpValue(showCredential, need)))
		}
		obj.Insert(keyTerm("request"), ast.NewTerm(req))
	}
	if ce := a.GetContextExtensions(); len(ce) > 0 && need.has("attributes.contextExtensions") {
		obj.Insert(keyTerm("contextExtensions"), ast.NewTerm(stringMap(ce)))
	}
	// Rare, open-ended parts go through protojson; they are small or absent.
	for _, x := range [...]struct {
		name, path string
		m          proto.Message
	}{
		{"metadataContext", "attributes.metadataContext", a.GetMetadataContext()},
		{"routeMetadataContext", "attributes.routeMetadataContext", a.GetRouteMetadataContext()},
		{"tlsSession", "attributes.tlsSession", a.GetTlsSession()},
	} {
		if !need.has(x.path) {
			continue
		}
		v, err := protoValue(x.m)
		if err != nil {
			// Left out, it would read as absent to the policy: deny.
			r.problem, r.detail = ReasonBadRequest, x.name+" cannot be shown to the policy: "+err.Error()
			continue
		}
		if v != nil {
			obj.Insert(keyTerm(x.name), ast.NewTerm(v))
		}
	}
	return obj
}

func (r *request) httpValue(showCredential bool, need *inputPlan) ast.Value {
	h := r.http
	const prefix = "attributes.request.http."
	obj := ast.NewObjectWithCapacity(need.count(prefix))
	put := func(k, v string) {
		if v != "" && need.has(prefix+k) {
			obj.Insert(keyTerm(k), ast.StringTerm(v))
		}
	}
	path, query := h.GetPath(), h.GetQuery()
	headers := r.headers
	if !showCredential && r.credential.present {
		switch {
		case r.credential.header != "":
			if need.has("attributes.request.http.headers") {
				headers = copyWith(headers, r.credential.header, redactedHeader(r.credential.scheme))
			}
		case r.credential.cookie != "":
			if need.has("attributes.request.http.headers") {
				headers = copyWith(headers, "cookie", redactCookie(headers["cookie"], r.credential.cookie))
			}
		case r.credential.query != "":
			// The query appears in the path, the query and Envoy's :path
			// (and x-envoy-original-path after a rewrite), each as the
			// client spelled it: a token may be percent-encoded there, so
			// the parameter is found by its decoded name, not the token text.
			name := r.credential.query
			path, query = redactPathQuery(path, name), redactQuery(query, name)
			for _, k := range []string{":path", "x-envoy-original-path"} {
				if v, ok := headers[k]; ok {
					headers = copyWith(headers, k, redactPathQuery(v, name))
				}
			}
		}
	}
	put("id", h.GetId())
	put("method", h.GetMethod())
	if need.has("attributes.request.http.headers") {
		obj.Insert(keyTerm("headers"), ast.NewTerm(stringMap(headers)))
	}
	put("path", path)
	put("host", h.GetHost())
	put("scheme", h.GetScheme())
	put("query", query)
	put("fragment", h.GetFragment())
	if h.GetSize() != 0 && need.has("attributes.request.http.size") {
		obj.Insert(keyTerm("size"), ast.StringTerm(strconv.FormatInt(h.GetSize(), 10)))
	}
	put("protocol", h.GetProtocol())
	put("body", h.GetBody())
	return obj
}

func redactedHeader(scheme string) string {
	if scheme == "" || scheme == "-" {
		return redacted
	}
	return scheme + " " + redacted
}

// redactPathQuery redacts the query parameter name in the query part of
// a path.
func redactPathQuery(p, name string) string {
	before, q, ok := strings.Cut(p, "?")
	if !ok {
		return p
	}
	return before + "?" + redactQuery(q, name)
}

// redactQuery replaces the value of every parameter whose decoded name is
// name with <redacted>, leaving the rest of the query as it was written.
func redactQuery(q, name string) string {
	if q == "" {
		return q
	}
	parts := strings.Split(q, "&")
	for i, part := range parts {
		k, _, _ := strings.Cut(part, "=")
		if dk, err := url.QueryUnescape(k); err == nil && dk == name || k == name {
			parts[i] = k + "=" + redacted
		}
	}
	return strings.Join(parts, "&")
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

func copyWith(m map[string]string, k, v string) map[string]string {
	c := make(map[string]string, len(m))
	for kk, vv := range m {
		c[kk] = vv
	}
	c[k] = v
	return c
}

func stringMap(m map[string]string) ast.Value {
	obj := ast.NewObject()
	for k, v := range m {
		obj.Insert(ast.StringTerm(k), ast.StringTerm(v))
	}
	return obj
}

func peerValue(p *authv3.AttributeContext_Peer) ast.Value {
	if p == nil {
		return nil
	}
	obj := ast.NewObject()
	if sa := p.GetAddress().GetSocketAddress(); sa != nil {
		s := ast.NewObject(
			ast.Item(keyTerm("address"), ast.StringTerm(sa.GetAddress())),
			ast.Item(keyTerm("portValue"), ast.IntNumberTerm(int(sa.GetPortValue()))),
		)
		obj.Insert(keyTerm("address"), ast.ObjectTerm(ast.Item(keyTerm("socketAddress"), ast.NewTerm(s))))
	}
	if v := p.GetService(); v != "" {
		obj.Insert(keyTerm("service"), ast.StringTerm(v))
	}
	if v := p.GetPrincipal(); v != "" {
		obj.Insert(keyTerm("principal"), ast.StringTerm(v))
	}
	if v := p.GetCertificate(); v != "" {
		obj.Insert(keyTerm("certificate"), ast.StringTerm(v))
	}
	if l := p.GetLabels(); len(l) > 0 {
		obj.Insert(keyTerm("labels"), ast.NewTerm(stringMap(l)))
	}
	return obj
}

// protoValue renders a rarely used message as protojson would, or nil when
// it is empty. It fails on a message protojson refuses (a NaN number).
func protoValue(m proto.Message) (ast.Value, error) {
	if m == nil || !m.ProtoReflect().IsValid() || proto.Size(m) == 0 {
		return nil, nil
	}
	b, err := protojson.Marshal(m)
	if err != nil {
		return nil, err
	}
	var x any
	if err := json.Unmarshal(b, &x); err != nil {
		return nil, err
	}
	return ast.InterfaceToValue(x)
}
