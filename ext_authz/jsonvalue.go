package ext_authz

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/open-policy-agent/opa/v1/ast"
)

// maxJSONDepth bounds nesting so a hostile body cannot exhaust the stack.
const maxJSONDepth = 64

var errDuplicateKey = errors.New("duplicate key")

// parseJSONValue decodes one JSON document straight into an ast.Value,
// refusing duplicate object keys at any depth, nesting deeper than
// maxJSONDepth and trailing data. It never builds a Go map first.
func parseJSONValue(doc []byte) (ast.Value, error) {
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	v, err := decodeValue(dec, 0)
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

func decodeValue(dec *json.Decoder, depth int) (ast.Value, error) {
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
			return decodeObject(dec, depth+1)
		case '[':
			return decodeArray(dec, depth+1)
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

func decodeObject(dec *json.Decoder, depth int) (ast.Value, error) {
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
		v, err := decodeValue(dec, depth)
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

func decodeArray(dec *json.Decoder, depth int) (ast.Value, error) {
	var terms []*ast.Term
	for dec.More() {
		v, err := decodeValue(dec, depth)
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

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
