package ext_authz

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/open-policy-agent/opa/v1/ast"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/guestgate/guestgate/engine"
	"github.com/guestgate/guestgate/internal/memo"
	"github.com/guestgate/guestgate/tokens"
)

// Header is one header (or query parameter) name and value; the decision
// endpoint answers with it as {"name", "value"}.
type Header struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Decision is the outcome of one check, in a form both the gRPC and the HTTP
// check answer from. Every field that reaches a client or upstream is
// already encoded.
type Decision struct {
	Allowed    bool
	Status     int    // HTTP status: 200 on an allow
	Reason     string // the precise reason: decision log and metrics
	TokenError string // input.token_error when no token verified
	RequestID  string
	Revision   string // policy revision that decided ("" if none did)
	Kind       string // token kind, when one verified
	Issuer     string
	Subject    string
	Method     string
	Path       string // without the query string
	Latency    time.Duration

	// On an allow: what changes on the way upstream.
	UpstreamHeaders []Header
	RemoveHeaders   []string
	SetQuery        []Header
	RemoveQuery     []string
	ResponseHeaders []Header // added to the upstream's response

	// On a deny: what the client gets.
	DenyHeaders []Header
	DenyBody    string

	DynamicMetadata *structpb.Struct

	// The wire form of the policy's own headers of a cached decision,
	// built once and shared by every answer of it (read only): the leading
	// entries of UpstreamHeaders and DenyHeaders, when they still match.
	upstreamOpts, denyOpts []*corev3.HeaderValueOption
}

// Decide runs one check: read the request, verify its token, evaluate the
// policy, and shape the answer. It never fails: whatever goes wrong inside
// is a denial with a stable reason.
func (c *Checker) Decide(ctx context.Context, cr *authv3.CheckRequest) *Decision {
	return c.decide(ctx, cr, false)
}

// decide is Decide for both wires. bodyAbsent says the proxy forwards no
// body (nginx auth_request, Traefik forwardAuth): a request that may carry
// one is then shown to the policy as truncated_body, so body-dependent
// rules deny.
func (c *Checker) decide(ctx context.Context, cr *authv3.CheckRequest, bodyAbsent bool) (d *Decision) {
	start := time.Now()
	st := c.settings.Load()
	d = &Decision{RequestID: requestID(cr)}
	defer func() {
		if p := recover(); p != nil {
			c.logger.Error("check panicked; denied", "request_id", d.RequestID, "panic", fmt.Sprint(p))
			d.deny(http.StatusForbidden, ReasonInternal)
		}
		d.Latency = time.Since(start)
		st.finish(d)
		c.observe(st, d)
	}()

	r := readRequest(cr, &st.check, bodyAbsent)
	d.Method, d.Path = r.method, r.path
	if r.problem != "" {
		d.deny(http.StatusBadRequest, r.problem)
		return d
	}

	tok, tokErr := st.verify(ctx, r.rawToken)
	var tokShared *engine.Shared
	if tok != nil {
		if tokShared = tokenInput(tok); tokShared == nil {
			// Claims the policy cannot be shown: not a verified token.
			c.logger.Warn("token claims cannot be shown to the policy; token refused", "request_id", d.RequestID)
			tok, tokErr = nil, tokens.CodeBadClaims
		}
	}
	if tok != nil {
		d.Kind, d.Issuer, d.Subject = string(tok.Kind), tok.Issuer, tok.Subject
	} else {
		d.TokenError = tokErr
	}

	eng := c.engine.Load()
	if eng == nil {
		d.deny(http.StatusServiceUnavailable, ReasonNotReady)
		return d
	}
	// The input is built for one revision and evaluated by it: what that
	// revision cannot read is left out. Its parts are built as the decision
	// cache reads them, and the whole only when the policy is evaluated;
	// but a full input.attributes is built first, as its conversion may
	// fail.
	rev := eng.Current()
	plan := c.plan(rev)
	doc := &inputDoc{r: r, tok: tokShared, tokErr: d.TokenError, id: d.RequestID, showCredential: st.check.ShowCredentialToPolicy, need: plan}
	var res engine.Result
	var err error
	if plan.lazy() {
		res, err = rev.EvalInput(ctx, doc, tokShared)
		if r.problem != "" {
			// No lazy part finds a problem; should one ever, it denies.
			c.logger.Warn("input cannot be built; denied", "request_id", d.RequestID, "detail", r.detail)
			d.deny(http.StatusBadRequest, r.problem)
			return d
		}
	} else {
		input := doc.Value()
		if r.problem != "" {
			// A part of the input the policy reads could not be built.
			c.logger.Warn("input cannot be built; denied", "request_id", d.RequestID, "detail", r.detail)
			d.deny(http.StatusBadRequest, r.problem)
			return d
		}
		res, err = rev.Eval(ctx, input, tokShared)
	}
	d.Revision = res.Revision
	switch {
	case err != nil:
		c.logger.Warn("policy evaluation failed; denied", "request_id", d.RequestID, "revision", res.Revision, "error", err)
		d.deny(http.StatusForbidden, ReasonPolicyError)
		return d
	case !res.Defined || res.Value == nil:
		d.deny(http.StatusForbidden, ReasonUndefined)
		return d
	}
	if tpl, ok := memo.Load[*Decision](res.Memo()); ok {
		// A cached decision, parsed already.
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
		c.logger.Warn("policy decision has the wrong shape; denied", "request_id", d.RequestID, "revision", res.Revision, "error", err)
		*d = Decision{RequestID: d.RequestID, Revision: d.Revision, Kind: d.Kind, Issuer: d.Issuer, Subject: d.Subject,
			TokenError: d.TokenError, Method: d.Method, Path: d.Path}
		d.deny(http.StatusForbidden, ReasonInvalid)
		return d
	}
	if d.Allowed {
		d.upstream(r, st)
	}
	return d
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
	d.upstreamOpts, d.denyOpts = src.upstreamOpts, src.denyOpts
}

