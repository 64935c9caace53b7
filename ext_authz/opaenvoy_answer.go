package ext_authz

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/google/uuid"
	"github.com/open-policy-agent/opa/v1/ast"
	"google.golang.org/genproto/googleapis/rpc/code"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/guestgate/guestgate/engine"
	"github.com/guestgate/guestgate/internal/memo"
)

// The answers of the opa-envoy format (opaenvoy.go has its input): the
// decision read as opa-envoy-plugin reads it, with its error messages, and
// the CheckResponse it gives. A decision it cannot read, a gRPC error
// (Unknown) there, is here the 403 denial Envoy makes of that error; nothing
// guestgate adds for its own format is added (the request id, a JSON deny
// body, a content type, WWW-Authenticate); a boolean decision has no
// http_response; every answer of a decision carries decision_id in its
// dynamic metadata; check.dry_run allows what the policy denied.

// opaEnvoyAnswer is how a check answers in the opa-envoy format.
type opaEnvoyAnswer struct {
	decided  bool   // the policy decided: decision_id, dry-run
	object   bool   // an object decision: an http_response, even an empty one
	grpcErr  string // a gRPC error (Unknown) with this message instead
	parseErr string // opa-envoy's request_parse_error: a 400 with it as body
	// What the policy answered, so that a denial guestgate makes after it
	// (a channel's ownership, an internal error) is told from it.
	allowed    bool
	reason     string
	dryRun     bool
	decisionID string
}

// opaEnvoyTemplate is a cached decision read in the opa-envoy format: a
// type of its own, so that a decision read in guestgate's format (cached
// before the format changed) is never taken for one.
type opaEnvoyTemplate struct{ d Decision }

// respondOPAEnvoy is respond in the opa-envoy format.
func (d *Decision) respondOPAEnvoy(res engine.Result, r *request, cs *compiled) error {
	if tpl, ok := memo.Load[*opaEnvoyTemplate](res.Memo()); ok {
		d.answer(&tpl.d)
	} else if err := d.applyOPAEnvoy(res.Value); err != nil {
		*d = Decision{RequestID: d.RequestID, Revision: d.Revision, Kind: d.Kind, Issuer: d.Issuer, Subject: d.Subject,
			TokenError: d.TokenError, Method: d.Method, Path: d.Path}
		d.deny(http.StatusForbidden, ReasonInvalid)
		d.opaEnvoy = &opaEnvoyAnswer{grpcErr: err.Error()}
		return err
	} else if res.Cached() {
		tpl := &opaEnvoyTemplate{}
		tpl.d.answer(d)
		tpl.d.upstreamOpts = headerOptions(tpl.d.UpstreamHeaders)
		memo.Store(res.Memo(), tpl)
	}
	a := *d.opaEnvoy // a cached decision's is shared
	a.decisionID, a.dryRun = uuid.NewString(), cs.check.DryRun
	d.opaEnvoy = &a
	if d.Allowed {
		d.upstreamOPAEnvoy(r, cs)
	}
	return nil
}

// finishOPAEnvoy completes a denial guestgate made itself, before or
// after the policy: a request it cannot read is opa-envoy's
// request_parse_error, an undefined decision or a failed evaluation a gRPC
// error; any other (not ready, state unavailable, ownership) is a denial
// with its status and nothing else.
func finishOPAEnvoy(d *Decision) {
	if a := d.opaEnvoy; a != nil && (a.grpcErr != "" || a.parseErr != "" || a.allowed == d.Allowed && a.reason == d.Reason) {
		return // the policy's own answer, or a request refused (refusedOPAEnvoy)
	}
	a := &opaEnvoyAnswer{}
	switch d.Reason {
	case ReasonBadPath, ReasonBadQuery, ReasonBadBody, ReasonBadRequest:
		a.parseErr = "request_parse_error: " + d.Reason
	case ReasonUndefined:
		a.grpcErr = "undefined decision"
	case ReasonPolicyError:
		a.grpcErr = "envoyauth_eval_error: policy evaluation failed"
	}
	d.opaEnvoy = a
}

// refusedOPAEnvoy records, in the opa-envoy format, why guestgate refused
// the request before the policy: opa-envoy's request_parse_error.
func (d *Decision) refusedOPAEnvoy(f inputFormat, detail string) {
	if f.opaEnvoy {
		d.opaEnvoy = &opaEnvoyAnswer{parseErr: "request_parse_error: " + detail}
	}
}

