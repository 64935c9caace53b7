package ext_authz

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"unicode"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/guestgate/guestgate/config"
	"github.com/guestgate/guestgate/engine"
)

// MaxDecideRequestBytes bounds the decision endpoint's JSON request: room
// for a body well past the default check.max_body_bytes (64 KiB), which is
// plenty to try a policy out; a larger one is refused with 413.
const MaxDecideRequestBytes = 1 << 20

// DecideRequest is the decision endpoint's request: one HTTP request as a
// proxy would see it, and the token to send with it.
type DecideRequest struct {
	Method  string            `json:"method"`
	Path    string            `json:"path"` // with the query string, if any
	Headers map[string]string `json:"headers"`
	Body    string            `json:"body"`
	// Token is put where the check looks for a credential on this path
	// (the Authorization header with the Bearer scheme, by default).
	Token string `json:"token"`
	// Explain adds why the live (and shadow) policy decided, and the
	// input document they decided on.
	Explain bool `json:"explain"`
}

// DecideResponse is the decision as the endpoint answers it: everything the
// check decided, including the precise reason.
type DecideResponse struct {
	Allowed        bool   `json:"allowed"`
	Status         int    `json:"status"`
	Reason         string `json:"reason"`
	TokenError     string `json:"token_error,omitempty"`
	Kind           string `json:"kind,omitempty"`
	Issuer         string `json:"issuer,omitempty"`
	Subject        string `json:"subject,omitempty"`
	PolicyRevision string `json:"policy_revision"`
	RequestID      string `json:"request_id"`

	// On an allow: what the proxy changes on the way upstream, and the
	// headers the upstream then receives.
	HeadersAdded    []NameValue `json:"headers_added"`
	HeadersRemoved  []string    `json:"headers_removed"`
	UpstreamHeaders []NameValue `json:"upstream_headers"`
	QuerySet        []NameValue `json:"query_parameters_set,omitempty"`
	QueryRemoved    []string    `json:"query_parameters_removed,omitempty"`
	ResponseHeaders []NameValue `json:"response_headers_to_add,omitempty"`

	// Ownership is the policy's ownership effect and what the state store
	// answered (applied, as the check applies it), when it named one.
	Ownership *OwnershipAnswer `json:"ownership,omitempty"`

	// On a deny: what the client receives.
	DeniedHeaders []NameValue `json:"denied_headers,omitempty"`
	DeniedBody    string      `json:"denied_body,omitempty"`

	// Shadow is the shadow policy's answer to the same request, when a
	// shadow policy is configured and a policy decided (it has no shadow
	// of its own).
	Shadow *DecideResponse `json:"shadow,omitempty"`
	// Agrees says whether the shadow gave the live answer (allowed,
	// status and reason), when there is a shadow answer.
	Agrees *bool `json:"agrees,omitempty"`

	// With explain: why each policy decided, the input document, or why
	// an explanation is missing.
	Explanation       *engine.Explanation `json:"explanation,omitempty"`
	ShadowExplanation *engine.Explanation `json:"shadow_explanation,omitempty"`
	Input             any                 `json:"input,omitempty"`
	ExplainError      string              `json:"explain_error,omitempty"`
}

// NameValue is a header or query parameter in the endpoint's answer: the
// decision's own Header, whose fields it encodes.
type NameValue = Header