func cloneWithRoom(hs []Header, room int) []Header {
	if hs == nil {
		return nil
	}
	return append(make([]Header, 0, len(hs)+room), hs...)
}

func (d *Decision) deny(status int, reason string) {
	d.Allowed, d.Status, d.Reason = false, status, reason
	d.UpstreamHeaders, d.RemoveHeaders, d.SetQuery, d.RemoveQuery, d.ResponseHeaders = nil, nil, nil, nil, nil
	d.upstreamOpts = nil
}

// inputPlan says which parts of the input document one policy revision
// may read; the parts it cannot read are not built.
type inputPlan struct {
	rev    engine.Snapshot
	need   map[string]bool // dotted paths of inputPaths
	counts map[string]int  // needed paths directly under a prefix ("" for the top)
	// methodOnly holds input.attributes, built once per common method,
	// when the policy reads nothing of it but the method (as the shipped
	// policy): then it depends on nothing else.
	methodOnly map[string]*ast.Term
}

// inputPaths are the parts of the input buildInput leaves out when the
// policy cannot read them.
var inputPaths = []string{
	"attributes", "parsed_path", "parsed_query", "parsed_body", "truncated_body", "version", "request_id", "token", "token_error",
	"attributes.source", "attributes.destination", "attributes.request", "attributes.request.time", "attributes.request.http",
	"attributes.contextExtensions", "attributes.metadataContext", "attributes.routeMetadataContext", "attributes.tlsSession",
	"attributes.request.http.id", "attributes.request.http.method", "attributes.request.http.headers",
	"attributes.request.http.path", "attributes.request.http.host", "attributes.request.http.scheme",
	"attributes.request.http.query", "attributes.request.http.fragment", "attributes.request.http.size",
	"attributes.request.http.protocol", "attributes.request.http.body",
}

