package ext_authz

import (
	"errors"
	"fmt"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/guestgate/guestgate/strictjson"
	"github.com/open-policy-agent/opa/v1/ast"
)

// maxJSONDepth bounds nesting so a hostile body cannot exhaust the stack:
// the strict reader's bound, so both take the same documents
// (jsonvalue_strict_test.go).
const maxJSONDepth = strictjson.MaxDepth

var errDuplicateKey = errors.New("duplicate key")

// parseJSONValue decodes one JSON document (RFC 8259) straight into an
// ast.Value, refusing duplicate object keys at any depth, nesting deeper
// than maxJSONDepth and trailing data. Numbers keep their text exactly.
// Strings must be text: bytes that are not UTF-8 (invalid, overlong, an
// encoded surrogate) and \u escapes of a lone surrogate are refused, not
// repaired to U+FFFD as encoding/json does (RFC 8259 §8.1 and §8.2, RFC 7493
// §2.1): an upstream that drops or repairs them otherwise reads another
// name or value than the policy was shown ("guest\xc0\xad2" is "guest2" to
// a decoder that skips what it cannot read). It reads the body once,
// without building Go values or a token stream first: this runs on every
// check with a body.
func parseJSONValue(doc []byte) (ast.Value, error) {
	p := jsonParser{doc: doc}
	p.space()
	v, err := p.value(0)
	if err != nil {
		return nil, err
	}
	p.space()
	if p.i != len(p.doc) {
		return nil, errors.New("trailing data after the JSON value")
	}
	return v, nil
}

type jsonParser struct {
	doc []byte
	i   int
}

