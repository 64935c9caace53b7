package ext_authz

import (
	"encoding/json"
	"net/url"
	"slices"
	"strconv"
	"strings"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/open-policy-agent/opa/v1/ast"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/guestgate/guestgate/engine"
	"github.com/guestgate/guestgate/tokens"
)

// The policy's input document, compatible with opa-envoy-plugin's:
// input.attributes (the CheckRequest's attributes with protojson's names),
// parsed_path, parsed_query, parsed_body, truncated_body, version, and
// guestgate's request_id, token and token_error. It is built for one
// policy revision, leaving out what that revision cannot read, and with
// the credential's value redacted unless configured otherwise.

// The top-level parts of the input document, in the order they are built.
const (
	partAttributes = iota
	partParsedPath
	partParsedQuery
	partParsedBody
	partTruncatedBody
	partVersion
	partRequestID
	partToken
	partTokenError
	partSourcePrincipal // opa-envoy format only (opaenvoy.go)
	numParts
)

// partNames are the input's top-level names: the one list of them.
var partNames = [numParts]string{
	partAttributes:    "attributes",
	partParsedPath:    "parsed_path",
	partParsedQuery:   "parsed_query",
	partParsedBody:    "parsed_body",
	partTruncatedBody: "truncated_body",
	partVersion:       "version",
	partRequestID:     "request_id",
	partToken:         "token",
	partTokenError:    "token_error",
	// source_principal is opa-envoy-plugin's copy of
	// attributes.source.principal, when Envoy sent one.
	partSourcePrincipal: "source_principal",
}

// partKeys are the keys of the input document, shared by every request's
// input: terms are never modified once built.
var partKeys = func() (keys [numParts]*ast.Term) {
	for i, name := range partNames {
		keys[i] = ast.StringTerm(name)
	}
	return keys
}()

// attributePaths are the parts of input.attributes left out when the
// policy cannot read them.
var attributePaths = []string{
	"attributes.source", "attributes.destination", "attributes.request", "attributes.request.time", "attributes.request.http",
	"attributes.contextExtensions", "attributes.metadataContext", "attributes.routeMetadataContext", "attributes.tlsSession",
	"attributes.request.http.id", "attributes.request.http.method", "attributes.request.http.headers",
	"attributes.request.http.path", "attributes.request.http.host", "attributes.request.http.scheme",
	"attributes.request.http.query", "attributes.request.http.fragment", "attributes.request.http.size",
	"attributes.request.http.protocol", "attributes.request.http.body",
}

// inputPaths are the parts of the input the document leaves out when the
// policy cannot read them: every top-level part and those of
// input.attributes.
var inputPaths = slices.Concat(partNames[:], attributePaths)

// inputPlan says which parts of the input document one policy revision
// may read; the parts it cannot read are not built.
type inputPlan struct {
	// rev is the revision planned for: the one that evaluates the input
	// (evaluation.go), so the two cannot differ.
	rev    engine.Snapshot
	format inputFormat     // the parts the format has (opaenvoy.go)
	need   map[string]bool // dotted paths of inputPaths
	counts map[string]int  // needed paths directly under a prefix ("" for the top)
	// methodOnly holds input.attributes, built once per common method,
	// when the policy reads nothing of it but the method (as the shipped
	// policy): then it depends on nothing else.
	methodOnly map[string]*ast.Term
	// claims is what of input.token.claims the revision can read.
	claims claimSet
}

func newInputPlan(rev engine.Snapshot, f inputFormat) *inputPlan {
	p := &inputPlan{rev: rev, format: f, need: make(map[string]bool, len(inputPaths)), counts: map[string]int{},
		claims: newClaimSet(rev)}
	for _, path := range inputPaths {
		need := rev.Reads(strings.Split(path, ".")...) && !f.leavesOut(path)
		p.need[path] = need
		if need {
			prefix := ""
			if i := strings.LastIndexByte(path, '.'); i >= 0 {
				prefix = path[:i+1]
			}
			p.counts[prefix]++
		}
	}
	if p.counts["attributes."] == 1 && p.need["attributes.request"] && p.counts["attributes.request."] == 1 &&
		p.need["attributes.request.http"] && p.counts["attributes.request.http."] == 1 && p.need["attributes.request.http.method"] {
		p.methodOnly = map[string]*ast.Term{}
		for _, m := range []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"} {
			r := &request{attrs: &authv3.AttributeContext{}, http: &authv3.AttributeContext_HttpRequest{Method: m}}
			p.methodOnly[m] = ast.NewTerm(r.attributesValue(false, p))
		}
	}
	return p
}

// count is how many of the known paths directly under prefix ("" or
// ending in ".") the policy may read: the size of the object built there.
func (p *inputPlan) count(prefix string) int { return p.counts[prefix] }

// has reports whether the policy may read the input at path; a path not
// in inputPaths is always built.
func (p *inputPlan) has(path string) bool {
	need, known := p.need[path]
	return need || !known
}

// lazy reports whether the document's parts can be built on demand: every
// part but a full input.attributes, whose conversion may fail (and must
// then deny before the policy decides).
func (p *inputPlan) lazy() bool {
	return !p.has("attributes") || p.methodOnly != nil
}

// plan returns the input plan of rev in format f, made once per revision
// and format.
func (c *Checker) plan(rev engine.Snapshot, f inputFormat) *inputPlan {
	if p := c.inputPlan.Load(); p != nil && p.rev == rev && p.format == f {
		return p
	}
	p := newInputPlan(rev, f)
	c.inputPlan.Store(p)
	return p
}

