// Package strictjsontest holds the documents strictjson is tested with, so
// that a second reader held to the same rules (ext_authz's parseJSONValue,
// which builds policy values directly) runs the very same table. It is for
// tests only.
package strictjsontest

import (
	"strings"

	"github.com/guestgate/guestgate/strictjson"
)

// Case is a document and the rule strictjson refuses it under.
type Case struct {
	Name string
	Doc  string
	// Err is nil for a document strictjson accepts, else the rule it is
	// refused under (errors.Is(err, Err)).
	Err error
}

// nest wraps inner in n levels of the container open...close.
func nest(n int, open, inner, close string) string {
	return strings.Repeat(open, n) + inner + strings.Repeat(close, n)
}

// Cases covers every rule with a document that keeps to it and one that
// breaks it, at and past each bound.
var Cases = []Case{
	// One value, any kind, white space around it.
	{"empty object", `{}`, nil},
	{"empty array", `[]`, nil},
	{"string", `"x"`, nil},
	{"integer", `1`, nil},
	{"exponent", `-0.5E+10`, nil},
	{"integer past float64 precision", `123456789012345678901234567890`, nil},
	{"true", `true`, nil},
	{"false", `false`, nil},
	{"null", `null`, nil},
	{"white space around", " \t\r\n{\"a\" : [ 1 , 2 ] }\n ", nil},
	{"every kind nested", `{"a":1,"b":[true,null,"x",1.5e3],"c":{"d":{}}}`, nil},
	{"escapes", `"\/\b\f\n\r\t\\\""`, nil},
	{"unicode escapes and a pair", `"\u00e9\ud83d\ude00"`, nil},
	{"lone surrogate escape decodes to U+FFFD", `"\ud800x\udc00"`, nil},
	{"multibyte UTF-8", `{"名前":"é😀"}`, nil},

	// Names: unique per object, compared after unescaping.
	{"same name in nested objects", `{"a":{"a":1}}`, nil},
	{"same name in sibling objects", `[{"a":1},{"a":1}]`, nil},
	{"names that differ in case", `{"a":1,"A":1}`, nil},
	{"duplicate member", `{"a":1,"a":2}`, strictjson.ErrDuplicate},
	{"duplicate member with the same value", `{"a":1,"a":1}`, strictjson.ErrDuplicate},
	{"duplicate member spelled with an escape", `{"a":1,"\u0061":2}`, strictjson.ErrDuplicate},
	{"duplicate member nested in an array", `{"x":[{"y":1,"y":1}]}`, strictjson.ErrDuplicate},
	{"duplicate member at the depth bound", nest(strictjson.MaxDepth-1, "[", `{"a":1,"a":2}`, "]"), strictjson.ErrDuplicate},

	// Depth: MaxDepth levels of containers, no more.
	{"arrays at the depth bound", nest(strictjson.MaxDepth, "[", "", "]"), nil},
	{"objects at the depth bound", nest(strictjson.MaxDepth-1, `{"a":`, "{}", "}"), nil},
	{"arrays past the depth bound", nest(strictjson.MaxDepth+1, "[", "", "]"), strictjson.ErrTooDeep},
	{"objects past the depth bound", nest(strictjson.MaxDepth, `{"a":`, "{}", "}"), strictjson.ErrTooDeep},
	{"mixed past the depth bound", nest(strictjson.MaxDepth/2+1, `[{"a":`, "1", "}]"), strictjson.ErrTooDeep},

	// Nothing after the value.
	{"two objects", `{"a":1} {"b":2}`, strictjson.ErrTrailing},
	{"two numbers", `1 2`, strictjson.ErrTrailing},
	{"a stray closing brace", `{"a":1}}`, strictjson.ErrTrailing},
	{"a word after the object", `{}x`, strictjson.ErrTrailing},

	// The grammar.
	{"nothing", ``, strictjson.ErrSyntax},
	{"white space only", " \n", strictjson.ErrSyntax},
	{"unclosed object", `{"a":`, strictjson.ErrSyntax},
	{"unclosed array", `[1,2`, strictjson.ErrSyntax},
	{"unclosed string", `"abc`, strictjson.ErrSyntax},
	{"trailing comma in an array", `[1,]`, strictjson.ErrSyntax},
	{"trailing comma in an object", `{"a":1,}`, strictjson.ErrSyntax},
	{"missing comma", `[1 2]`, strictjson.ErrSyntax},
	{"missing colon", `{"a" 1}`, strictjson.ErrSyntax},
	{"name not a string", `{a:1}`, strictjson.ErrSyntax},
	{"number as a name", `{1:1}`, strictjson.ErrSyntax},
	{"single quotes", `'a'`, strictjson.ErrSyntax},
	{"leading zero", `[01]`, strictjson.ErrSyntax},
	{"leading zero, read as two numbers", `01`, strictjson.ErrTrailing},
	{"bare decimal point", `1.`, strictjson.ErrSyntax},
	{"plus sign", `+1`, strictjson.ErrSyntax},
	{"NaN", `NaN`, strictjson.ErrSyntax},
	{"truncated literal", `nul`, strictjson.ErrSyntax},
	{"closing brace alone", `}`, strictjson.ErrSyntax},
	{"brace closing an array", `[}`, strictjson.ErrSyntax},
	{"control character in a string", "\"a\x01b\"", strictjson.ErrSyntax},
	{"bad escape", `"\x"`, strictjson.ErrSyntax},
	{"bad unicode escape", `"\u12g4"`, strictjson.ErrSyntax},
	{"byte-order mark", "\ufeff{}", strictjson.ErrSyntax},
	{"comment", `{} // note`, strictjson.ErrTrailing},

	// UTF-8 only (RFC 8259 §8.1), in strings, names and elsewhere.
	{"invalid byte in a string", "\"a\xffb\"", strictjson.ErrInvalidUTF8},
	{"invalid byte in a name", "{\"\xc3\":1}", strictjson.ErrInvalidUTF8},
	{"truncated sequence in a string", "\"\xe2\x82\"", strictjson.ErrInvalidUTF8},
	{"overlong encoding in a string", "\"\xc0\xaf\"", strictjson.ErrInvalidUTF8},
	{"encoded surrogate in a string", "\"\xed\xa0\x80\"", strictjson.ErrInvalidUTF8},
	{"invalid byte outside strings", "[1,\xff]", strictjson.ErrInvalidUTF8},
}