func (p *jsonParser) space() {
	for p.i < len(p.doc) {
		switch p.doc[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *jsonParser) errorf(format string, args ...any) error {
	return fmt.Errorf("offset %d: "+format, append([]any{p.i}, args...)...)
}

func (p *jsonParser) value(depth int) (ast.Value, error) {
	if p.i >= len(p.doc) {
		return nil, p.errorf("unexpected end of JSON input")
	}
	switch c := p.doc[p.i]; {
	case c == '{' || c == '[':
		if depth >= maxJSONDepth {
			return nil, fmt.Errorf("nested deeper than %d", maxJSONDepth)
		}
		p.i++
		if c == '{' {
			return p.object(depth + 1)
		}
		return p.array(depth + 1)
	case c == '"':
		s, err := p.str()
		if err != nil {
			return nil, err
		}
		return ast.String(s), nil
	case c == '-' || '0' <= c && c <= '9':
		return p.number()
	case c == 't':
		return p.literal("true", ast.Boolean(true))
	case c == 'f':
		return p.literal("false", ast.Boolean(false))
	case c == 'n':
		return p.literal("null", ast.Null{})
	default:
		return nil, p.errorf("invalid character %q looking for a value", c)
	}
}

func (p *jsonParser) literal(word string, v ast.Value) (ast.Value, error) {
	if len(p.doc)-p.i < len(word) || string(p.doc[p.i:p.i+len(word)]) != word {
		return nil, p.errorf("invalid literal")
	}
	p.i += len(word)
	return v, nil
}

func (p *jsonParser) object(depth int) (ast.Value, error) {
	obj := ast.NewObject()
	p.space()
	if p.i < len(p.doc) && p.doc[p.i] == '}' {
		p.i++
		return obj, nil
	}
	for {
		p.space()
		if p.i >= len(p.doc) || p.doc[p.i] != '"' {
			return nil, p.errorf("object key is not a string")
		}
		key, err := p.str()
		if err != nil {
			return nil, err
		}
		k := ast.StringTerm(key)
		if obj.Get(k) != nil {
			return nil, fmt.Errorf("%w %q", errDuplicateKey, truncate(key, 64))
		}
		p.space()
		if p.i >= len(p.doc) || p.doc[p.i] != ':' {
			return nil, p.errorf("missing ':' after object key")
		}
		p.i++
		p.space()
		v, err := p.value(depth)
		if err != nil {
			return nil, err
		}
		obj.Insert(k, ast.NewTerm(v))
		done, err := p.next('}', "object value")
		if err != nil {
			return nil, err
		}
		if done {
			return obj, nil
		}
	}
}

func (p *jsonParser) array(depth int) (ast.Value, error) {
	var terms []*ast.Term
	p.space()
	if p.i < len(p.doc) && p.doc[p.i] == ']' {
		p.i++
		return ast.NewArray(), nil
	}
	for {
		p.space()
		v, err := p.value(depth)
		if err != nil {
			return nil, err
		}
		terms = append(terms, ast.NewTerm(v))
		done, err := p.next(']', "array element")
		if err != nil {
			return nil, err
		}
		if done {
			return ast.NewArray(terms...), nil
		}
	}
}

// next reads what follows a member of an object or array: a ',' (more to
// come) or the closing byte (done).
func (p *jsonParser) next(closing byte, after string) (done bool, err error) {
	p.space()
	if p.i >= len(p.doc) {
		return false, p.errorf("unexpected end of JSON input")
	}
	switch p.doc[p.i] {
	case ',':
		p.i++
		return false, nil
	case closing:
		p.i++
		return true, nil
	}
	return false, p.errorf("invalid character %q after %s", p.doc[p.i], after)
}

// number reads -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? and keeps its
// text.
func (p *jsonParser) number() (ast.Value, error) {
	start := p.i
	digits := func() int {
		n := 0
		for p.i < len(p.doc) && '0' <= p.doc[p.i] && p.doc[p.i] <= '9' {
			p.i++
			n++
		}
		return n
	}
	if p.doc[p.i] == '-' {
		p.i++
	}
	switch {
	case p.i < len(p.doc) && p.doc[p.i] == '0':
		p.i++
	case digits() == 0:
		return nil, p.errorf("invalid number")
	}
	if p.i < len(p.doc) && p.doc[p.i] == '.' {
		p.i++
		if digits() == 0 {
			return nil, p.errorf("invalid number")
		}
	}
	if p.i < len(p.doc) && (p.doc[p.i] == 'e' || p.doc[p.i] == 'E') {
		p.i++
		if p.i < len(p.doc) && (p.doc[p.i] == '+' || p.doc[p.i] == '-') {
			p.i++
		}
		if digits() == 0 {
			return nil, p.errorf("invalid number")
		}
	}
	return ast.Number(p.doc[start:p.i]), nil
}

// str reads a string at p.i (its opening quote) and returns it decoded.
func (p *jsonParser) str() (string, error) {
	p.i++ // the opening quote
	start := p.i
	// The common case: no escape, valid UTF-8, no control character.
	for p.i < len(p.doc) {
		c := p.doc[p.i]
		if c == '"' {
			s := p.doc[start:p.i]
			p.i++
			return string(s), nil
		}
		if c == '\\' || c < 0x20 || c >= utf8.RuneSelf {
			break
		}
		p.i++
	}
	buf := append([]byte(nil), p.doc[start:p.i]...)
	for p.i < len(p.doc) {
		c := p.doc[p.i]
		switch {
		case c == '"':
			p.i++
			return string(buf), nil
		case c < 0x20:
			return "", p.errorf("control character in string")
		case c == '\\':
			p.i++
			if p.i >= len(p.doc) {
				return "", p.errorf("unexpected end of JSON input")
			}
			e := p.doc[p.i]
			p.i++
			switch e {
			case '"', '\\', '/':
				buf = append(buf, e)
			case 'b':
				buf = append(buf, '\b')
			case 'f':
				buf = append(buf, '\f')
			case 'n':
				buf = append(buf, '\n')
			case 'r':
				buf = append(buf, '\r')
			case 't':
				buf = append(buf, '\t')
			case 'u':
				r, ok := p.hex4()
				if !ok {
					return "", p.errorf("invalid \\u escape")
				}
				if utf16.IsSurrogate(r) {
					// Only a high half followed by a low half makes a rune.
					if p.i+1 >= len(p.doc) || p.doc[p.i] != '\\' || p.doc[p.i+1] != 'u' {
						return "", p.errorf("lone surrogate in \\u escape")
					}
					p.i += 2
					r2, ok := p.hex4()
					if !ok {
						return "", p.errorf("invalid \\u escape")
					}
					if r = utf16.DecodeRune(r, r2); r == utf8.RuneError {
						return "", p.errorf("lone surrogate in \\u escape")
					}
				}
				buf = utf8.AppendRune(buf, r)
			default:
				return "", p.errorf("invalid escape \\%c", e)
			}
		case c < utf8.RuneSelf:
			buf = append(buf, c)
			p.i++
		default:
			r, size := utf8.DecodeRune(p.doc[p.i:])
			if r == utf8.RuneError && size == 1 {
				return "", p.errorf("string is not UTF-8")
			}
			buf = append(buf, p.doc[p.i:p.i+size]...)
			p.i += size
		}
	}
	return "", p.errorf("unexpected end of JSON input")
}

func (p *jsonParser) hex4() (rune, bool) {
	if len(p.doc)-p.i < 4 {
		return 0, false
	}
	n, err := strconv.ParseUint(string(p.doc[p.i:p.i+4]), 16, 32)
	if err != nil {
		return 0, false
	}
	p.i += 4
	return rune(n), true
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