func newInputPlan(rev engine.Snapshot) *inputPlan {
	p := &inputPlan{rev: rev, need: make(map[string]bool, len(inputPaths)), counts: map[string]int{}}
	for _, path := range inputPaths {
		need := rev.Reads(strings.Split(path, ".")...)
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

// plan returns the input plan of rev, made once per revision.
func (c *Checker) plan(rev engine.Snapshot) *inputPlan {
	if p := c.inputPlan.Load(); p != nil && p.rev == rev {
		return p
	}
	p := newInputPlan(rev)
	c.inputPlan.Store(p)
	return p
}

// Keys of the input document, shared by every request's input: terms are
// never modified once built.
var (
	keyAttributes    = ast.StringTerm("attributes")
	keyParsedPath    = ast.StringTerm("parsed_path")
	keyParsedQuery   = ast.StringTerm("parsed_query")
	keyParsedBody    = ast.StringTerm("parsed_body")
	keyTruncatedBody = ast.StringTerm("truncated_body")
	keyVersion       = ast.StringTerm("version")
	keyRequestID     = ast.StringTerm("request_id")
	keyToken         = ast.StringTerm("token")
	keyTokenError    = ast.StringTerm("token_error")
)

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
	numParts
)

var (
	partKeys  = [numParts]*ast.Term{keyAttributes, keyParsedPath, keyParsedQuery, keyParsedBody, keyTruncatedBody, keyVersion, keyRequestID, keyToken, keyTokenError}
	partNames = [numParts]string{"attributes", "parsed_path", "parsed_query", "parsed_body", "truncated_body", "version", "request_id", "token", "token_error"}
)

// inputDoc is one check's input document (an engine.Input): the whole
// document, less what the policy cannot read (need), which cannot change
// its answer and is the most expensive part to build (headers). Each part
// is built at most once, when the decision cache's key or the evaluation
// first needs it, so a decision the cache answers builds only the parts
// the policy reads and no document.
type inputDoc struct {
	r              *request
	tok            *engine.Shared
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

// Value builds the document from its parts.
func (d *inputDoc) Value() ast.Value {
	input := ast.NewObjectWithCapacity(d.need.count(""))
	for i, k := range partKeys {
		if t := d.part(i); t != nil {
			input.Insert(k, t)
		}
	}
	return input
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
	}
	return nil
}

// lazy reports whether the document's parts can be built on demand: every
// part but a full input.attributes, whose conversion may fail (and must
// then deny before the policy decides).
func (p *inputPlan) lazy() bool {
	return !p.has("attributes") || p.methodOnly != nil
}

// emptyObject is parsed_query of the many requests without one.
var emptyObject = ast.ObjectTerm()

var versionTerm = ast.ObjectTerm(
	ast.Item(ast.StringTerm("ext_authz"), ast.StringTerm("v3")),
	ast.Item(ast.StringTerm("encoding"), ast.StringTerm("protojson")),
)

// tokenInput is input.token for a verified token, built once per cached
// token and kept with it (with its decision-cache encoding). It is nil when
// the claims cannot be made a policy value: shown without them, the token
// would pass a policy that denies on a claim.
func tokenInput(t *tokens.Token) *engine.Shared {
	if s, ok := memo.Load[*engine.Shared](t.Memo()); ok {
		return s
	}
	claims, err := ast.InterfaceToValue(t.Claims)
	if err != nil {
		return nil
	}
	v := ast.NewObject(
		ast.Item(ast.StringTerm("kind"), ast.StringTerm(string(t.Kind))),
		ast.Item(ast.StringTerm("subject"), ast.StringTerm(t.Subject)),
		ast.Item(ast.StringTerm("issuer"), ast.StringTerm(t.Issuer)),
		ast.Item(ast.StringTerm("name"), ast.StringTerm(t.Name)),
		ast.Item(ast.StringTerm("email"), ast.StringTerm(t.Email)),
		ast.Item(ast.StringTerm("expires_at"), ast.IntNumberTerm(int(t.ExpiresAt.Unix()))),
		ast.Item(ast.StringTerm("claims"), ast.NewTerm(claims)),
	)
	s := engine.NewShared(v)
	memo.Store(t.Memo(), s)
	return s
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
	"body": true, "dynamic_metadata": true, "token_error": true,
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
