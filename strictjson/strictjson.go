// Package strictjson reads JSON that a security decision rests on: a token's
// header and claims, a key set, a request body. A document two parsers could
// read two ways is refused, never resolved.
//
// RFC 8259 leaves open what a repeated member name means (§4: "the behavior
// of software that receives such an object is unpredictable"), lets a
// parser bound nesting (§9), and asks for UTF-8 between systems (§8.1).
// One library keeps the first of two "alg" members, another the last; one
// replaces a stray byte, another refuses it. An attacker who shows each
// reader its own document needs only that difference. So a document here is
// exactly one JSON value (RFC 8259 §2: JSON-text = ws value ws), in valid
// UTF-8, with no member name twice in any object at any depth (names compare
// after unescaping: "a" and "\u0061" are the same name), nested at most
// MaxDepth levels. Anything else is an *Error saying which rule it broke and
// where.
//
// The reader is encoding/json's tokenizer, so its grammar, its numbers
// (json.Number: the text, exact) and its strings are the standard
// library's; a lone surrogate escape such as "\ud800" decodes to U+FFFD as
// encoding/json decodes it. The package imports nothing of guestgate's.
package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"
)

// MaxDepth bounds the nesting of arrays and objects: a document whose
// containers nest deeper is refused with ErrTooDeep. The top-level object
// or array is level 1. Tokens, key sets and request bodies are a few levels
// deep; this leaves room for a policy's request bodies while keeping a
// hostile document from costing a deep recursion.
const MaxDepth = 64

// The rules a document can break. An *Error wraps exactly one of them, so
// errors.Is(err, ErrDuplicate) tells a caller which rule it was.
var (
	ErrSyntax      = errors.New("not JSON")
	ErrTrailing    = errors.New("not JSON: data after the document")
	ErrInvalidUTF8 = errors.New("not UTF-8")
	ErrDuplicate   = errors.New("duplicate member")
	ErrTooDeep     = errors.New("nested too deep")
	ErrNotObject   = errors.New("not a JSON object")
)

// maxNameInError bounds the member name an error repeats.
const maxNameInError = 64

// Error is a refused document. Its message names the rule, the byte offset
// and, for a duplicate, the member's name (cut to 64 bytes). It never holds
// a value from the document: values are where secrets are.
type Error struct {
	Err    error  // one of the Err values above
	Offset int64  // the bytes read when the fault was found
	detail string // follows Err's text: ": why" or " name"
}

func (e *Error) Error() string {
	return fmt.Sprintf("%v%s (offset %d)", e.Err, e.detail, e.Offset)
}

func (e *Error) Unwrap() error { return e.Err }

// Decode reads data as one strict JSON value and returns it as
// encoding/json decodes into an any with UseNumber: map[string]any, []any,
// string, json.Number, bool or nil.
func Decode(data []byte) (any, error) {
	// RFC 8259 §8.1: "JSON text exchanged between systems ... MUST be
	// encoded using UTF-8". encoding/json would replace a bad byte with
	// U+FFFD and carry on, so the bytes are checked first.
	if !utf8.Valid(data) {
		return nil, &Error{Err: ErrInvalidUTF8, Offset: firstInvalidUTF8(data)}
	}
	r := reader{data: data, dec: json.NewDecoder(bytes.NewReader(data))}
	r.dec.UseNumber()
	v, err := r.value(0)
	if err != nil {
		return nil, err
	}
	// Only white space may follow the value (read without Token, whose
	// io.EOF costs an allocated error on every document).
	end := r.dec.InputOffset()
	if rest := bytes.TrimLeft(data[end:], " \t\r\n"); len(rest) != 0 {
		return nil, &Error{Err: ErrTrailing, Offset: int64(len(data) - len(rest))}
	}
	return v, nil
}

// DecodeObject is Decode for a document that must be an object.
func DecodeObject(data []byte) (map[string]any, error) {
	v, err := Decode(data)
	if err != nil {
		return nil, err
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, &Error{Err: ErrNotObject, detail: ": the document is " + kindOf(v)}
	}
	return obj, nil
}