// inputDoc is one check's input document (an engine.Input): the whole
// document, less what the policy cannot read (need), which cannot change
// its answer and is the most expensive part to build (headers). Each part
// is built at most once, when the decision cache's key or the evaluation
// first needs it, so a decision the cache answers builds only the parts
// the policy reads and no document.
type inputDoc struct {
	r              *request
	token          *tokens.Token  // the verified token, nil when none
	tok            *engine.Shared // input.token of token for need
	tokErr, id     string
	showCredential bool
	need           *inputPlan
	parts          [numParts]*ast.Term
	built          [numParts]bool
}

// Get returns the part under key, nil when the document has none there.
func (d *inputDoc) Get(key *ast.Term) *ast.Term {
	s, ok := key.Value.(ast.String)
	if !ok {
		return nil
	}
	for i, name := range partNames {
		if name == string(s) {
			return d.part(i)
		}
	}
	return nil
}

// Value builds the document from its parts, made at once (its members
// in one block) from the parts' keys, which are distinct.
func (d *inputDoc) Value() ast.Value {
	var members [numParts][2]*ast.Term
	n := 0
	for i, k := range partKeys {
		if t := d.part(i); t != nil {
			members[n] = [2]*ast.Term{k, t}
			n++
		}
	}
	return ast.NewObject(members[:n]...)
}

func (d *inputDoc) part(i int) *ast.Term {
	if !d.built[i] {
		d.parts[i], d.built[i] = d.build(i), true
	}
	return d.parts[i]
}

// build makes part i, or nil when the policy cannot read it.
func (d *inputDoc) build(i int) *ast.Term {
	r, need := d.r, d.need
	if !need.has(partNames[i]) {
		return nil
	}
	switch i {
	case partAttributes:
		if t, ok := need.methodOnly[r.method]; ok {
			return t
		}
		if need.format.opaEnvoy {
			return ast.NewTerm(r.opaEnvoyAttributes(d.showCredential))
		}
		return ast.NewTerm(r.attributesValue(d.showCredential, need))
	case partParsedPath:
		segs := make([]*ast.Term, len(r.segments))
		for j, seg := range r.segments {
			segs[j] = ast.StringTerm(seg)
		}
		return ast.ArrayTerm(segs...)
	case partParsedQuery:
		if len(r.params) == 0 {
			return emptyObject
		}
		query := ast.NewObjectWithCapacity(len(r.params))
		for k, vs := range r.params {
			if r.credential.query == k && !d.showCredential {
				vs = []string{redacted}
			}
			terms := make([]*ast.Term, len(vs))
			for j, v := range vs {
				terms[j] = ast.StringTerm(v)
			}
			query.Insert(ast.StringTerm(k), ast.ArrayTerm(terms...))
		}
		return ast.NewTerm(query)
	case partParsedBody:
		if r.body == nil {
			return ast.InternedNullTerm
		}
		return ast.NewTerm(r.body)
	case partTruncatedBody:
		return ast.InternedTerm(r.truncated)
	case partVersion:
		return versionTerm
	case partRequestID:
		return ast.StringTerm(d.id)
	case partToken:
		if d.tok != nil {
			return d.tok.Term()
		}
		return ast.InternedNullTerm
	case partTokenError:
		if d.tok != nil {
			return ast.InternedNullTerm
		}
		return ast.StringTerm(d.tokErr)
	case partSourcePrincipal:
		if p := r.attrs.GetSource().GetPrincipal(); p != "" {
			return ast.StringTerm(p)
		}
	}
	return nil
}

// emptyObject is parsed_query of the many requests without one.
var emptyObject = ast.ObjectTerm()

var versionTerm = ast.ObjectTerm(
	ast.Item(ast.StringTerm("ext_authz"), ast.StringTerm("v3")),
	ast.Item(ast.StringTerm("encoding"), ast.StringTerm("protojson")),
)

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
	path, query, headers := h.GetPath(), h.GetQuery(), r.headers
	if !showCredential && r.credential.present {
		headers, path, query = r.shownHTTP(need.has("attributes.request.http.headers"))
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

// shownHTTP returns the headers (when withHeaders), the path and the query
// with the credential's value redacted.
func (r *request) shownHTTP(withHeaders bool) (headers map[string]string, path, query string) {
	path, query, headers = r.http.GetPath(), r.http.GetQuery(), r.headers
	switch {
	case r.credential.header != "":
		if withHeaders {
			headers = copyWith(headers, r.credential.header, redactedHeader(r.credential.scheme))
		}
	case r.credential.cookie != "":
		if withHeaders {
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
	return headers, path, query
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

func stringMap(m map[string]string) ast.Value {
	obj := ast.NewObject()
	for k, v := range m {
		obj.Insert(ast.StringTerm(k), ast.StringTerm(v))
	}
	return obj
}

func copyWith(m map[string]string, k, v string) map[string]string {
	c := make(map[string]string, len(m))
	for kk, vv := range m {
		c[kk] = vv
	}
	c[k] = v
	return c
}

// redacted replaces the credential's value in input.attributes.
const redacted = "<redacted>"

func redactedHeader(scheme string) string {
	if scheme == "" || scheme == "-" {
		return redacted
	}
	return scheme + " " + redacted
}

// redactCookie replaces the value of every cookie named name with
// <redacted>, leaving the rest of the header as it was written. It works
// on whole cookies: another cookie whose name or value merely contains
// "name=<token>" is not the credential.
func redactCookie(header, name string) string {
	parts := strings.Split(header, ";")
	for i, part := range parts {
		p := strings.TrimLeft(part, " \t")
		if k, _, _ := cookiePart(p); k == name {
			parts[i] = part[:len(part)-len(p)] + name + "=" + redacted
		}
	}
	return strings.Join(parts, ";")
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
