package ext_authz

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
)

// referenceJSONValue is the body parser guestgate used before
// parseJSONValue, built on encoding/json's tokenizer: the reference the
// fast parser is compared with.
func referenceJSONValue(doc []byte) (ast.Value, error) {
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	v, err := refDecodeValue(dec, 0)
	if err != nil {
		return nil, err
	}
	// Only white space may follow (read without Token, whose io.EOF
	// costs an allocated scanner error on every body).
	if len(bytes.TrimLeft(doc[dec.InputOffset():], " \t\r\n")) != 0 {
		return nil, errors.New("trailing data after the JSON value")
	}
	return v, nil
}

func refDecodeValue(dec *json.Decoder, depth int) (ast.Value, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		if depth >= maxJSONDepth {
			return nil, fmt.Errorf("nested deeper than %d", maxJSONDepth)
		}
		switch t {
		case '{':
			return refDecodeObject(dec, depth+1)
		case '[':
			return refDecodeArray(dec, depth+1)
		}
		return nil, fmt.Errorf("unexpected %q", t)
	case string:
		return ast.String(t), nil
	case json.Number:
		return ast.Number(t), nil
	case bool:
		return ast.Boolean(t), nil
	case nil:
		return ast.Null{}, nil
	}
	return nil, fmt.Errorf("unexpected token %T", tok)
}

func refDecodeObject(dec *json.Decoder, depth int) (ast.Value, error) {
	obj := ast.NewObject()
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key, ok := tok.(string)
		if !ok {
			return nil, errors.New("object key is not a string")
		}
		k := ast.StringTerm(key)
		if obj.Get(k) != nil {
			return nil, fmt.Errorf("%w %q", errDuplicateKey, truncate(key, 64))
		}
		v, err := refDecodeValue(dec, depth)
		if err != nil {
			return nil, err
		}
		obj.Insert(k, ast.NewTerm(v))
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return nil, err
	}
	return obj, nil
}

func refDecodeArray(dec *json.Decoder, depth int) (ast.Value, error) {
	var terms []*ast.Term
	for dec.More() {
		v, err := refDecodeValue(dec, depth)
		if err != nil {
			return nil, err
		}
		terms = append(terms, ast.NewTerm(v))
	}
	if _, err := dec.Token(); err != nil { // the closing ']'
		return nil, err
	}
	return ast.NewArray(terms...), nil
}

// FuzzJSONValue compares parseJSONValue with the encoding/json-based
// reference on any document: both refuse it, or both give the same value.
func FuzzJSONValue(f *testing.F) {
	for _, seed := range []string{
		`{"a":1,"b":[true,null,"x",1.5e3],"c":{"d":{}}}`, `[1,2]`, `{"a":1,"a":2}`, `{"a":1} {"b":2}`, `{"a":`,
		`"\u00e9\ud83d\ude00\ud800x\udc00"`, "\"\xff\xfe\"", `-0.5E+10`, `01`, `1.`, `[1,]`, `{"a":1,}`, ` true `,
		`"\/\b\f\n\r\t\\"`, `"\ud800\u0041"`, `"\ud800\uzzzz"`, `nul`, `[]`, `{}`, "\"a\x01\"", `""`,
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
