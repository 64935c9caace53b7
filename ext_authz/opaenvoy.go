package ext_authz

import (
	"cmp"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/open-policy-agent/opa/v1/ast"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/guestgate/guestgate/config"
)

// The opa-envoy input format (check.input_format: opa-envoy): the input
// document opa-envoy-plugin builds, where guestgate's differs, and no
// guestgate additions. guestgate's security decisions hold in it: paths
// that are not canonical, duplicate JSON keys and bodies that are not
// UTF-8 are refused before the policy runs, bodies over the bound or
// compressed are not parsed, client-sent x-guestgate-* headers and the
// credential are removed upstream, written header values are encoded.
// The answers' side is opaenvoy_answer.go; docs/opa-envoy.md lists every
// difference and why.

// inputFormat is what shapes a check's input document besides the policy:
// a plan is made per revision and format.
type inputFormat struct {
	opaEnvoy bool
	// noBody: opa-envoy's skip-request-body-parse, under which its input
	// has neither parsed_body nor truncated_body.
	noBody bool
}

func formatOf(chk *config.Check) inputFormat {
	return inputFormat{opaEnvoy: chk.OPAEnvoy(), noBody: chk.OPAEnvoy() && chk.SkipRequestBodyParse}
}

// leavesOut says whether the format has no part at path (a top-level name).
func (f inputFormat) leavesOut(path string) bool {
	switch path {
	case "request_id", "token", "token_error":
		return f.opaEnvoy
	case "source_principal":
		return !f.opaEnvoy
	case "parsed_body", "truncated_body":
		return f.noBody
	}
	return false
}

// opaEnvoySegments is parsed_path as opa-envoy-plugin splits a path: the
// root (or no path, a CONNECT) is [""], not [].
func opaEnvoySegments(segs []string) []string {
	if len(segs) == 0 {
		return []string{""}
	}
	return segs
}

// readBodyOPAEnvoy is readBody as opa-envoy-plugin reads a body: only a
// Content-Type containing application/json (so not +json types),
// application/x-www-form-urlencoded or multipart/form-data is parsed;
// truncated_body says Envoy marked the body partial or that it is shorter
// than its Content-Length, and is false for every other type. guestgate's
// own bounds and refusals come on top.
func (r *request) readBodyOPAEnvoy(chk *config.Check) {
	if r.headers["x-envoy-auth-partial-body"] == "true" {
		r.truncated = true
		return
	}
	ct, ok := r.headers["content-type"]
	isJSON := strings.Contains(ct, "application/json")
	isForm := !isJSON && strings.Contains(ct, "application/x-www-form-urlencoded")
	isMultipart := !isJSON && !isForm && strings.Contains(ct, "multipart/form-data")
	body := r.http.GetRawBody()
	if len(body) == 0 {
		body = []byte(r.http.GetBody())
	}
	if !ok || !isJSON && !isForm && !isMultipart || len(body) == 0 {
		return
	}
	if v, ok := r.headers["content-length"]; ok {
		cl, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			r.problem, r.detail = ReasonBadBody, err.Error()
			return
		}
		if cl != -1 && cl > int64(len(body)) {
			r.truncated = true
			return
		}
	}
	// guestgate's: a compressed body is not the upstream's text, one over
	// the bound is not read, and JSON and forms are text.
	if ce := strings.TrimSpace(r.headers["content-encoding"]); ce != "" && !strings.EqualFold(ce, "identity") {
		r.truncated = true
		return
	}
	r.truncated = len(body) > chk.MaxBodyBytes
	kind := bodyMultipart
	switch {
	case isJSON:
		kind = bodyJSON
	case isForm:
		kind = bodyForm
	default:
		if boundary, err := multipartBoundary(ct); err == nil && boundary == "" {
			return // opa-envoy-plugin does not parse it
		}
	}
	// opa-envoy-plugin's message is the parser's own error.
	if p, ok := r.parseBody(kind, body, false); ok {
		r.takeBody(p, chk, cmp.Or(p.syntaxErr, p.detail))
	}
}