// Check reports whether data is one strict JSON value, for a caller that
// decodes it with another library afterwards (a JWK parser, a struct).
func Check(data []byte) error {
	_, err := Decode(data)
	return err
}

type reader struct {
	data []byte
	dec  *json.Decoder
}

// value reads the value that starts at the next token; depth is the number
// of containers around it.
func (r *reader) value(depth int) (any, error) {
	tok, err := r.dec.Token()
	if err != nil {
		return nil, r.syntax(err)
	}
	switch t := tok.(type) {
	case json.Delim:
		if depth >= MaxDepth {
			return nil, &Error{Err: ErrTooDeep, Offset: r.dec.InputOffset(), detail: fmt.Sprintf(": more than %d levels", MaxDepth)}
		}
		switch t {
		case '{':
			return r.object(depth + 1)
		case '[':
			return r.array(depth + 1)
		}
		// Token refuses a '}' or ']' where a value starts; should it
		// ever hand one out, the document is still refused.
		return nil, &Error{Err: ErrSyntax, Offset: r.dec.InputOffset()}
	case string, json.Number, bool, nil:
		return t, nil
	}
	return nil, &Error{Err: ErrSyntax, Offset: r.dec.InputOffset()}
}

// object reads the members of an object whose '{' was just read.
func (r *reader) object(depth int) (any, error) {
	obj := make(map[string]any)
	for r.dec.More() {
		tok, err := r.dec.Token()
		if err != nil {
			return nil, r.syntax(err)
		}
		// Token returns a name as a string and refuses anything else in
		// a name's place; the check keeps that a refusal, never a panic.
		name, ok := tok.(string)
		if !ok {
			return nil, &Error{Err: ErrSyntax, Offset: r.dec.InputOffset()}
		}
		// Token unescapes the name, so "a" and "\u0061" collide here as
		// they would in any reader downstream.
		if _, dup := obj[name]; dup {
			return nil, &Error{Err: ErrDuplicate, Offset: r.dec.InputOffset(), detail: fmt.Sprintf(" %q", cut(name, maxNameInError))}
		}
		v, err := r.value(depth)
		if err != nil {
			return nil, err
		}
		obj[name] = v
	}
	if _, err := r.dec.Token(); err != nil { // the closing '}'
		return nil, r.syntax(err)
	}
	return obj, nil
}

// array reads the elements of an array whose '[' was just read.
func (r *reader) array(depth int) (any, error) {
	arr := []any{}
	for r.dec.More() {
		v, err := r.value(depth)
		if err != nil {
			return nil, err
		}
		arr = append(arr, v)
	}
	if _, err := r.dec.Token(); err != nil { // the closing ']'
		return nil, r.syntax(err)
	}
	return arr, nil
}

// syntax turns the tokenizer's error into an *Error. encoding/json's own
// message is left out: it quotes the offending character, which may be part
// of a secret.
func (r *reader) syntax(err error) *Error {
	var se *json.SyntaxError
	switch {
	case errors.As(err, &se):
		return &Error{Err: ErrSyntax, Offset: se.Offset}
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		if len(bytes.TrimLeft(r.data, " \t\r\n")) == 0 {
			return &Error{Err: ErrSyntax, detail: ": empty"}
		}
		return &Error{Err: ErrSyntax, Offset: int64(len(r.data)), detail: ": it ends before the value does"}
	}
	return &Error{Err: ErrSyntax, Offset: r.dec.InputOffset()}
}

func firstInvalidUTF8(data []byte) int64 {
	for i := 0; i < len(data); {
		c, size := utf8.DecodeRune(data[i:])
		if c == utf8.RuneError && size <= 1 {
			return int64(i)
		}
		i += size
	}
	return int64(len(data))
}

// cut shortens s to at most n bytes without splitting a character.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

func kindOf(v any) string {
	switch v.(type) {
	case []any:
		return "an array"
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	case nil:
		return "null"
	}
	return "an object"
}