func (d *Decision) setAllowed(allowed bool) {
	d.Allowed, d.Status, d.Reason = allowed, http.StatusOK, ReasonAllowed
	if !allowed {
		d.Status, d.Reason = http.StatusForbidden, ReasonDeniedPolicy
	}
}

// applyOPAEnvoy reads the decision as opa-envoy-plugin reads it, in its
// order and with its messages, ignoring keys it does not know but
// guestgate's ownership effect (ownership.go). guestgate's
// refusals come on top: a header or parameter name that is not a token is
// refused, values are encoded as in guestgate's format.
func (d *Decision) applyOPAEnvoy(v ast.Value) error {
	x, err := ast.JSON(v)
	if err != nil {
		return fmt.Errorf("failed to get response status: %w", err)
	}
	a := &opaEnvoyAnswer{decided: true}
	d.opaEnvoy = a
	switch dec := x.(type) {
	case bool:
		d.setAllowed(dec)
	case map[string]any:
		if err := d.applyOPAEnvoyObject(dec); err != nil {
			return err
		}
		// guestgate's ownership member is applied in this format too: an
		// effect the policy names is never ignored into an allow.
		if o, ok := v.(ast.Object); ok {
			if d.Ownership, err = readOwnership(o, d.Allowed); err != nil {
				return fmt.Errorf("failed to get ownership: %w", err)
			}
		}
		a.object = true
	default:
		return fmt.Errorf("failed to get response status: illegal value for policy evaluation result: %T", x)
	}
	a.allowed, a.reason = d.Allowed, d.Reason
	return nil
}

func (d *Decision) applyOPAEnvoyObject(dec map[string]any) error {
	val, ok := dec["allowed"]
	if !ok {
		return errors.New(`failed to get response status: unable to determine evaluation result due to missing "allowed" key`)
	}
	allowed, ok := val.(bool)
	if !ok {
		return fmt.Errorf("failed to get response status: type assertion error, expected allowed to be of type 'boolean' but got '%T'", val)
	}
	d.setAllowed(allowed)
	headers, err := oeHeaders(dec, "headers")
	if err != nil {
		return fmt.Errorf("failed to get response headers: %w", err)
	}
	if md, ok := dec["dynamic_metadata"]; ok {
		m, ok := md.(map[string]any)
		if !ok {
			return fmt.Errorf("failed to get dynamic metadata: type assertion error, expected dynamic_metadata to be of type 'object' but got '%T'", md)
		}
		if d.DynamicMetadata, err = structpb.NewStruct(m); err != nil {
			return fmt.Errorf("failed to get dynamic metadata: %w", err)
		}
	}
	if s, ok := dec["reason"].(string); ok && validReason(s) {
		d.Reason = s // guestgate's: the decision log's and the metrics' reason
	}
	if allowed {
		d.UpstreamHeaders = headers
		if d.RemoveHeaders, err = oeStrings(dec, "request_headers_to_remove", true); err != nil {
			return fmt.Errorf("failed to get request headers to remove: %w", err)
		}
		if d.ResponseHeaders, err = oeHeaders(dec, "response_headers_to_add"); err != nil {
			return fmt.Errorf("failed to get response headers to send to client: %w", err)
		}
		if d.RemoveQuery, err = oeStrings(dec, "query_parameters_to_remove", false); err != nil {
			return fmt.Errorf("failed to get request query parameters to remove: %w", err)
		}
		if d.SetQuery, err = oeQuery(dec); err != nil {
			return fmt.Errorf("failed to get request query parameters to set: %w", err)
		}
		return nil
	}
	d.DenyHeaders = headers
	if body, ok := dec["body"]; ok {
		s, ok := body.(string)
		if !ok {
			return fmt.Errorf("failed to get response body: type assertion error, expected body to be of type 'string' but got '%T'", body)
		}
		d.DenyBody = s
	}
	if val, ok := dec["http_status"]; ok {
		n, ok := val.(json.Number)
		if !ok {
			return fmt.Errorf("failed to get response http status: type assertion error, expected http_status to be of type 'number' but got '%T'", val)
		}
		s, err := n.Int64()
		if err != nil {
			return fmt.Errorf("failed to get response http status: error converting JSON number to int: %v", err)
		}
		if _, known := typev3.StatusCode_name[int32(s)]; http.StatusText(int(s)) == "" || !known {
			return fmt.Errorf("failed to get response http status: invalid HTTP status code %v", s)
		}
		d.Status = int(s)
	}
	return nil
}