// opaEnvoyAttributes is input.attributes as opa-envoy-plugin builds it:
// every field Envoy set, by its JSON name, numbers as numbers (size, ports,
// enums), a timestamp as {seconds, nanos}, bytes as base64. The credential
// is redacted unless shown.
func (r *request) opaEnvoyAttributes(show bool) ast.Value {
	a := r.attrs
	if !show && r.credential.present {
		a = r.redactedAttributes()
	}
	v, err := protoValueOf(a.ProtoReflect())
	if err != nil {
		r.problem, r.detail = ReasonBadRequest, "attributes cannot be shown to the policy: "+err.Error()
		return ast.NewObject()
	}
	return v
}

// redactedAttributes is a copy of the attributes with the credential's
// value redacted where guestgate's own input redacts it (shownHTTP).
func (r *request) redactedAttributes() *authv3.AttributeContext {
	a := proto.Clone(r.attrs).(*authv3.AttributeContext)
	h := a.GetRequest().GetHttp()
	headers, path, query := r.shownHTTP(true)
	h.Path, h.Query = path, query
	if len(h.GetHeaders()) > 0 {
		h.Headers = headers
	}
	if hm := h.GetHeaderMap(); hm != nil {
		// Header map entries of a name whose value changed become one
		// entry of the redacted value.
		var kept []*corev3.HeaderValue
		done := map[string]bool{}
		for _, e := range hm.GetHeaders() {
			k := strings.ToLower(e.GetKey())
			if v, changed := headers[k]; changed && v != r.headers[k] {
				if !done[k] {
					kept = append(kept, &corev3.HeaderValue{Key: e.GetKey(), Value: v})
					done[k] = true
				}
				continue
			}
			kept = append(kept, e)
		}
		hm.Headers = kept
	}
	return a
}

// protoValueOf converts a message as opa-envoy-plugin's protomap does: the
// populated fields by JSON name, a google.protobuf.Struct as its map.
func protoValueOf(m protoreflect.Message) (ast.Value, error) {
	if s, ok := m.Interface().(*structpb.Struct); ok {
		return ast.InterfaceToValue(s.AsMap())
	}
	obj := ast.NewObject()
	var err error
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		var t *ast.Term
		switch {
		case fd.IsMap():
			o := ast.NewObject()
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				var e *ast.Term
				if e, err = protoTerm(fd.MapValue(), mv); err == nil {
					o.Insert(ast.StringTerm(k.String()), e)
				}
				return err == nil
			})
			t = ast.NewTerm(o)
		case fd.IsList():
			l := v.List()
			terms := make([]*ast.Term, l.Len())
			for i := range terms {
				if terms[i], err = protoTerm(fd, l.Get(i)); err != nil {
					break
				}
			}
			t = ast.ArrayTerm(terms...)
		default:
			t, err = protoTerm(fd, v)
		}
		if err == nil {
			obj.Insert(ast.StringTerm(fd.JSONName()), t)
		}
		return err == nil
	})
	return obj, err
}

// protoTerm converts one value of field fd (an element of a list or map).
func protoTerm(fd protoreflect.FieldDescriptor, v protoreflect.Value) (*ast.Term, error) {
	if k := fd.Kind(); k == protoreflect.MessageKind || k == protoreflect.GroupKind {
		x, err := protoValueOf(v.Message())
		return ast.NewTerm(x), err
	}
	switch x := v.Interface().(type) {
	case string:
		return ast.StringTerm(x), nil
	case bool:
		return ast.BooleanTerm(x), nil
	case int32, int64, uint32, uint64:
		return ast.NumberTerm(json.Number(fmt.Sprint(x))), nil
	case protoreflect.EnumNumber:
		return ast.IntNumberTerm(int(x)), nil
	case float32:
		return floatTerm(float64(x), 32)
	case float64:
		return floatTerm(x, 64)
	case []byte:
		return ast.StringTerm(base64.StdEncoding.EncodeToString(x)), nil
	}
	return nil, fmt.Errorf("field %s: unsupported value", fd.FullName())
}

func floatTerm(f float64, bits int) (*ast.Term, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil, fmt.Errorf("%v is not a JSON number", f)
	}
	return ast.NumberTerm(json.Number(strconv.FormatFloat(f, 'g', -1, bits))), nil
}
