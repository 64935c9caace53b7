package engine

import (
	"bytes"
	"encoding/binary"
	"sync"

	"github.com/open-policy-agent/opa/v1/ast"
)

// maxKeyBytes bounds one decision key: a request whose readable input
// encodes larger (a big parsed body) is evaluated every time.
const maxKeyBytes = 16 << 10

// keyEncoder encodes the parts of an input the policy can read. Its
// callbacks are bound once, so walking objects and arrays allocates
// nothing per value.
type keyEncoder struct {
	buf  []byte
	ok   bool
	elem func(*ast.Term)
	pair func(k, v *ast.Term)
}

func newKeyEncoder() *keyEncoder {
	e := &keyEncoder{buf: make([]byte, 0, 2048)}
	e.elem = func(t *ast.Term) { e.value(t.Value) }
	e.pair = func(k, v *ast.Term) { e.value(k.Value); e.value(v.Value) }
	return e
}

// keyEncoders recycles encoders and their buffers.
var keyEncoders = sync.Pool{New: func() any { return newKeyEncoder() }}

// decisionKey encodes every part of input the policy can read into e.buf.
// It returns false when the input cannot be keyed (a value outside JSON's
// types, or too large): it is evaluated, not cached.
func (e *keyEncoder) decisionKey(r *inputReads, input ast.Value, shared []*Shared) bool {
	e.buf, e.ok = e.buf[:0], true
	if input == nil {
		e.buf = append(e.buf, 'U')
		return true
	}
	var top func(*ast.Term) *ast.Term
	if obj, ok := input.(ast.Object); ok {
		top = obj.Get
	}
	return e.readPaths(r, input, top, shared)
}

// inputKey is decisionKey of in.Value() without building it: the input's
// top-level parts come from in.Get, which gives the very terms Value puts
// in the document, so the key is the same, byte for byte.
func (e *keyEncoder) inputKey(r *inputReads, in Input, shared []*Shared) bool {
	e.buf, e.ok = e.buf[:0], true
	return e.readPaths(r, nil, in.Get, shared)
}

// readPaths appends, for each path the policy reads, the value of input
// there. top, when not nil, looks up input's top-level keys (input is then
// an object, and may be nil when top stands for it).
func (e *keyEncoder) readPaths(r *inputReads, input ast.Value, top func(*ast.Term) *ast.Term, shared []*Shared) bool {
	keyPaths, kind, narrowed := r.keyPaths(top)
	if narrowed {
		// Keyed on the kind's own paths: the kind itself comes first, and
		// no key of every path starts with 'K'.
		e.buf = append(e.buf, 'K')
		e.buf = binary.AppendUvarint(e.buf, uint64(len(kind)))
		e.buf = append(e.buf, kind...)
	}
paths:
	for _, path := range keyPaths {
		e.buf = append(e.buf, 'P')
		v := input
		var term *ast.Term // v's term, nil for input itself
		depth := 0         // the keys of path v is under
		for i, k := range path {
			var t *ast.Term
			if i == 0 && top != nil {
				t = top(k)
			} else {
				obj, ok := v.(ast.Object)
				if !ok {
					// A value under a key of a non-object: the whole value is
					// what the policy can see (a set's membership, say).
					break
				}
				t = obj.Get(k)
			}
			if t == nil {
				v, term = nil, nil
				break
			}
			v, term = t.Value, t
			depth++
		}
		if v == nil {
			e.buf = append(e.buf, 'u')
			continue
		}
		if depth < len(path) {
			// The path stopped at a non-object: say where, or "c1" at
			// input.a would key like "c1" at input.a.b.
			e.buf = append(e.buf, 'd')
			e.buf = binary.AppendUvarint(e.buf, uint64(depth))
		}
		for _, s := range shared {
			if s != nil && s.term == term && s.enc != nil {
				e.buf = append(e.buf, s.enc...)
				continue paths
			}
		}
		if e.value(v); !e.ok {
			return false
		}
	}
	return true
}

// Shared is a part of many requests' input that is built once, such as
// input.token for a verified token the caller keeps: its decision-cache
// encoding is made once too. Pass it to Eval with an input that holds
// Term() itself (the same pointer); terms are never modified once built.
type Shared struct {
	term *ast.Term
	enc  []byte // nil when the value cannot be keyed
}

// NewShared wraps v as a shared input part.
func NewShared(v ast.Value) *Shared {
	e := keyEncoders.Get().(*keyEncoder)
	defer keyEncoders.Put(e)
	e.buf, e.ok = e.buf[:0], true
	e.value(v)
	s := &Shared{term: ast.NewTerm(v)}
	if e.ok {
		// A copy of its own length: a token kept in the token cache keeps
		// this, not the encoder's buffer.
		s.enc = bytes.Clone(e.buf)
	}
	return s
}

// Term is the term to put in the input.
func (s *Shared) Term() *ast.Term { return s.term }

// value appends a tagged, length-prefixed encoding of v: different values
// never encode alike.
func (e *keyEncoder) value(v ast.Value) {
	if !e.ok {
		return
	}
	if len(e.buf) > maxKeyBytes {
		e.ok = false
		return
	}
	switch x := v.(type) {
	case ast.Null:
		e.buf = append(e.buf, 'z')
	case ast.Boolean:
		if x {
			e.buf = append(e.buf, 't')
		} else {
			e.buf = append(e.buf, 'f')
		}
	case ast.Number:
		e.buf = append(e.buf, 'n')
		e.buf = binary.AppendUvarint(e.buf, uint64(len(x)))
		e.buf = append(e.buf, x...)
	case ast.String:
		e.buf = append(e.buf, 's')
		e.buf = binary.AppendUvarint(e.buf, uint64(len(x)))
		e.buf = append(e.buf, x...)
	case *ast.Array:
		e.buf = append(e.buf, 'a')
		e.buf = binary.AppendUvarint(e.buf, uint64(x.Len()))
		x.Foreach(e.elem)
	case ast.Object:
		e.buf = append(e.buf, 'o')
		e.buf = binary.AppendUvarint(e.buf, uint64(x.Len()))
		x.Foreach(e.pair)
	case ast.Set:
		e.buf = append(e.buf, 'e')
		e.buf = binary.AppendUvarint(e.buf, uint64(x.Len()))
		x.Foreach(e.elem)
	default:
		e.ok = false
	}
}