// oeHeaders reads headers as opa-envoy-plugin does: an object of name →
// string or array of strings, or an array of such objects.
func oeHeaders(dec map[string]any, field string) ([]Header, error) {
	val, ok := dec[field]
	if !ok {
		return nil, nil
	}
	var out []Header
	add := func(m map[string]any) error {
		for _, key := range slices.Sorted(maps.Keys(m)) {
			if !validHeaderName(key) {
				return fmt.Errorf("%q is not a valid header name", key)
			}
			name := strings.ToLower(key)
			switch v := m[key].(type) {
			case string:
				out = append(out, Header{name, oeHeaderValue(v)})
			case []any:
				for _, e := range v {
					s, ok := e.(string)
					if !ok {
						return fmt.Errorf("invalid value type %T for header '%s'", e, key)
					}
					out = append(out, Header{name, oeHeaderValue(s)})
				}
			default:
				return fmt.Errorf("type assertion error for header '%s'", key)
			}
		}
		return nil
	}
	switch v := val.(type) {
	case map[string]any:
		return out, add(v)
	case []any:
		for _, e := range v {
			m, ok := e.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("type assertion error, expected headers to be of type 'object' but got '%T'", e)
			}
			if err := add(m); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("type assertion error, expected headers to be of type 'object' but got '%T'", val)
}

// oeHeaderValue encodes, as encodeHeaderValue, every byte that could end
// a header line or is not visible ASCII, but leaves "%" as it is: a
// policy's URL (a redirect's location) keeps its escapes, as opa-envoy
// sends it. A value with nothing to encode is the policy's exactly.
func oeHeaderValue(s string) string {
	if !strings.Contains(s, "%") {
		return encodeHeaderValue(s)
	}
	parts := strings.Split(s, "%")
	for i, p := range parts {
		parts[i] = encodeHeaderValue(p)
	}
	return strings.Join(parts, "%")
}

// oeStrings reads a list of names; header names are folded to lower case
// (Envoy's are case-insensitive), so guestgate's own removals are not
// listed twice.
func oeStrings(dec map[string]any, field string, isHeader bool) ([]string, error) {
	val, ok := dec[field]
	if !ok {
		return nil, nil
	}
	list, ok := val.([]any)
	if !ok {
		return nil, fmt.Errorf("type assertion error, expected %s to be of type '[]string' but got '%T'", field, val)
	}
	out := make([]string, len(list))
	for i, e := range list {
		s, ok := e.(string)
		if !ok {
			return nil, fmt.Errorf("type assertion error, expected %s value to be of type 'string' but got '%T'", field, e)
		}
		if isHeader {
			s = strings.ToLower(s)
		}
		out[i] = s
	}
	return out, nil
}

// oeQuery reads query_parameters_to_set; names and values are
// URL-encoded as in guestgate's format ("&" or "=" would add parameters).
func oeQuery(dec map[string]any) ([]Header, error) {
	val, ok := dec["query_parameters_to_set"]
	if !ok {
		return nil, nil
	}
	params, ok := val.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("type assertion error, expected query_parameters_to_set to be a map but got '%T'", val)
	}
	var out []Header
	for _, key := range slices.Sorted(maps.Keys(params)) {
		if !validHeaderName(key) {
			return nil, fmt.Errorf("%q is not a valid parameter name", key)
		}
		name := url.QueryEscape(key)
		switch v := params[key].(type) {
		case string:
			out = append(out, Header{name, url.QueryEscape(v)})
		case []any:
			for _, e := range v {
				s, ok := e.(string)
				if !ok {
					return nil, fmt.Errorf("type assertion error: expected array element to be string but got '%T'", e)
				}
				out = append(out, Header{name, url.QueryEscape(s)})
			}
		default:
			return nil, fmt.Errorf("type assertion error, expected value to be string or array but got '%T'", v)
		}
	}
	return out, nil
}

