package ext_authz

import (
	"bytes"
	cryptorand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/util"

	"github.com/guestgate/guestgate/config"
)

// requestID takes Envoy's x-request-id when it is a plain id, else makes one.
func requestID(cr *authv3.CheckRequest) string {
	if id := cr.GetAttributes().GetRequest().GetHttp().GetHeaders()["x-request-id"]; validRequestID(id) {
		return id
	}
	return newRequestID()
}

func newRequestID() string {
	var b [12]byte
	_, _ = cryptorand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func validRequestID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	return strings.Trim(id, "0123456789abcdefABCDEF-") == ""
}

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
	// A method is a token (RFC 9110 §9.1): no proxy sends " POST" or
	// "PO ST", so no policy is asked about one.
	if !validHeaderName(r.method) {
		r.problem, r.detail = ReasonBadRequest, "the method is not an HTTP method"
		return r
	}
	// Envoy sends the request target as the path attribute and as the
	// :path header, one value; a policy may read either, so they must agree.
	if hp, ok := r.headers[":path"]; ok && hp != full {
		r.problem, r.detail = ReasonBadPath, "the :path header and the path attribute differ"
		return r
	}
	opaEnvoy := chk.OPAEnvoy()
	if why := checkPath(r.path); why != "" && !(opaEnvoy && r.path == "") {
		r.problem, r.detail = ReasonBadPath, why
		return r
	}
	r.segments = splitPath(r.path)
	if opaEnvoy {
		r.segments = opaEnvoySegments(r.segments)
	}
	if r.query != "" {
		params, err := url.ParseQuery(r.query)
		if err != nil {
			r.problem, r.detail = ReasonBadQuery, "query string does not parse"
			return r
		}
		r.params = params
	}
	r.findCredential(chk)
	switch {
	case bodyAbsent:
		r.truncated = mayHaveBody(r.method, r.headers)
	case chk.SkipRequestBodyParse:
		// No body is shown (opa-envoy's input has neither part then).
		r.truncated = !opaEnvoy
	case opaEnvoy:
		r.readBodyOPAEnvoy(chk)
	default:
		r.readBody(chk)
	}
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
		return trimOWS(v)
	}
	if len(v) <= len(scheme) || !strings.EqualFold(v[:len(scheme)], scheme) || v[len(scheme)] != ' ' {
		return ""
	}
	return trimOWS(v[len(scheme)+1:])
}

// cookiePart splits one ";"-separated part of a Cookie header into its
// name, white space trimmed as any cookie parser trims it (so whatever one
// could take for the credential is found, hidden and removed: cookieValue,
// redactCookie and withoutCookie all read names here), and its value, of
// which only spaces and tabs are trimmed (trimOWS).
func cookiePart(part string) (name, value string, hasValue bool) {
	k, v, ok := strings.Cut(part, "=")
	return strings.TrimSpace(k), trimOWS(v), ok
}

// trimOWS trims the white space a header value may have around it, spaces
// and tabs (RFC 9110 §5.6.3), and nothing else: a CR, LF, NUL, vertical
// tab or Unicode space next to a token is not white space a proxy adds but
// part of the value, which then is no token (malformed), rather than
// trimmed into one by strings.TrimSpace.
func trimOWS(v string) string {
	return strings.Trim(v, " \t")
}

