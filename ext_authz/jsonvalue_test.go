package ext_authz

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/open-policy-agent/opa/v1/ast"
)

// referenceJSONValue is parseJSONValue written on jsontext (the JSON text
// layer of encoding/json/v2), the reference the fast parser is compared
// with: jsontext holds a document to RFC 8259 and RFC 7493 (I-JSON) by
// default, refusing duplicate names, bytes that are not UTF-8 and escaped
// lone surrogates, as parseJSONValue must.
func referenceJSONValue(doc []byte) (ast.Value, error) {
	dec := jsontext.NewDecoder(bytes.NewReader(doc))
	v, err := refDecodeValue(dec, 0)
	if err != nil {
		return nil, err
	}
	if _, err := dec.ReadToken(); !errors.Is(err, io.EOF) {
		return nil, errors.New("trailing data after the JSON value")
	}
	return v, nil
}

func refDecodeValue(dec *jsontext.Decoder, depth int) (ast.Value, error) {
	tok, err := dec.ReadToken()
	if err != nil {
		return nil, err
	}
	switch k := tok.Kind(); k {
	case '{', '[':
		if depth >= maxJSONDepth {
			return nil, fmt.Errorf("nested deeper than %d", maxJSONDepth)
		}
		if k == '{' {
			return refDecodeObject(dec, depth+1)
		}
		return refDecodeArray(dec, depth+1)
	case '"':
		return ast.String(tok.String()), nil
	case '0':
		return ast.Number(tok.String()), nil
	case 't', 'f':
		return ast.Boolean(tok.Bool()), nil
	case 'n':
		return ast.Null{}, nil
	}
	return nil, fmt.Errorf("unexpected token %v", tok)
}

func refDecodeObject(dec *jsontext.Decoder, depth int) (ast.Value, error) {
	obj := ast.NewObject()
	for dec.PeekKind() != '}' {
		tok, err := dec.ReadToken() // the name; jsontext refuses a repeated one
		if err != nil {
			return nil, err
		}
		name := tok.String() // before the next read voids tok
		v, err := refDecodeValue(dec, depth)
		if err != nil {
			return nil, err
		}
		obj.Insert(ast.StringTerm(name), ast.NewTerm(v))
	}
	if _, err := dec.ReadToken(); err != nil { // the closing '}'
		return nil, err
	}
	return obj, nil
}

func refDecodeArray(dec *jsontext.Decoder, depth int) (ast.Value, error) {
	terms := []*ast.Term{}
	for dec.PeekKind() != ']' {
		v, err := refDecodeValue(dec, depth)
		if err != nil {
			return nil, err
		}
		terms = append(terms, ast.NewTerm(v))
	}
	if _, err := dec.ReadToken(); err != nil { // the closing ']'
		return nil, err
	}
	return ast.NewArray(terms...), nil
}

// FuzzJSONValue compares parseJSONValue with the jsontext-based reference
// on any document: both refuse it, or both give the same value.
func FuzzJSONValue(f *testing.F) {
	for _, seed := range []string{
		`{"a":1,"b":[true,null,"x",1.5e3],"c":{"d":{}}}`, `[1,2]`, `{"a":1,"a":2}`, `{"a":1} {"b":2}`, `{"a":`,
		`"\u00e9\ud83d\ude00\ud800x\udc00"`, "\"\xff\xfe\"", `-0.5E+10`, `01`, `1.`, `[1,]`, `{"a":1,}`, ` true `,
		`"\/\b\f\n\r\t\\"`, `"\ud800\u0041"`, `"\ud800\uzzzz"`, `nul`, `[]`, `{}`, "\"a\x01\"", `""`,
		// Not UTF-8: overlong, an encoded surrogate, a cut sequence, a
		// stray continuation byte, in names and values.
		"{\"to\xc0PersonId\":1}", "{\"toPersonId\":\"guest\xc0\xad2\"}", "\"\xed\xa0\x80\"", "\"\xe2\x82\"", "\"\x80\"",
		`{"a\udc00":1}`, `"\udbff\udfff"`, "\"\xf4\x8f\xbf\xbf\"", "\"\xf4\x90\x80\x80\"",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		got, err := parseJSONValue(doc)
		want, refErr := referenceJSONValue(doc)
		if (err == nil) != (refErr == nil) {
			t.Fatalf("%q: parseJSONValue error %v, reference error %v", doc, err, refErr)
		}
		if err == nil && (got.Compare(want) != 0 || got.String() != want.String()) {
			t.Fatalf("%q: parseJSONValue = %v, reference = %v", doc, got, want)
		}
	})
}