// upstreamOPAEnvoy is upstream in the opa-envoy format: guestgate still
// removes client-sent x-guestgate-* headers the policy does not set and
// the credential (unless check.forward_credential), but adds no request
// id and keeps request_headers_to_remove as the policy gave it.
func (d *Decision) upstreamOPAEnvoy(r *request, cs *compiled) {
	set := headerSet(d.UpstreamHeaders)
	remove := func(name string) {
		if !slices.Contains(d.RemoveHeaders, name) {
			d.RemoveHeaders = append(d.RemoveHeaders, name)
		}
	}
	for name := range r.headers {
		if strings.HasPrefix(name, identityPrefix) && !set.has(name) {
			remove(name)
		}
	}
	if !r.credential.present || cs.check.ForwardCredential {
		return
	}
	switch {
	case r.credential.header != "" && !set.has(r.credential.header):
		remove(r.credential.header)
	case r.credential.cookie != "" && !set.has("cookie"):
		if rest := withoutCookie(r.headers["cookie"], r.credential.cookie); rest == "" {
			remove("cookie")
		} else {
			d.UpstreamHeaders = append(d.UpstreamHeaders, Header{"cookie", encodeHeaderValue(rest)})
		}
	case r.credential.query != "":
		for _, name := range querySpellings(r.query, r.credential.query) {
			if !slices.Contains(d.RemoveQuery, name) {
				d.RemoveQuery = append(d.RemoveQuery, name)
			}
		}
	}
}

// opaEnvoyCheckResponse is the CheckResponse opa-envoy-plugin gives for
// the decision. The headers upstream keep guestgate's
// OVERWRITE_IF_EXISTS_OR_ADD (what Envoy does for them when unset): the
// upstream reads the policy's value, never a client's beside it.
func (d *Decision) opaEnvoyCheckResponse() *authv3.CheckResponse {
	a := d.opaEnvoy
	switch {
	case a.grpcErr != "":
		// opa-envoy-plugin's gRPC error, as the denial Envoy makes of it
		// (status_on_error's default, 403, no body): never an error a
		// failure_mode_allow could let through.
		return &authv3.CheckResponse{
			Status: &rpcstatus.Status{Code: int32(code.Code_PERMISSION_DENIED), Message: a.grpcErr},
			HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
				Status: &typev3.HttpStatus{Code: typev3.StatusCode_Forbidden},
			}},
		}
	case a.parseErr != "":
		return &authv3.CheckResponse{
			Status: &rpcstatus.Status{Code: int32(code.Code_PERMISSION_DENIED), Message: a.parseErr},
			HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
				Status: &typev3.HttpStatus{Code: typev3.StatusCode_BadRequest},
				Body:   a.parseErr,
			}},
		}
	}
	resp := &authv3.CheckResponse{Status: &rpcstatus.Status{Code: int32(code.Code_OK)}}
	switch {
	case d.Allowed:
		if a.object || len(d.UpstreamHeaders)+len(d.RemoveHeaders)+len(d.ResponseHeaders)+len(d.SetQuery)+len(d.RemoveQuery) > 0 {
			resp.HttpResponse = &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
				Headers:                 sharedHeaderOptions(d.upstreamOpts, d.UpstreamHeaders),
				HeadersToRemove:         d.RemoveHeaders,
				ResponseHeadersToAdd:    plainHeaderOptions(d.ResponseHeaders),
				QueryParametersToSet:    queryParams(d.SetQuery),
				QueryParametersToRemove: d.RemoveQuery,
			}}
		}
	case a.decided && a.dryRun:
		// opa-envoy's dry-run: the decision is logged as made, the
		// request goes through.
		resp.HttpResponse = &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{}}
	default:
		resp.Status.Code = int32(code.Code_PERMISSION_DENIED)
		if a.object || !a.decided {
			resp.HttpResponse = &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
				Status:  &typev3.HttpStatus{Code: typev3.StatusCode(d.Status)},
				Headers: plainHeaderOptions(d.DenyHeaders),
				Body:    d.DenyBody,
			}}
		}
	}
	if a.decided {
		fields := make(map[string]*structpb.Value, len(d.DynamicMetadata.GetFields())+1)
		maps.Copy(fields, d.DynamicMetadata.GetFields()) // shared, read only
		fields["decision_id"] = structpb.NewStringValue(a.decisionID)
		resp.DynamicMetadata = &structpb.Struct{Fields: fields}
	}
	return resp
}

// plainHeaderOptions are headers as opa-envoy-plugin sends them: a key and
// a value, nothing else.
func plainHeaderOptions(hs []Header) []*corev3.HeaderValueOption {
	if len(hs) == 0 {
		return nil
	}
	out := make([]*corev3.HeaderValueOption, len(hs))
	for i, h := range hs {
		out[i] = &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: h.Name, Value: h.Value}}
	}
	return out
}
