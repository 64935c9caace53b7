package ext_authz

import (
	"errors"
	"testing"
	"unicode/utf8"

	"github.com/guestgate/guestgate/strictjson"
	"github.com/guestgate/guestgate/strictjson/strictjsontest"
	"github.com/open-policy-agent/opa/v1/ast"
)

// parseJSONValue is the fast reader of request bodies; strictjson is the
// strict reader of tokens, key sets and the issuer. They keep the same
// rules (one value, no duplicate member at any depth, strictjson.MaxDepth,
// nothing after the value) with one difference the body reader documents:
// a byte that is not UTF-8, inside a string, is U+FFFD to it (as
// encoding/json decodes it) where strictjson refuses the document. So the
// fast reader on doc answers what strictjson answers on doc with every such
// byte made U+FFFD.

// withReplacementCharacters replaces each byte of doc that is not part of
// valid UTF-8 with U+FFFD, byte by byte as encoding/json's decoder does.
func withReplacementCharacters(doc []byte) []byte {
	if utf8.Valid(doc) {
		return doc
	}
	out := make([]byte, 0, len(doc)+8)
	for len(doc) > 0 {
		r, size := utf8.DecodeRune(doc)
		out = utf8.AppendRune(out, r)
		doc = doc[size:]
	}
	return out
}

// agreeWithStrictJSON fails unless parseJSONValue answers doc as strictjson
// answers it with replacement characters: both refuse it (a duplicate as a
// duplicate), or both accept it with the same value.
func agreeWithStrictJSON(t *testing.T, doc []byte) {
	t.Helper()
	got, err := parseJSONValue(doc)
	strict, strictErr := strictjson.Decode(withReplacementCharacters(doc))
	if (err == nil) != (strictErr == nil) {
		t.Fatalf("%q: parseJSONValue error %v, strictjson error %v", doc, err, strictErr)
	}
	if err != nil {
		if errors.Is(strictErr, strictjson.ErrDuplicate) != errors.Is(err, errDuplicateKey) {
			t.Fatalf("%q: parseJSONValue error %v, strictjson error %v: not the same rule", doc, err, strictErr)
		}
		return
	}
	want, convErr := ast.InterfaceToValue(strict)
	if convErr != nil {
		t.Fatalf("%q: strictjson's value %#v does not convert: %v", doc, strict, convErr)
	}
	if got.Compare(want) != 0 || got.String() != want.String() {
		t.Fatalf("%q: parseJSONValue = %v, strictjson = %v", doc, got, want)
	}
}

func TestJSONValueKeepsTheStrictReadersRules(t *testing.T) {
	for _, c := range strictjsontest.Cases {
		t.Run(c.Name, func(t *testing.T) {
			agreeWithStrictJSON(t, []byte(c.Doc))
		})
	}
}

// TestJSONValueReplacesWhatTheStrictReaderRefuses pins the one difference:
// a body string with a byte that is not UTF-8 reaches the policy with
// U+FFFD in its place, where strictjson refuses the document.
func TestJSONValueReplacesWhatTheStrictReaderRefuses(t *testing.T) {
	doc := []byte("{\"name\":\"Ad\xffa\"}")
	if _, err := strictjson.Decode(doc); !errors.Is(err, strictjson.ErrInvalidUTF8) {
		t.Fatalf("strictjson: %v, want %v", err, strictjson.ErrInvalidUTF8)
	}
	got, err := parseJSONValue(doc)
	if err != nil {
		t.Fatalf("parseJSONValue: %v", err)
	}
	want := ast.NewObject(ast.Item(ast.StringTerm("name"), ast.StringTerm("Ad\uFFFDa")))
	if got.Compare(want) != 0 {
		t.Fatalf("parseJSONValue = %v, want %v", got, want)
	}
}

// FuzzJSONValueAgainstStrictJSON holds the fast body reader to the strict
// reader on any document, under the rule above.
func FuzzJSONValueAgainstStrictJSON(f *testing.F) {
	for _, c := range strictjsontest.Cases {
		f.Add([]byte(c.Doc))
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		agreeWithStrictJSON(t, doc)
	})
}
