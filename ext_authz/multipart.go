package ext_authz

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"strings"
	"unicode/utf8"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/util"
)

// maxMultipartParts bounds the parts of a multipart/form-data body shown
// to the policy: a body with more is not shown (truncated_body), as one
// over check.max_body_bytes, which bounds the parts' sizes.
const maxMultipartParts = 256

// multipartBoundary is the boundary of a multipart/form-data Content-Type,
// "" when it names none.
func multipartBoundary(contentType string) (string, error) {
	_, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return "", err
	}
	return params["boundary"], nil
}

// parseMultipartBody shows a multipart/form-data body as opa-envoy-plugin
// does: an object of field name → list of values, each the part's text, or
// its JSON value when the part says it is application/json. Parts without
// a field name are skipped. A text field that is not UTF-8 is refused as a
// form's would be; a file that is not text cannot be shown, and then the
// body is not (truncated_body): the upstream reads the file as a file, so
// nothing of it reads differently there.
func parseMultipartBody(body []byte, contentType string) bodyParse {
	boundary, err := multipartBoundary(contentType)
	if err != nil {
		return bodyParse{detail: "multipart body: Content-Type: " + err.Error(), syntax: true, syntaxErr: err.Error()}
	}
	if boundary == "" {
		return bodyParse{detail: "multipart body without a boundary", syntax: true}
	}
	return parseMultipart(body, boundary)
}

func parseMultipart(body []byte, boundary string) bodyParse {
	values := map[string][]*ast.Term{}
	var names []string
	// A copy: body would otherwise escape in every caller, whatever its type.
	mr := multipart.NewReader(bytes.NewReader(bytes.Clone(body)), boundary)
	for n := 0; ; n++ {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return bodyParse{detail: "multipart body: " + err.Error(), syntax: true, syntaxErr: err.Error()}
		}
		if n == maxMultipartParts {
			return bodyParse{detail: fmt.Sprintf("multipart body of more than %d parts", maxMultipartParts), hidden: true}
		}
		name := p.FormName()
		if name == "" {
			continue
		}
		value, err := io.ReadAll(p)
		if err != nil {
			return bodyParse{detail: "multipart body: " + err.Error(), syntax: true, syntaxErr: err.Error()}
		}
		if !utf8.ValidString(name) {
			return bodyParse{detail: "multipart field name is not UTF-8"}
		}
		var v *ast.Term
		switch {
		case strings.Contains(p.Header.Get("Content-Type"), "application/json"):
			jv, err := parseJSONValue(value)
			if err != nil {
				bp := bodyParse{detail: fmt.Sprintf("multipart field %q: JSON: %v", name, err), syntax: !json.Valid(value)}
				var x any
				if e := util.UnmarshalJSON(value, &x); e != nil { // value is a copy already
					bp.syntaxErr = e.Error()
				}
				return bp
			}
			v = ast.NewTerm(jv)
		case !utf8.Valid(value) && p.FileName() != "":
			return bodyParse{detail: "multipart file that is not text", hidden: true}
		case !utf8.Valid(value):
			return bodyParse{detail: fmt.Sprintf("multipart field %q is not UTF-8", name)}
		default:
			v = ast.StringTerm(string(value))
		}
		if _, ok := values[name]; !ok {
			names = append(names, name)
		}
		values[name] = append(values[name], v)
	}
	obj := ast.NewObjectWithCapacity(len(names))
	for _, name := range names {
		obj.Insert(ast.StringTerm(name), ast.ArrayTerm(values[name]...))
	}
	return bodyParse{value: obj}
}
