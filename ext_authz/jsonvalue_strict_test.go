package ext_authz

import (
	"errors"
	"strconv"
	"testing"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/guestgate/guestgate/strictjson"
	"github.com/guestgate/guestgate/strictjson/strictjsontest"
	"github.com/open-policy-agent/opa/v1/ast"
)

// parseJSONValue is the fast reader of request bodies; strictjson is the
// strict reader of tokens, key sets and the issuer. They keep the same
// rules (one value, UTF-8, no duplicate member at any depth,
// strictjson.MaxDepth, nothing after the value) with one difference the
// body reader documents: a \u escape of a lone surrogate is not text to it,
// and refused, where strictjson decodes it to U+FFFD as encoding/json does.
// A body goes on to an upstream whose decoder may keep, repair or drop the
// half, so the policy must not be shown a U+FFFD in its place; a token's
// claims and a key set are read by guestgate alone.

// loneSurrogate says whether doc holds a \u escape of a surrogate half not
// paired with the other half (high then low).
func loneSurrogate(doc []byte) bool {
	half := func(i int) (rune, bool) {
		if i+6 > len(doc) || doc[i] != '\\' || doc[i+1] != 'u' {
			return 0, false
		}
		n, err := strconv.ParseUint(string(doc[i+2:i+6]), 16, 32)
		return rune(n), err == nil
	}
	for i := 0; i < len(doc); i++ {
		if doc[i] != '\\' {
			continue
		}
		r, ok := half(i)
		switch {
		case !ok: // another escape: skip what it escapes
			i++
		case utf16.IsSurrogate(r):
			if r2, ok := half(i + 6); !ok || utf16.DecodeRune(r, r2) == utf8.RuneError {
				return true
			}
			i += 11
		default:
			i += 5
		}
	}
	return false
}

// agreeWithStrictJSON fails unless parseJSONValue answers doc as strictjson
// answers it, a lone surrogate escape aside: both refuse it (a duplicate as
// a duplicate), or both accept it with the same value.
func agreeWithStrictJSON(t *testing.T, doc []byte) {
	t.Helper()
	got, err := parseJSONValue(doc)
	strict, strictErr := strictjson.Decode(doc)
	if strictErr == nil && loneSurrogate(doc) {
		if err == nil {
			t.Fatalf("%q: a lone surrogate escape taken as %v", doc, got)
		}
		return
	}
	if (err == nil) != (strictErr == nil) {
		t.Fatalf("%q: parseJSONValue error %v, strictjson error %v", doc, err, strictErr)
	}
	if err != nil {
		// Which of two broken rules each names first is theirs to choose:
		// strictjson checks the bytes before the grammar, the fast reader
		// as it meets them. A document that is UTF-8 breaks the same one.
		if utf8.Valid(doc) && errors.Is(strictErr, strictjson.ErrDuplicate) != errors.Is(err, errDuplicateKey) {
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

// TestJSONValueRefusesWhatTheStrictReaderRepairs pins the one difference:
// a body string with a lone surrogate escape is refused, where strictjson
// decodes it to U+FFFD; a byte that is not UTF-8 both refuse.
func TestJSONValueRefusesWhatTheStrictReaderRepairs(t *testing.T) {
	lone := []byte(`{"toPersonId\ud800":"guest-2"}`)
	if v, err := strictjson.Decode(lone); err != nil || v.(map[string]any)["toPersonId\uFFFD"] != "guest-2" {
		t.Fatalf("strictjson: %v, %v; want the half made U+FFFD", v, err)
	}
	if v, err := parseJSONValue(lone); err == nil {
		t.Fatalf("parseJSONValue took %v", v)
	}
	for _, c := range []struct {
		doc  string
		lone bool
	}{
		{`"\ud800"`, true},
		{`"\udc00\ud800"`, true},
		{`"\ud800\u0041"`, true},
		{`"\\\ud800"`, true},  // an escaped backslash, then the half
		{`"a\\ud800"`, false}, // an escaped backslash, then text
		{`"\ud83d\ude00"`, false},
		{`"\u00e9\n"`, false},
	} {
		if got := loneSurrogate([]byte(c.doc)); got != c.lone {
			t.Errorf("loneSurrogate(%s) = %v, want %v", c.doc, got, c.lone)
		}
	}
	bad := []byte("{\"name\":\"Ad\xffa\"}")
	if _, err := strictjson.Decode(bad); !errors.Is(err, strictjson.ErrInvalidUTF8) {
		t.Fatalf("strictjson: %v, want %v", err, strictjson.ErrInvalidUTF8)
	}
	if v, err := parseJSONValue(bad); err == nil {
		t.Fatalf("parseJSONValue took %v", v)
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