// DecideHandler is the admin decision endpoint: it takes a DecideRequest as
// JSON, builds the CheckRequest Envoy would send for it, runs Decide exactly
// as the gRPC Check does (same settings, policy, decision log and metrics),
// and answers the decision with its precise reason, beside the shadow
// policy's answer when one is configured, and, asked to explain, why each
// policy decided (Inspect). It belongs on the admin listener only.
func (c *Checker) DecideHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			decideError(w, http.StatusMethodNotAllowed, "use POST with a JSON request")
			return
		}
		if ct, _, _ := strings.Cut(r.Header.Get("Content-Type"), ";"); !strings.EqualFold(strings.TrimSpace(ct), "application/json") {
			decideError(w, http.StatusUnsupportedMediaType, "Content-Type must be application/json")
			return
		}
		doc, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxDecideRequestBytes))
		if err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				decideError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request larger than %d bytes", MaxDecideRequestBytes))
				return
			}
			decideError(w, http.StatusBadRequest, "cannot read the request")
			return
		}
		req, err := parseDecideRequest(doc)
		if err != nil {
			decideError(w, http.StatusBadRequest, err.Error())
			return
		}
		cr, err := c.checkRequestFor(req)
		if err != nil {
			decideError(w, http.StatusBadRequest, err.Error())
			return
		}
		insp := c.Inspect(r.Context(), cr, InspectOptions{Explain: req.Explain, Input: req.Explain})
		out := insp.Response(cr)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(out)
	})
}

func decideError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

// parseDecideRequest is strict: one JSON object, no duplicate keys at any
// depth, no unknown fields, no trailing data.
func parseDecideRequest(doc []byte) (*DecideRequest, error) {
	if _, err := parseJSONValue(doc); err != nil {
		return nil, fmt.Errorf("request is not valid JSON: %v", err)
	}
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.DisallowUnknownFields()
	var req DecideRequest
	if err := dec.Decode(&req); err != nil {
		return nil, fmt.Errorf("request: %v", err)
	}
	// The method goes to the check as it is given: the check decides
	// "post" or "POST " as it would from Envoy (HTTP methods are
	// case-sensitive, RFC 9110 §9.1), not as the "POST" it is not.
	if req.Method == "" {
		return nil, errors.New("method: required")
	}
	if req.Path == "" {
		return nil, errors.New("path: required")
	}
	if len(req.Path) > 8192 {
		return nil, errors.New("path: longer than 8192 bytes")
	}
	if strings.ContainsAny(req.Path, "\r\n") {
		return nil, errors.New("path: contains CR or LF")
	}
	for name, v := range req.Headers {
		if !validHeaderName(name) {
			return nil, fmt.Errorf("headers: %q is not a header name", name)
		}
		if strings.ContainsAny(v, "\r\n\x00") {
			return nil, fmt.Errorf("headers.%s: value contains CR, LF or NUL", name)
		}
	}
	// Spaces and tabs around the token are what the check trims too; any
	// other white space is in the token, and refused here as the check
	// would refuse it in a header.
	req.Token = strings.Trim(req.Token, " \t")
	if strings.ContainsFunc(req.Token, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) {
		return nil, errors.New("token: contains whitespace (give the token alone, without a scheme such as Bearer)")
	}
	return &req, nil
}

// checkRequestFor builds the CheckRequest Envoy would send for req, with
// the token where this path's credential is looked for.
func (c *Checker) checkRequestFor(req *DecideRequest) (*authv3.CheckRequest, error) {
	headers := make(map[string]string, len(req.Headers)+5)
	for name, v := range req.Headers {
		n := strings.ToLower(name)
		if _, dup := headers[n]; dup {
			return nil, fmt.Errorf("headers: %q is given twice (names are case-insensitive)", name)
		}
		headers[n] = v
	}
	path, _, _ := strings.Cut(req.Path, "?")
	if req.Token != "" {
		if err := placeToken(headers, &req.Path, path, req.Token, c.compiled.Load().check.Credentials); err != nil {
			return nil, err
		}
	}
	host := headers["host"]
	if host == "" {
		host = headers[":authority"]
	}
	if host == "" {
		host = "localhost"
	}
	headers[":authority"], headers[":method"], headers[":path"] = host, req.Method, req.Path
	if req.Body != "" && headers["content-length"] == "" {
		headers["content-length"] = strconv.Itoa(len(req.Body))
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method:   req.Method,
			Path:     req.Path,
			Host:     host,
			Scheme:   "http",
			Protocol: "HTTP/1.1",
			Headers:  headers,
			Body:     req.Body,
			Size:     int64(len(req.Body)),
		}},
	}}, nil
}