// cookieValue returns the value of the first cookie named name=, and
// whether the header holds a cookie named name at all (with or without a
// value), in one pass over the header.
func cookieValue(header, name string) (value string, present bool) {
	found := false
	for rest, more := header, true; more; {
		var part string
		part, rest, more = strings.Cut(rest, ";")
		k, v, ok := cookiePart(part)
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

// readBody parses a JSON or form body into parsed_body. A body Envoy cut
// short, one over the bound, or one with a Content-Encoding is not
// parsed: the policy sees truncated_body and decides (the shipped policy
// denies body-dependent routes then).
//
// A JSON or form body is text: one that is not UTF-8 is bad_body, whether
// or not it is parsed (bodyText). A decoder that drops or repairs the bytes
// it cannot read would otherwise show the upstream another field name or
// value than the policy saw.
func (r *request) readBody(chk *config.Check) {
	// cost: converted here, a short body stays on the stack.
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
	encoded := false
	if ce := strings.TrimSpace(r.headers["content-encoding"]); ce != "" && !strings.EqualFold(ce, "identity") {
		r.truncated, encoded = true, true
	}
	if len(body) > chk.MaxBodyBytes {
		r.truncated = true
	}
	if len(body) == 0 {
		return
	}
	ct, _, _ := strings.Cut(r.headers["content-type"], ";")
	ct = strings.ToLower(strings.TrimSpace(ct))
	kind := bodyOther
	switch {
	case ct == "application/json" || strings.HasSuffix(ct, "+json"):
		kind = bodyJSON
	case ct == "application/x-www-form-urlencoded":
		kind = bodyForm
	case ct == "multipart/form-data":
		kind = bodyMultipart
	}
	if p, ok := r.parseBody(kind, body, encoded); ok {
		r.takeBody(p, chk, p.detail)
	}
}

// bodyKind is the syntax a body's Content-Type names, of those parsed.
type bodyKind int

const (
	bodyOther bodyKind = iota // not parsed
	bodyJSON
	bodyForm
	bodyMultipart
)

// parseBody is the one parser of a body of kind, in both input formats,
// once the caller has set r.truncated: a JSON or form body that is not
// UTF-8 is refused (unless encoded: it is not the upstream's text, and is
// truncated), and a truncated body, or one of another kind, is not parsed.
// ok says there is a parse to take.
func (r *request) parseBody(kind bodyKind, body []byte, encoded bool) (p bodyParse, ok bool) {
	if (kind == bodyJSON || kind == bodyForm) && !encoded && !bodyText(body, r.truncated) {
		r.problem, r.detail = ReasonBadBody, "body is not UTF-8"
		return p, false
	}
	if r.truncated {
		return p, false
	}
	switch kind {
	case bodyJSON:
		return parseJSONBody(body), true
	case bodyForm:
		return parseFormBody(body), true
	case bodyMultipart:
		return parseMultipartBody(body, r.headers["content-type"]), true
	}
	return p, false
}

// bodyParse is what parsing a body gave: its value, or why not.
type bodyParse struct {
	value ast.Value
	// detail says why the body was not parsed ("" when it was); syntax
	// says that was its syntax (check.skip_unparsable_body may decide
	// without it), not a refusal of guestgate's (not UTF-8, a duplicate
	// key); hidden says the body is sound but cannot be shown (a part
	// bound, a file that is not text): the policy sees it as cut short.
	detail         string
	syntax, hidden bool
	// syntaxErr is the parser's own error (opa-envoy-plugin's message).
	syntaxErr string
}

// takeBody puts a parsed body into parsed_body or records why not; detail
// is the deny's detail for a body that is refused.
func (r *request) takeBody(p bodyParse, chk *config.Check, detail string) {
	switch {
	case p.detail == "":
		r.body = p.value
	case p.hidden || p.syntax && chk.SkipUnparsableBody:
		r.truncated = true
	default:
		r.problem, r.detail = ReasonBadBody, detail
	}
}

func parseJSONBody(body []byte) bodyParse {
	v, err := parseJSONValue(body)
	if err != nil {
		// What the standard reader refuses too is syntax; the rest
		// (duplicate keys, lone surrogates, depth) guestgate's refusal.
		p := bodyParse{detail: "JSON body: " + err.Error(), syntax: !json.Valid(body)}
		var x any
		// A copy: body would otherwise escape, and every body with it.
		if e := util.UnmarshalJSON(bytes.Clone(body), &x); e != nil {
			p.syntaxErr = e.Error()
		}
		return p
	}
	return bodyParse{value: v}
}

func parseFormBody(body []byte) bodyParse {
	if !formShaped(body) {
		return bodyParse{detail: "form body is not name=value pairs of URL-encoded text (a JSON text sent as a form?)", syntax: true}
	}
	vs, err := url.ParseQuery(string(body))
	if err != nil {
		return bodyParse{detail: "form body does not parse", syntax: true, syntaxErr: err.Error()}
	}
	// Percent escapes decode to bytes: "%C0%AE" is an overlong "."
	// once decoded, as in a path.
	for k, list := range vs {
		if !utf8.ValidString(k) || slices.ContainsFunc(list, func(v string) bool { return !utf8.ValidString(v) }) {
			return bodyParse{detail: "form body is not UTF-8 once decoded"}
		}
	}
	return bodyParse{value: valuesToAST(vs)}
}

// formShaped says whether body has the shape of what a form encoder sends
// (WHATWG URL §5.2, url.Values.Encode, urllib.parse.urlencode): pairs
// joined by "&", each a name, "=" and a value, of characters a query may
// hold unencoded (RFC 3986 §3.4) but the delimiters, and percent escapes
// for every other byte. A body declared as a form but written otherwise
// is something else under the wrong name: a JSON text's "{", "[" and "\""
// or its bare true, 1 or null, text with spaces, newlines or bytes beyond
// ASCII. A form parser makes noise of it while an upstream that reads the
// body as what it is (many take JSON whatever the Content-Type says)
// finds fields the policy never saw. ";" is not a separator here (some
// parsers take it for one), so it must be encoded too.
func formShaped(body []byte) bool {
	sawEquals := false // in the pair read so far
	for i := 0; i < len(body); i++ {
		switch c := body[i]; {
		case c == '&':
			if !sawEquals {
				return false
			}
			sawEquals = false
		case c == '=':
			sawEquals = true
		case c == '%':
			if i+2 >= len(body) || !isHex(body[i+1]) || !isHex(body[i+2]) {
				return false
			}
			i += 2
		case isUnreserved(c) || strings.IndexByte("!$'()*+,:@/?", c) >= 0:
		default:
			return false
		}
	}
	return sawEquals
}

// bodyText says whether body is UTF-8. A body cut short (cut says so) may
// end inside a character: its last, incomplete sequence passes when some
// continuation could complete it.
func bodyText(body []byte, cut bool) bool {
	if utf8.Valid(body) {
		return true
	}
	if !cut {
		return false
	}
	// The start of the last character: at most three bytes back.
	start := len(body) - 1
	for start > 0 && start > len(body)-utf8.UTFMax && !utf8.RuneStart(body[start]) {
		start--
	}
	tail := body[start:]
	if utf8.FullRune(tail) || !utf8.Valid(body[:start]) {
		return false
	}
	// Complete the tail with the least continuation bytes its lead allows
	// (the second byte of E0, ED, F0 and F4 sequences is narrower), and see
	// whether that is a character.
	second := byte(0x80)
	switch tail[0] {
	case 0xe0:
		second = 0xa0
	case 0xf0:
		second = 0x90
	}
	full := append([]byte(nil), tail...)
	for len(full) < utf8.UTFMax && !utf8.FullRune(full) {
		if len(full) == 1 {
			full = append(full, second)
		} else {
			full = append(full, 0x80)
		}
	}
	return utf8.Valid(full)
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