// placeToken puts the token where the first credential entry matching the
// path says, as readRequest will look for it.
func placeToken(headers map[string]string, fullPath *string, path, token string, creds []config.Credential) error {
	cr := credentialFor(creds, path)
	if cr == nil {
		return errors.New("token: no credential entry (check.credentials) matches this path, so no token would be read")
	}
	switch {
	case cr.Header != "":
		if _, set := headers[cr.Header]; set {
			return fmt.Errorf("token: the request already has a %s header; give the token once", cr.Header)
		}
		v := token
		if cr.Scheme != "" && cr.Scheme != "-" {
			v = cr.Scheme + " " + token
		}
		headers[cr.Header] = v
	case cr.Cookie != "":
		if cookie := headers["cookie"]; cookie != "" {
			headers["cookie"] = cookie + "; " + cr.Cookie + "=" + token
		} else {
			headers["cookie"] = cr.Cookie + "=" + token
		}
	case cr.Query != "":
		sep := "?"
		if strings.Contains(*fullPath, "?") {
			sep = "&"
		}
		*fullPath += sep + url.QueryEscape(cr.Query) + "=" + url.QueryEscape(token)
	}
	return nil
}

// Response is the inspection as the decision endpoint answers it (and
// `guestgate check --format json` prints it): the decision, the shadow's,
// and what else was asked for. cr is the request inspected.
func (insp *Inspection) Response(cr *authv3.CheckRequest) DecideResponse {
	out := decideResponse(insp.Decision, cr)
	if insp.Shadow != nil {
		s := decideResponse(insp.Shadow, cr)
		agrees := insp.Agrees()
		out.Shadow, out.Agrees = &s, &agrees
	}
	out.Explanation, out.ShadowExplanation, out.Input, out.ExplainError = insp.Explanation, insp.ShadowExplanation, insp.Input, insp.ExplainError
	return out
}

// decideResponse turns a decision into the endpoint's answer, with the
// headers the upstream would receive after the proxy applied it.
func decideResponse(d *Decision, cr *authv3.CheckRequest) DecideResponse {
	out := DecideResponse{
		Allowed: d.Allowed, Status: d.Status, Reason: d.Reason, TokenError: d.TokenError,
		Kind: d.Kind, Issuer: d.Issuer, Subject: d.Subject, PolicyRevision: d.Revision, RequestID: d.RequestID,
		HeadersAdded: nonNil(d.UpstreamHeaders), HeadersRemoved: nonNil(d.RemoveHeaders), UpstreamHeaders: []NameValue{},
		QuerySet: d.SetQuery, QueryRemoved: d.RemoveQuery, ResponseHeaders: d.ResponseHeaders,
	}
	if d.Ownership != nil {
		out.Ownership = &OwnershipAnswer{Ownership: *d.Ownership, Outcome: d.OwnershipOutcome}
	}
	if !d.Allowed {
		out.DeniedHeaders, out.DeniedBody = d.DenyHeaders, d.DenyBody
		return out
	}
	up := map[string]string{}
	for name, v := range cr.GetAttributes().GetRequest().GetHttp().GetHeaders() {
		if !strings.HasPrefix(name, ":") {
			up[name] = v
		}
	}
	for _, name := range d.RemoveHeaders {
		delete(up, name)
	}
	for _, h := range d.UpstreamHeaders {
		up[h.Name] = h.Value
	}
	for name, v := range up {
		out.UpstreamHeaders = append(out.UpstreamHeaders, NameValue{name, v})
	}
	sort.Slice(out.UpstreamHeaders, func(i, j int) bool { return out.UpstreamHeaders[i].Name < out.UpstreamHeaders[j].Name })
	return out
}

// nonNil answers an empty list as [] rather than null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
